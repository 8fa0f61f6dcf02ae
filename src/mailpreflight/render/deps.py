"""`mailpreflight deps` output: JSON (schema in docs/schemas/deps.schema.json) or a readable listing.
A pure function of the UnitDepsView data (docs/design.md)."""

from __future__ import annotations

import json
from typing import Any

from mailpreflight.model import Dependency, Finding, FoundCommand, UnitDepsView

SCHEMA_VERSION = 1


def finding_json(finding: Finding) -> dict[str, Any]:
    return {"code": finding.code, "severity": finding.severity.value, "unit": finding.unit,
            "message": finding.message, "hint": finding.hint, "evidence": list(finding.evidence)}


def status_fates_json(command: FoundCommand) -> dict[str, Any]:
    """`status_fates` when the script looks at the command's exit status itself (else nothing: additive)."""
    if not command.status_fates:
        return {}
    return {"status_fates": [{"low": f.low, "high": f.high, "fate": f.fate.value, "exit_status": f.exit_status,
                              "where": f.where} for f in command.status_fates]}


def _dependency_json(d: Dependency) -> dict[str, Any]:
    return {"kind": d.kind.value, "target": d.target, "role": d.role.value, "learned_from": d.learned_from,
            "confidence": d.confidence.value, "note": d.note}


def unit_json(result: UnitDepsView) -> dict[str, Any]:
    commands = []
    for entry in result.commands:
        command = entry.command
        item: dict[str, Any] = {
            "tool": command.tool, "argv": list(command.argv), "key": command.key, "source": str(command.source),
            "tolerated": command.tolerated, "tolerated_why": list(command.tolerated_why),
            "via": list(command.via), "user": command.user,
            "dependencies": [_dependency_json(d) for d in entry.dependencies],
            "mentioned": [_dependency_json(d) for d in entry.mentions],
            **status_fates_json(command), **({"ends": command.ends} if command.ends else {}),
        }
        plan = entry.sa_update
        if plan is not None:
            item["sa_update"] = {
                "version": plan.version, "version_source": plan.version_source,
                "updatedir": plan.updatedir, "downloader": plan.downloader,
                "channels": [{"channel": c.channel, "mirrored_by": c.mirrored_by, "mirrors": c.mirrors,
                              "mirrored_by_age_s": c.mirrored_by_age_s, "installed_revision": c.installed_revision}
                             for c in plan.channels],
                "worst_cases": [{"scenario": s.name, "seconds": s.seconds, "exit_status": s.exit_status,
                                 "detail": s.detail} for s in plan.worst_cases],
            }
        commands.append(item)
    return {
        "name": result.name,
        "fragment_path": result.fragment_path,
        "generated_by": result.generated_by,
        "start_timeout_s": result.start_timeout_s,
        "start_timeout_from": result.start_timeout_from,
        "commands": commands,
        "findings": [finding_json(f) for f in result.findings],
    }


def render_json(results: tuple[UnitDepsView, ...]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "units": [unit_json(r) for r in results]}, indent=2,
                      ensure_ascii=False)


def render_text(results: tuple[UnitDepsView, ...]) -> str:
    lines: list[str] = []
    for result in results:
        timeout = f"{result.start_timeout_s:.0f} s" if result.start_timeout_s is not None else "none"
        made = f", made by {result.generated_by}" if result.generated_by else ""
        lines.append(f"{result.name}  ({result.fragment_path}{made}; start timeout {timeout})")
        for entry in result.commands:
            command = entry.command
            tolerance = f"tolerated: {', '.join(command.tolerated_why)}" if command.tolerated else "must succeed"
            lines.append(f"  {command.key:13} {command.tool:14} {command.source}  [{tolerance}]")
            if command.via:
                lines.append(f"  {'':13} via {' > '.join(command.via)}")
            if command.ends:
                lines.append(f"  {'':13} the script {command.ends}")
            if command.status_fates:
                lines.append(f"  {'':13} the script on its exit status: {', '.join(map(str, command.status_fates))}")
            for dep in entry.dependencies:
                lines.append(f"      {dep.kind.value:5} {dep.target:55} {dep.role.value:7} {dep.learned_from}")
            for dep in entry.mentions:
                lines.append(f"      {dep.kind.value:5} {dep.target:55} mentioned, not contacted: {dep.note}")
        for finding in result.findings:
            lines.append(f"  {finding.severity.value.upper():8} {finding.code} {finding.message}")
            lines.append(f"  {'':8}       fix: {finding.hint}")
            lines.extend(f"  {'':8}       - {e}" for e in finding.evidence)
        lines.append("")
    if not results:
        lines.append("no unit with network dependencies found")
    return "\n".join(lines).rstrip("\n")
