"""`mailpreflight deps` output: JSON (schema in docs/schemas/deps.schema.json) or a readable listing."""

from __future__ import annotations

import json
from typing import Any

from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.deps.saupdate import worst_cases
from mailpreflight.model import Finding, Severity

SCHEMA_VERSION = 1


def finding_json(finding: Finding) -> dict[str, Any]:
    return {"code": finding.code, "severity": finding.severity.value, "unit": finding.unit,
            "message": finding.message, "hint": finding.hint, "evidence": list(finding.evidence)}


def unit_json(result: UnitDeps) -> dict[str, Any]:
    commands = []
    for entry in result.commands:
        command = entry.command
        item: dict[str, Any] = {
            "tool": command.tool, "argv": list(command.argv), "key": command.key, "source": str(command.source),
            "tolerated": command.tolerated, "tolerated_why": list(command.tolerated_why),
            "via": list(command.via), "user": command.user,
            "dependencies": [{"kind": d.kind.value, "target": d.target, "role": d.role.value,
                              "learned_from": d.learned_from, "confidence": d.confidence.value, "note": d.note}
                             for d in entry.dependencies],
        }
        if entry.plan is not None:
            item["sa_update"] = {
                "version": entry.plan.sa_version, "version_source": entry.plan.version_source,
                "updatedir": entry.plan.updatedir, "downloader": entry.plan.downloader,
                "channels": [{"channel": c.channel, "mirrored_by": c.mirrored_by, "mirrors": len(c.mirrors),
                              "mirrored_by_age_s": c.mirrored_by_age, "installed_revision": c.installed_revision}
                             for c in entry.plan.channels],
                "worst_cases": [{"scenario": s.name, "seconds": s.seconds, "exit_status": s.exit_status,
                                 "detail": s.detail} for s in worst_cases(entry.plan)],
            }
        commands.append(item)
    timeout = result.timeout
    return {
        "name": result.unit.id,
        "fragment_path": result.unit.fragment_path,
        "start_timeout_s": timeout.seconds if timeout.limited else None,
        "start_timeout_from": timeout.learned_from,
        "commands": commands,
        "findings": [finding_json(f) for f in result.findings],
    }


def render_json(results: list[UnitDeps]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "units": [unit_json(r) for r in results]}, indent=2,
                      ensure_ascii=False)


def render_text(results: list[UnitDeps]) -> str:
    lines: list[str] = []
    for result in results:
        timeout = f"{result.timeout.seconds:.0f} s" if result.timeout.limited else "none"
        lines.append(f"{result.unit.id}  ({result.unit.fragment_path}; start timeout {timeout})")
        for entry in result.commands:
            command = entry.command
            tolerance = f"tolerated: {', '.join(command.tolerated_why)}" if command.tolerated else "must succeed"
            lines.append(f"  {command.key:13} {command.tool:14} {command.source}  [{tolerance}]")
            if command.via:
                lines.append(f"  {'':13} via {' > '.join(command.via)}")
            for dep in entry.dependencies:
                low = " (low confidence)" if dep.confidence.value == "low" else ""
                lines.append(f"      {dep.kind.value:5} {dep.target:55} {dep.role.value:7} {dep.learned_from}{low}")
        for finding in result.findings:
            lines.append(f"  {finding.severity.value.upper():8} {finding.code} {finding.message}")
            lines.append(f"  {'':8}       fix: {finding.hint}")
            lines.extend(f"  {'':8}       - {e}" for e in finding.evidence)
        lines.append("")
    if not results:
        lines.append("no unit with network dependencies found")
    return "\n".join(lines).rstrip("\n")


def exit_status(results: list[UnitDeps]) -> int:
    """Monitoring convention: 2 if any critical finding, 1 if any warning, else 0."""
    severities = {f.severity for r in results for f in r.findings}
    return 2 if Severity.CRITICAL in severities else 1 if Severity.WARNING in severities else 0
