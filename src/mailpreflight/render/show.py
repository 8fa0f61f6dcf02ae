"""`mailpreflight show`: a loaded unit as JSON (DESIGN.md contract) or as `systemctl cat` plus Exec lines."""

from __future__ import annotations

import json
from typing import Any

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.execline import EXEC_KEYS
from mailpreflight.units.loader import ExecEnvironment, Unit, expand_command

SCHEMA_VERSION = 1


def unit_to_json(unit: Unit, env: ExecEnvironment | None = None) -> dict[str, Any]:
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": unit.id,
        "requested": unit.requested,
        "names": list(unit.names),
        "load_state": unit.load_state.value,
        "fragment_path": unit.fragment_path,
        "dropin_paths": list(unit.dropin_paths),
        "masked": unit.masked,
        "load_error": str(unit.load_error) if unit.load_error else None,
        "exec": {
            key: [
                {"path": c.path, "argv": list(c.argv), "ignore_failure": c.ignore_failure,
                 "prefixes": list(c.prefixes), "source": str(c.source),
                 **({"argv_expanded": list(expand_command(c, env.variables))} if env else {})}
                for c in unit.exec[key]
            ]
            for key in EXEC_KEYS if key in unit.exec
        },
        "environment": [{"name": n, "value": v, "source": str(s)} for n, v, s in unit.environment],
        "environment_files": [{"path": f.path, "optional": f.optional, "source": str(f.source)}
                              for f in unit.environment_files],
        "warnings": [str(d) for d in unit.diagnostics if d is not unit.load_error],
        "systemd_version": unit.systemd_version,
    }
    if env is not None:
        data["exec_environment"] = {"variables": dict(env.variables),
                                    "problems": [str(p) for p in env.problems]}
    return data


def render_json(unit: Unit, env: ExecEnvironment | None = None) -> str:
    return json.dumps(unit_to_json(unit, env), indent=2, ensure_ascii=False)


def render_text(unit: Unit, fs: RootFS, env: ExecEnvironment | None = None) -> str:
    lines: list[str] = []
    if unit.masked:
        lines.append(f"# {unit.id} is masked ({unit.fragment_path} -> /dev/null or empty)")
    for path in (unit.fragment_path, *unit.dropin_paths):
        if path is None or unit.masked:
            continue
        lines.append(f"# {path}")
        lines.append((fs.read_text(path) or "").rstrip("\n"))
        lines.append("")
    if unit.exec:
        lines.append("# Parsed commands (as systemd will run them; $VARIABLES are expanded at start)")
        for key in EXEC_KEYS:
            for command in unit.exec.get(key, ()):
                prefix = "".join(command.prefixes)
                argv = " ".join(_quote(a) for a in command.argv)
                lines.append(f"{key:14} {prefix:3} {argv}    ({command.source})")
                if env is not None and ":" not in command.prefixes:
                    expanded = expand_command(command, env.variables)
                    if expanded != command.argv:
                        lines.append(f"{'':14} {'=>':3} {' '.join(_quote(a) for a in expanded)}")
    for diagnostic in (*unit.diagnostics, *(env.problems if env else ())):
        lines.append(f"{diagnostic.severity.value}: {diagnostic}")
    return "\n".join(lines)


def _quote(word: str) -> str:
    if word and all(c.isalnum() or c in "/._-=:@%+,$" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
