"""The mail-login part of check's output (docs/auth.md): a pure function of the AuthPathView data."""

from __future__ import annotations

from typing import Any

from mailpreflight.model import AuthPathView


def auth_json(paths: tuple[AuthPathView, ...]) -> list[dict[str, Any]]:
    """The `auth` section of check's JSON: each login path with the PAM stack it gets."""
    result = []
    for path in paths:
        entry: dict[str, Any] = {
            "unit": path.unit, "consumer": path.consumer, "protocol": path.protocol, "method": path.method,
            "pam_service": path.pam_service, "evidence": list(path.evidence), "problem": path.problem, "pam": None}
        pam = path.pam
        if pam is not None:
            entry["pam"] = {
                "file": pam.file, "searched": list(pam.searched), "shadowed": list(pam.shadowed),
                "fallback_other": pam.fallback_other, "other_file": pam.other_file,
                "types_from_other": list(pam.types_from_other),
                "stacks": {pam_type: [{"control": line.control, "module": line.module, "args": list(line.args),
                                       "source": line.source, "module_path": line.module_path,
                                       "via": list(line.via)} for line in lines]
                           for pam_type, lines in pam.stacks},
            }
        result.append(entry)
    return result


def auth_text(paths: tuple[AuthPathView, ...]) -> list[str]:
    lines = []
    for path in paths:
        target = ""
        pam = path.pam
        if pam is not None:
            if not pam.usable:
                target = f" -> PAM {path.pam_service}: no file, no `other`"
            elif pam.fallback_other:
                target = f" -> PAM {path.pam_service}: FALLS BACK to {pam.other_file} (auth: {pam.auth_modules})"
            else:
                target = f" -> PAM {path.pam_service}: {pam.file} (auth: {pam.auth_modules})"
        problem = f"  !! {path.problem}" if path.problem else ""
        lines.append(f"  {path.unit} {path.protocol} [{path.consumer}]: {path.method}{target}{problem}")
    return lines
