"""`mailpreflight drift` output: text and JSON (docs/schemas/drift.schema.json). Pure functions of the DriftView
that baseline/drift.py builds."""

from __future__ import annotations

from mailpreflight.model import ChangeKind, DriftView, FileRecord, TrackedFindingView

SCHEMA_VERSION = 1  # of drift's JSON


def to_json(view: DriftView) -> dict[str, object]:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": view.status.value,
        "baseline": {"file": view.baseline_file, "created": view.baseline_created, "host": view.baseline_host.fields(),
                     "root": view.baseline_root},
        "host": view.host.fields(),
        "changes": [{"path": c.path, "change": c.change.value, "details": list(c.details), "diff": c.diff,
                     "before": _public(c.before), "after": _public(c.after),
                     "causes": [_finding(view, issue) for issue in c.causes]} for c in view.changes],
        "new_findings": [_finding(view, issue) for issue in view.new],
        "resolved_findings": [_finding(view, issue) for issue in view.resolved],
        "persisting_findings": [_finding(view, issue) for issue in view.persisting],
    }


def _public(entry: FileRecord | None) -> dict[str, object] | None:
    """A path's record without its text (a diff shows what changed) and MAC."""
    return None if entry is None else {k: v for k, v in entry.fields().items() if k != "text"}


def _finding(view: DriftView, issue: TrackedFindingView) -> dict[str, object]:
    """As text: the hint with this baseline (and root) filled in, a command to run as it stands."""
    f = issue.finding
    return {"code": f.code, "severity": f.severity.value, "unit": f.unit, "subject": issue.subject,
            "message": f.message, "hint": _hint(view, issue), "evidence": list(f.evidence), "paths": list(issue.paths)}


def _hint(view: DriftView, issue: TrackedFindingView) -> str:
    """The finding's fix, with this baseline (and root) filled in where it names `restore`."""
    where = f"--baseline {view.baseline_file}" + (f" --root {view.root}" if view.root != "/" else "")
    return issue.finding.hint.replace("--baseline FILE", where)


def _line(issue: TrackedFindingView) -> str:
    return f"{issue.finding.code} {issue.finding.severity.value}: {issue.finding.message}"


def render_text(view: DriftView) -> str:
    host = view.baseline_host
    out = [f"Baseline {view.baseline_file}: taken {view.baseline_created} on {host.hostname or '?'} "
           f"({host.os_name or 'unknown OS'}); now: {view.host.os_name or 'unknown OS'}"]
    counts = {kind: sum(1 for c in view.changes if c.change is kind) for kind in ChangeKind}
    out.append(", ".join(f"{n} {kind}" for kind, n in counts.items()) if view.changes else "No drift.")
    for change in view.changes:
        out.append(f"\n{change.change.upper():8} {change.path}  ({'; '.join(change.details)})")
        for issue in change.causes:
            out.append(f"         -> {_line(issue)}")
            out.append(f"            fix: {_hint(view, issue)}")
        if change.diff:
            out.extend("         " + line for line in change.diff.rstrip("\n").split("\n"))
    if view.loose:
        out.append("\nNew findings not tied to a recorded file:")
        out.extend(f"  {_line(issue)}" for issue in view.loose)
    if view.resolved:
        out.append("\nResolved since the baseline:")
        out.extend(f"  {_line(issue)}" for issue in view.resolved)
    if view.persisting:
        out.append("\nAlready in the baseline:")
        out.extend(f"  {_line(issue)}" for issue in view.persisting)
    out.append(f"\n{view.status.value.upper()}: {len(view.changes)} change(s), {len(view.new)} new finding(s)")
    return "\n".join(out)
