"""`mailpreflight show`: a loaded unit as JSON (docs/design.md contract) or as `systemctl cat` plus the Exec
lines. A pure function of the ShowView data."""

from __future__ import annotations

import json
from typing import Any

from mailpreflight.model import ShowView

SCHEMA_VERSION = 1


def unit_to_json(unit: ShowView) -> dict[str, Any]:
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": unit.name,
        "requested": unit.requested,
        "names": list(unit.names),
        "load_state": unit.load_state,
        "fragment_path": unit.fragment_path,
        "dropin_paths": list(unit.dropin_paths),
        "masked": unit.masked,
        "load_error": unit.load_error,
        "exec": {
            key: [
                {"path": c.path, "argv": list(c.argv), "ignore_failure": c.ignore_failure,
                 "prefixes": list(c.prefixes), "source": str(c.source),
                 **({"argv_expanded": list(c.argv_expanded)} if c.argv_expanded is not None else {})}
                for c in unit.exec if c.key == key
            ]
            for key in unit.exec_keys
        },
        "environment": [{"name": n, "value": v, "source": str(s)} for n, v, s in unit.environment],
        "environment_files": [{"path": path, "optional": optional, "source": str(source)}
                              for path, optional, source in unit.environment_files],
        "warnings": list(unit.warnings),
        "systemd_version": unit.systemd_version,
        "generated_by": unit.generated_by,
    }
    if unit.exec_environment is not None:
        data["exec_environment"] = {"variables": dict(unit.exec_environment),
                                    "problems": list(unit.exec_environment_problems)}
    return data


def render_json(unit: ShowView) -> str:
    return json.dumps(unit_to_json(unit), indent=2, ensure_ascii=False)


def render_text(unit: ShowView) -> str:
    lines: list[str] = []
    if unit.generated_by:
        lines.append(f"# made by {unit.generated_by} at boot (what it would write for this tree)")
    if unit.masked:
        lines.append(f"# {unit.name} is masked ({unit.fragment_path} -> /dev/null or empty)")
    for path, text in unit.files:
        lines.append(f"# {path}")
        lines.append(text.rstrip("\n"))
        lines.append("")
    if unit.exec:
        lines.append("# Parsed commands (as systemd will run them; $VARIABLES are expanded at start)")
        for command in unit.exec:
            prefix = "".join(command.prefixes)
            argv = " ".join(_quote(a) for a in command.argv)
            lines.append(f"{command.key:14} {prefix:3} {argv}    ({command.source})")
            expanded = command.argv_expanded
            if expanded is not None and ":" not in command.prefixes and expanded != command.argv:
                lines.append(f"{'':14} {'=>':3} {' '.join(_quote(a) for a in expanded)}")
    lines.extend(unit.diagnostics)
    return "\n".join(lines)


def _quote(word: str) -> str:
    if word and all(c.isalnum() or c in "/._-=:@%+,$" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
