"""The renderers for what issue 18 item 3 added: a start that cannot be predicted (text, json, nagios,
prometheus — parsed by prometheus_client, checked against the schema), a rule for any host and the lines
saying what the allow-list lacks (nft, iptables, firewalld)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from mailpreflight.model import (
    CommandVerdict,
    Fate,
    Finding,
    FirewallRule,
    FoundCommand,
    Prediction,
    Report,
    Severity,
    Source,
    Status,
    StatusFate,
    UnitVerdict,
)
from mailpreflight.render.check import render_json, render_nagios, render_prometheus, render_text
from mailpreflight.render.firewall import render_firewalld, render_iptables, render_nft

REPO = Path(__file__).resolve().parents[2]
FATES = (StatusFate(0, 255, Fate.UNKNOWN, None, "/usr/sbin/maint:12"),)


def report() -> Report:
    command = FoundCommand("sa-update", ("sa-update",), "ExecStart", Source("/usr/sbin/maint", 9), True,
                           ("status checked by the script",), status_fates=FATES)
    verdict = CommandVerdict(command, Prediction.FAIL, "4", 5.0, "no DNS")
    units = (UnitVerdict("maint.service", Prediction.UNKNOWN, "not read statically (/usr/sbin/maint:12)", (verdict,)),
             UnitVerdict("postfix.service", Prediction.OK, "fine", ()))
    findings = (Finding("MP204", Severity.WARNING, "maint.service", "cannot be predicted",
                        "read what the script does with the status: sed -n '12,+20p' /usr/sbin/maint"),)
    return Report(Status.WARNING, units, (), findings, 1.0)


def test_check_outputs_say_unknown() -> None:
    document = json.loads(render_json(report()))
    jsonschema.validate(document, json.loads((REPO / "docs/schemas/check.schema.json").read_text()))
    assert document["units"][0]["start"]["predicted"] == "unknown"
    assert document["units"][0]["commands"][0]["status_fates"] == [
        {"low": 0, "high": 255, "fate": "unknown", "exit_status": None, "where": "/usr/sbin/maint:12"}]
    assert "maint.service: start unknown — not read statically" in render_text(report())
    first = render_nagios(report()).split("\n")[0]
    assert first.startswith("MAILPREFLIGHT WARNING: 1 unit(s) whose start cannot be predicted: maint.service | ")
    assert "'units_unknown'=1;1;;0" in first
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(report()))}
    starts = {s.labels["unit"]: s.value for s in families["mailpreflight_unit_start_ok"].samples}
    assert math.isnan(starts["maint.service"]) and starts["postfix.service"] == 1
    assert {s.labels["unit"]: s.value for s in families["mailpreflight_unit_start_unknown"].samples} == {
        "maint.service": 1, "postfix.service": 0}


RULES = [FirewallRule("udp", "192.0.2.53", 53, ("postfix@-.service postmulti",)),
         FirewallRule("tcp", "*", 25, ("postfix@-.service postmulti",),
                      "postfix@-.service postmulti: direct delivery (no relayhost): the MX hosts of every recipient "
                      "domain"),
         FirewallRule("tcp", "mirror.example.org", 443, ("spamd.service sa-update",))]
NOTE = "spamd.service sa-update: no cached MIRRORED.BY\nso its mirrors are not known"  # a line break: one comment


def test_firewall_formats_any_host_and_notes() -> None:
    nft = render_nft(RULES, notes=[NOTE])
    assert "    tcp dport 25 accept comment \"postfix@-.service postmulti\"" in nft.splitlines()
    assert "    # tcp/25 to any host: postfix@-.service postmulti: direct delivery (no relayhost): the MX hosts " \
           "of every recipient domain" in nft.splitlines()
    assert [line for line in nft.splitlines() if "NOT IN THIS LIST" in line or "so its mirrors" in line] == [
        "# NOT IN THIS LIST (not known before the service runs): spamd.service sa-update: no cached MIRRORED.BY",
        "# so its mirrors are not known"]
    assert "*" not in "".join(line for line in nft.splitlines() if not line.lstrip().startswith("#"))
    iptables = render_iptables(RULES, notes=[NOTE])
    assert '-A OUTPUT -p tcp --dport 25 -m comment --comment "postfix@-.service postmulti" -j ACCEPT' in iptables
    assert iptables.splitlines()[1].startswith("# NOT IN THIS LIST")
    firewalld = render_firewalld(RULES, {"mirror.example.org": ["192.0.2.8"]}, "now", notes=[NOTE])
    for family in ("ipv4", "ipv6"):
        assert (f"--add-rich-rule='rule family=\"{family}\" port port=\"25\" protocol=\"tcp\" accept'"
                in firewalld)
    assert subprocess.run(["sh", "-n"], input=firewalld, text=True, check=False).returncode == 0
    assert re.search(r"^# NOT IN THIS LIST", firewalld, re.M)
