"""`mailpreflight explain` output: a pure function of the Explanation (no I/O, no analysis)."""

from __future__ import annotations

from mailpreflight.model import Explanation
from mailpreflight.render.check import to_json as report_json


def to_json(explanation: Explanation) -> dict[str, object]:
    failure = explanation.failure
    report = report_json(explanation.report) if explanation.report else None
    return {
        "schema_version": 1,
        "unit": explanation.unit,
        "failed_command": None if failure is None else {"argv": list(failure.run.argv), "key": failure.key,
                                                        "index": failure.index, "seconds": failure.seconds},
        "cause": explanation.cause,
        "exit_status": explanation.exit_status,
        "signal": explanation.signal,
        "meaning": explanation.meaning,
        "journal": list(explanation.journal),
        "differences": list(explanation.differences),
        "probes": report["probes"] if report else [],
        "findings": report["findings"] if report else [],
        "diagnosis": explanation.diagnosis,
    }


def render_text(explanation: Explanation) -> str:
    lines = [explanation.diagnosis, ""]
    if explanation.journal:
        lines.append("journal of that start:")
        lines += [f"  {line}" for line in explanation.journal[-15:]]
    failed = [p for p in (explanation.report.probes if explanation.report else ()) if not p.ok]
    if failed:
        lines.append("failed probes:")
        lines += [f"  {p.kind.value:5} {p.target:55} {p.error}: {p.detail}" for p in failed]
    return "\n".join(lines).rstrip()
