"""Applying a unit file's assignments in order, as systemd's config parser does: unknown keys, Exec lines,
Environment= and EnvironmentFile=; then service_verify(), which refuses some loaded services.

Sources: config_parse_exec(), config_parse_environ(), config_parse_unit_env_file() in load-fragment.c,
service_verify() in service.c of systemd 252.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from mailpreflight.model import Source
from mailpreflight.units import environ
from mailpreflight.units.execline import EXEC_KEYS, ExecCommand, parse_exec
from mailpreflight.units.specifiers import Expander, SpecifierError
from mailpreflight.units.syntax import Assignment, Diagnostic, LogLevel
from mailpreflight.units.unit import EnvironmentFileRef, LoadState, effective_type


@cache
def known_keys() -> dict[str, frozenset[str]]:
    """Section -> keys systemd 252 knows (shipped data from `systemd --dump-configuration-items`)."""
    table: dict[str, set[str]] = {}
    section = ""
    # a plain read next to this module: importlib.resources costs `show` 5-10 ms of imports (tempfile, zipfile)
    with open(os.path.join(os.path.dirname(__file__), "keys-252.txt"), encoding="utf-8") as keys:
        text = keys.read()
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        if line.startswith("["):
            section = line[1:-1]
            table.setdefault(section, set())
        else:
            table[section].add(line)
    return {name: frozenset(keys) for name, keys in table.items()}


_EXEC_SECTIONS = {"service": "Service", "socket": "Socket", "mount": "Mount", "swap": "Swap"}


@dataclass
class Settings:
    """The settings the tool interprets, accumulated over the unit's files in order."""

    expander: Expander
    version: int
    unit_type: str
    kept: list[Assignment] = field(default_factory=list)
    exec_lists: dict[str, list[ExecCommand]] = field(default_factory=dict)
    env: dict[str, tuple[str, Source]] = field(default_factory=dict)  # first position kept on replacement
    env_files: list[EnvironmentFileRef] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def apply(self, assignments: Iterable[Assignment]) -> tuple[Diagnostic, LoadState] | None:
        """Apply one file's assignments; returns the fatal problem that stops this file, if any."""
        keys = known_keys()
        section = _EXEC_SECTIONS.get(self.unit_type, "")
        kept = self.kept
        warnings: list[str] = []
        for assignment in assignments:
            known = keys.get(assignment.section)
            if known is not None and assignment.key not in known:
                if not assignment.key.startswith("X-"):
                    self.diagnostics.append(Diagnostic(
                        LogLevel.WARNING,
                        f"Unknown key '{assignment.key}' in section [{assignment.section}], ignoring.",
                        assignment.source))
                continue
            kept.append(assignment)
            if assignment.section != section:
                continue
            fatal = self._apply_one(assignment, warnings)
            if warnings:
                self.diagnostics.extend(Diagnostic(LogLevel.WARNING, w, assignment.source) for w in warnings)
                warnings.clear()
            if fatal:
                return Diagnostic(LogLevel.ERROR, fatal, assignment.source), LoadState.BAD_SETTING
        return None

    def _apply_one(self, assignment: Assignment, warnings: list[str]) -> str | None:
        key, value, source = assignment.key, assignment.value, assignment.source
        if key in EXEC_KEYS or key.startswith("Exec"):
            if not value:
                self.exec_lists[key] = []
                return None
            result = parse_exec(key, value, source, self.expander, warnings, self.version)
            self.exec_lists.setdefault(key, []).extend(result.commands)
            if result.error and not result.fatal:
                warnings.append(result.error)
            return result.error if result.fatal else None
        if key == "Environment":
            if not value:
                self.env = {}
            for name, env_value in environ.parse_environment_value(value, self.expander, warnings):
                self.env[name] = (env_value, source)  # strv_env_replace()
        elif key == "EnvironmentFile":
            if not value:
                self.env_files = []
                return None
            ref = _environment_file(value, source, self.expander, warnings)
            if ref is not None:
                self.env_files.append(ref)
        return None


_VERIFY_KEYS = frozenset({"Type", "BusName", "SuccessAction", "Restart", "PAMName", "KillMode"})


def verify_service(settings: Settings, fragment: str) -> Diagnostic | None:
    """service_verify() of systemd 252: combinations that make systemd refuse a loaded service."""
    values: dict[tuple[str, str], str] = {}  # the last value of each key it looks at, in one pass
    for assignment in settings.kept:
        if assignment.key in _VERIFY_KEYS:
            values[assignment.section, assignment.key] = assignment.value

    def last(section: str, key: str) -> str:
        assert key in _VERIFY_KEYS, key  # a key not gathered above would always look unset
        return values.get((section, key), "")

    start = settings.exec_lists.get("ExecStart", [])
    stop = settings.exec_lists.get("ExecStop", [])
    service_type = effective_type(last("Service", "Type"), last("Service", "BusName"), bool(start))
    problem = None
    if not start and not stop and last("Unit", "SuccessAction") in ("", "none"):
        problem = "Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing."
    elif service_type != "oneshot" and not start:
        problem = "Service has no ExecStart= setting, which is only allowed for Type=oneshot services. Refusing."
    elif service_type != "oneshot" and len(start) > 1:
        problem = ("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot "
                   "services. Refusing.")
    elif service_type == "oneshot" and last("Service", "Restart") in ("always", "on-success"):
        problem = ("Service has Restart= set to either always or on-success, which isn't allowed for "
                   "Type=oneshot services. Refusing.")
    elif service_type == "dbus" and not last("Service", "BusName"):
        problem = "Service is of type D-Bus but no D-Bus service name has been specified. Refusing."
    elif last("Service", "PAMName") and last("Service", "KillMode") not in ("", "control-group", "mixed"):
        problem = "Service has PAM enabled. Kill mode must be set to 'control-group' or 'mixed'. Refusing."
    return Diagnostic(LogLevel.ERROR, problem, Source(fragment, 0)) if problem else None


def _environment_file(value: str, source: Source, expander: Expander,
                      warnings: list[str]) -> EnvironmentFileRef | None:
    """config_parse_unit_env_file(): `[-]/absolute/path`, specifiers expanded."""
    optional = value.startswith("-")
    try:
        path = expander.expand(value[1:] if optional else value)
    except SpecifierError as exc:
        warnings.append(f"Failed to resolve unit specifiers in '{value}', ignoring: {exc}")
        return None
    if not path.startswith("/"):
        warnings.append(f"EnvironmentFile= path is not absolute, ignoring: {path}")
        return None
    return EnvironmentFileRef(path, optional, source)
