"""`mailpreflight check` output over one Report: text, json (docs/design.md contract), nagios, prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from mailpreflight.model import Prediction, Report, Severity, Status
from mailpreflight.render.auth import auth_json, auth_text
from mailpreflight.render.deps import finding_json, status_fates_json
from mailpreflight.render.escape import clean

SCHEMA_VERSION = 1
_COLOURS = {"ok": "\033[32m", "degraded": "\033[33m", "fail": "\033[31m", "unknown": "\033[33m",
            "warning": "\033[33m", "critical": "\033[31m", "info": ""}


def to_json(report: Report, lazy: bool = False) -> dict[str, Any]:
    """The JSON document as Python values; `lazy`: its units, probes and findings as iterators, each item made
    when it is written (iter_json)."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": report.status.value,
        "elapsed_s": report.elapsed_s,
        "units": ({
            "name": unit.name,
            "start": {"predicted": unit.start_predicted.value, "reason": unit.reason},
            "commands": [{
                "tool": c.command.tool, "argv": list(c.command.argv), "source": str(c.command.source),
                "key": c.command.key, "tolerated": c.command.tolerated, "predicted": c.predicted.value,
                "predicted_exit": c.predicted_exit, "predicted_seconds": c.predicted_seconds, "reason": c.reason,
                "probes": list(c.probes), **status_fates_json(c.command),
            } for c in unit.commands],
        } for unit in report.units),
        "probes": ({"kind": p.kind.value, "target": p.target, "status": p.status.value, "error": p.error,
                    "detail": p.detail, "elapsed_s": round(p.elapsed_s, 3), "answers": list(p.answers)}
                   for p in report.probes),
        "findings": (finding_json(f) for f in report.findings),
        "auth": auth_json(report.auth) if report.auth else [],
    }
    if not lazy:
        for key in ("units", "probes", "findings"):
            document[key] = list(document[key])
    return document


def render_json(report: Report) -> str:
    return "".join(iter_json(report))


def iter_json(report: Report) -> Iterator[str]:
    """The JSON document piece by piece, by json's C encoder (an indent would take the pure-Python one: seconds
    and tens of MiB for a fleet), each unit, probe and finding on a line of its own, built as it is written."""
    separator = "{"
    for key, value in to_json(report, lazy=True).items():
        yield f"{separator}{json.dumps(key)}: "
        separator = ", "
        if isinstance(value, Iterator) or (isinstance(value, list) and value):
            opening = "[\n"
            for item in value:
                yield opening + json.dumps(item, ensure_ascii=False)
                opening = ",\n"
            yield "[]" if opening == "[\n" else "\n]"
        else:
            yield json.dumps(value, ensure_ascii=False)
    yield "}"


def render_text(report: Report, colour: bool = False) -> str:
    """Guest text is escaped here (render/escape.py), so that the colour sequences are the only raw ones."""
    def paint(word: str) -> str:
        return f"{_COLOURS.get(word, '')}{word}\033[0m" if colour and _COLOURS.get(word) else word

    lines = [f"mailpreflight check: {paint(report.status.value.upper() if not colour else report.status.value)} "
             f"({len(report.units)} units, {len(report.probes)} probes, {report.elapsed_s:.1f} s)", ""]
    for unit in report.units:
        lines.append(f"{clean(unit.name)}: start {paint(unit.start_predicted.value)} — {clean(unit.reason)}")
        for c in unit.commands:
            lines.append(clean(f"  {c.command.key:13} {c.command.tool:12} ") + f"{paint(c.predicted.value):8} "
                         + clean(f"exit {c.predicted_exit:4} ~{c.predicted_seconds:5.0f} s  {c.command.source}"))
            if c.predicted is not Prediction.OK:
                lines.append(clean(f"  {'':13} {c.reason}"))
        lines.append("")
    if report.auth:
        lines.append("mail authentication:")
        lines += [clean(line) for line in auth_text(report.auth)]
        lines.append("")
    failed = [p for p in report.probes if not p.ok]
    if failed:
        lines.append("failed probes:")
        lines += [clean(f"  {p.kind.value:5} {p.target:60} {p.error:16} {p.detail}") for p in failed]
        lines.append("")
    for finding in report.findings:
        lines.append(f"{paint(finding.severity.value)} " + clean(f"{finding.code} {finding.unit}: {finding.message}"))
        lines.append(clean(f"    fix: {finding.hint}"))
    return "\n".join(lines).rstrip()


