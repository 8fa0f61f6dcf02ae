"""A unit as systemd holds it after loading: its names, files, load state and settings (paths are guest
paths)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from mailpreflight.model import Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.syntax import Assignment, Diagnostic


class LoadState(StrEnum):
    LOADED = "loaded"
    MASKED = "masked"
    NOT_FOUND = "not-found"
    BAD_SETTING = "bad-setting"
    ERROR = "error"


@fast_init
@dataclass(frozen=True)
class EnvironmentFileRef:
    """One EnvironmentFile= entry as systemd keeps it at load time: the absolute path (specifiers expanded), whether a
    `-` made it optional, and where it was set."""

    path: str
    optional: bool  # the `-` prefix: a missing file is fine
    source: Source


@fast_init
@dataclass(frozen=True)
class Unit:
    """A unit as systemd would hold it after loading. Paths are guest paths."""

    requested: str
    id: str
    names: tuple[str, ...]
    load_state: LoadState
    fragment_path: str | None
    dropin_paths: tuple[str, ...]
    assignments: tuple[Assignment, ...]
    exec: dict[str, tuple[ExecCommand, ...]]
    environment: tuple[tuple[str, str, Source], ...]
    environment_files: tuple[EnvironmentFileRef, ...]
    diagnostics: tuple[Diagnostic, ...]
    load_error: Diagnostic | None
    search_paths: tuple[str, ...]
    systemd_version: int
    generated_by: str | None = None  # the generator that made it at boot (units/generators.py), if one did

    @property
    def masked(self) -> bool:
        return self.load_state is LoadState.MASKED

    @cached_property
    def _by_key(self) -> dict[tuple[str, str], tuple[Assignment, ...]]:
        """The assignments of each (section, key), in order: values() and last() are asked a few dozen times per
        unit (deps, check) and each used to scan them all."""
        index: dict[tuple[str, str], list[Assignment]] = {}
        for assignment in self.assignments:
            index.setdefault((assignment.section, assignment.key), []).append(assignment)
        return {where: tuple(found) for where, found in index.items()}

    def values(self, section: str, key: str) -> list[Assignment]:
        """Effective list of a list-type setting: everything after the last empty assignment."""
        found: list[Assignment] = []
        for assignment in self._by_key.get((section, key), ()):
            found = [] if assignment.value == "" else [*found, assignment]
        return found

    def last(self, section: str, key: str) -> Assignment | None:
        """Effective value of a scalar setting: the last assignment wins."""
        found = self._by_key.get((section, key))
        return found[-1] if found else None


def service_user(unit: Unit) -> str | None:
    """User= of the unit; None when not set (root)."""
    setting = unit.last("Service", "User")
    return setting.value if setting and setting.value else None


def effective_type(declared: str, bus_name: str, has_exec_start: bool) -> str:
    """A service's type as systemd settles it at load time: the Type= set, else dbus with a BusName=, simple with
    an ExecStart=, oneshot without (deliberate copy of systemd's service_add_extras(), see docs/design.md)."""
    return declared or ("dbus" if bus_name else "simple" if has_exec_start else "oneshot")


class ServiceType(NamedTuple):
    name: str  # "simple", "oneshot", "dbus", …; "" for a unit that is not a loaded service (masked, not found)
    origin: str  # where it comes from: the Type= line, or why systemd picks it


def service_type(unit: Unit) -> ServiceType:
    """The type of a service unit; systemd settles it only for a unit whose settings it read (a unit refused by
    service_verify() has one too)."""
    if not unit.id.endswith(".service") or unit.load_state not in (LoadState.LOADED, LoadState.BAD_SETTING):
        return ServiceType("", f"{unit.id} is {unit.load_state.value}")
    declared, bus_name = unit.last("Service", "Type"), unit.last("Service", "BusName")
    if declared is not None and declared.value:
        return ServiceType(declared.value, str(declared.source))
    name = effective_type("", bus_name.value if bus_name else "", bool(unit.exec.get("ExecStart")))
    return ServiceType(name, {"dbus": "no Type=, BusName= set", "simple": "no Type=, ExecStart= set"}.get(
        name, "no Type=, BusName= or ExecStart="))
