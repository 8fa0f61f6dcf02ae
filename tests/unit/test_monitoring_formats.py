"""The monitoring outputs against their formats: Prometheus text exposition as prometheus_client parses it,
and the Nagios plugin output grammar (status line, perfdata, long output)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from mailpreflight.model import (
    CommandVerdict,
    DepKind,
    Finding,
    FoundCommand,
    Prediction,
    ProbeResult,
    ProbeStatus,
    Report,
    Severity,
    Source,
    Status,
    UnitVerdict,
)
from mailpreflight.render.check import render_nagios, render_prometheus

TRICKY = 'http://m.example.org/a"b\\c|d\n'


def report(status: Status = Status.CRITICAL) -> Report:
    command = FoundCommand("sa-update", ("sa-update",), "ExecStartPre", Source("/etc/systemd/system/x|y.service", 3),
                           False)
    verdict = CommandVerdict(command, Prediction.FAIL, "4", 150.0, "no DNS | answer")
    units = (UnitVerdict("spamd.service", Prediction.FAIL, "times out | at 90 s", (verdict,)),
             UnitVerdict("postfix.service", Prediction.OK, "fine", ()))
    probes = (ProbeResult(DepKind.HTTP, TRICKY, ProbeStatus.FAIL, "connect-timeout", "x", 3.0),
              ProbeResult(DepKind.DNS, "TXT 1.0.4.updates.spamassassin.org", ProbeStatus.OK, None, "ok", 0.1))
    findings = (Finding("MP201", Severity.CRITICAL, "spamd.service", "will fail | to start", "fix it"),
                Finding("MP112", Severity.WARNING, "spamd.service", "risk", "hint"))
    return Report(status, units, probes, findings, 3.2)


def test_prometheus_exposition_parses_and_round_trips_labels() -> None:
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(report()))}
    assert families["mailpreflight_status"].samples[0].value == 2
    starts = {s.labels["unit"]: s.value for s in families["mailpreflight_unit_start_ok"].samples}
    assert starts == {"spamd.service": 0, "postfix.service": 1}
    probes = {s.labels["target"]: (s.value, s.labels["error"]) for s in families["mailpreflight_probe_ok"].samples}
    assert probes[TRICKY] == (0, "connect-timeout")  # quotes, backslashes, newlines survive escaping
    seconds = families["mailpreflight_command_predicted_seconds"].samples[0]
    assert seconds.value == 150.0 and seconds.labels["source"] == "/etc/systemd/system/x|y.service:3"
    assert {s.labels["severity"]: s.value for s in families["mailpreflight_findings"].samples} == {
        "info": 0, "warning": 1, "critical": 1}
    assert all(f.type == "gauge" and f.documentation for f in families.values())


# Nagios plugin development guidelines: "TEXT OUTPUT | 'label'=value[UOM];[warn];[crit];[min];[max] ..."
PERF = r"'[^'=]+'=-?[\d.]+(s|us|ms|%|B|KB|MB|TB|c)?(;(-?[\d.]*)?){0,4}"
STATUS_LINE = re.compile(rf"^MAILPREFLIGHT (OK|WARNING|CRITICAL|UNKNOWN): [^|]+ \| {PERF}( {PERF})*$")


def test_nagios_output_follows_the_plugin_grammar() -> None:
    for status in (Status.OK, Status.WARNING, Status.CRITICAL):
        lines = render_nagios(report(status)).split("\n")
        assert STATUS_LINE.match(lines[0]), lines[0]
        assert all("|" not in line for line in lines[1:])  # a second "|" would start more perfdata
    first = render_nagios(report()).split("\n")[0]
    assert first.startswith("MAILPREFLIGHT CRITICAL: 1 unit(s) will fail to start: spamd.service | ")
    assert "'units_failing'=1;;1;0" in first