def render_nagios(report: Report) -> str:
    """Monitoring plugin guidelines: `SERVICE STATUS: text | perfdata`, then long output."""
    failing = [u.name for u in report.units if u.start_predicted is Prediction.FAIL]
    unknown = [u.name for u in report.units if u.start_predicted is Prediction.UNKNOWN]
    dead = sum(1 for p in report.probes if not p.ok)
    logins = [f for f in report.findings if f.code.startswith("MP3") and f.severity is Severity.CRITICAL]
    if failing:
        summary = f"{len(failing)} unit(s) will fail to start: {', '.join(failing)}"
    elif logins:
        summary = f"{len(logins)} mail login problem(s): {logins[0].message}"
    elif unknown:
        summary = f"{len(unknown)} unit(s) whose start cannot be predicted: {', '.join(unknown)}"
    elif report.status is Status.WARNING:
        summary = f"units will start; {dead} endpoint(s) unreachable or risks found"
    else:
        summary = f"{len(report.units)} unit(s) will start"
    perf = [f"'units'={len(report.units)};;;0", f"'units_failing'={len(failing)};;1;0",
            f"'units_unknown'={len(unknown)};1;;0",
            f"'probes_failed'={dead};1;;0", f"'elapsed'={report.elapsed_s}s;;;0"]
    for unit in report.units:
        for c in unit.commands:
            label = re.sub(r"[='\s]", "_", f"{unit.name}_{c.command.tool}_seconds")
            perf.append(f"'{label}'={c.predicted_seconds}s;;;0")
    # "|" separates performance data in plugin output: keep it out of the texts.
    long_output = [f"{u.name}: {u.start_predicted.value}: {u.reason}" for u in report.units]
    long_output += [f"{f.severity.value.upper()} {f.code} {f.unit}: {f.message}" for f in report.findings]
    first = f"MAILPREFLIGHT {report.status.value.upper()}: {summary.replace('|', '/')} | {' '.join(perf)}"
    return "\n".join([first, *(line.replace("|", "/") for line in long_output)])


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(report: Report) -> str:
    """Prometheus text exposition (textfile collector)."""
    lines = [
        "# HELP mailpreflight_status Overall status: 0 ok, 1 warning, 2 critical, 3 unknown.",
        "# TYPE mailpreflight_status gauge",
        f"mailpreflight_status {report.status.exit_code}",
        "# HELP mailpreflight_unit_start_ok 1 if the unit is predicted to start, 0 if not, NaN if that cannot be "
        "predicted.",
        "# TYPE mailpreflight_unit_start_ok gauge",
    ]
    lines += [f'mailpreflight_unit_start_ok{{unit="{_label(u.name)}"}} '
              f'{"NaN" if u.start_predicted is Prediction.UNKNOWN else int(u.start_predicted is Prediction.OK)}'
              for u in report.units]
    lines += ["# HELP mailpreflight_unit_start_unknown 1 if whether the unit starts cannot be predicted (the "
              "reason is in `mailpreflight check UNIT`), else 0.",
              "# TYPE mailpreflight_unit_start_unknown gauge"]
    lines += [f'mailpreflight_unit_start_unknown{{unit="{_label(u.name)}"}} '
              f"{int(u.start_predicted is Prediction.UNKNOWN)}" for u in report.units]
    lines += ["# HELP mailpreflight_command_predicted_seconds Worst-case run time of a start-path command.",
              "# TYPE mailpreflight_command_predicted_seconds gauge"]
    for unit in report.units:
        for c in unit.commands:
            lines.append(f'mailpreflight_command_predicted_seconds{{unit="{_label(unit.name)}",'
                         f'tool="{_label(c.command.tool)}",source="{_label(str(c.command.source))}"}} '
                         f"{c.predicted_seconds}")
    lines += ["# HELP mailpreflight_probe_ok 1 if the endpoint answered, else 0.",
              "# TYPE mailpreflight_probe_ok gauge"]
    lines += [f'mailpreflight_probe_ok{{kind="{p.kind.value}",target="{_label(p.target)}",'
              f'error="{_label(p.error or "")}"}} {int(p.ok)}' for p in report.probes]
    lines += ["# HELP mailpreflight_findings Findings by severity.", "# TYPE mailpreflight_findings gauge"]
    for severity in ("info", "warning", "critical"):
        count = sum(1 for f in report.findings if f.severity.value == severity)
        lines.append(f'mailpreflight_findings{{severity="{severity}"}} {count}')
    if report.auth:
        lines += ["# HELP mailpreflight_auth_path_ok 1 if a mail login path (SASL/PAM) has no critical finding.",
                  "# TYPE mailpreflight_auth_path_ok gauge"]
        lines += [f'mailpreflight_auth_path_ok{{unit="{_label(p.unit)}",protocol="{_label(p.protocol)}",'
                  f'consumer="{_label(p.consumer)}",pam_service="{_label(p.pam_service or "")}"}} '
                  f"{int(p.ok)}" for p in report.auth]
    lines += ["# HELP mailpreflight_check_duration_seconds How long the check took.",
              "# TYPE mailpreflight_check_duration_seconds gauge",
              f"mailpreflight_check_duration_seconds {report.elapsed_s}"]
    return "\n".join(lines) + "\n"
