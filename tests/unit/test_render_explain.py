"""render/explain.py: explain's output as a pure function of the Explanation -- the same JSON contract and text
as before the move, and nothing imported but the check renderer and the model."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import mailpreflight
from mailpreflight.live.backend import CLD_EXITED, LiveUnit
from mailpreflight.model import DepKind, ExecRun, Finding, ProbeResult, ProbeStatus, Report, Severity, Status
from mailpreflight.predict.explain import explain
from mailpreflight.render.explain import render_text, to_json

PRE = ExecRun(path="/bin/sh", argv=("/bin/sh", "-c", "sa-update || true"), ignore=False, flags=(),
              start_us=1_700_000_000_000_000, exit_us=1_700_000_012_500_000, pid=42, code=CLD_EXITED, status=4)
LIVE = LiveUnit(id="spamd.service", load_state="loaded", active_state="failed", sub_state="failed",
                result="exit-code", invocation_id="ab" * 16, fragment_path="/etc/systemd/system/spamd.service",
                dropin_paths=(), wants=(), after=(), environment=(), timeout_start_s=90.0, service_type="oneshot",
                need_daemon_reload=True, exec={"ExecStartPre": (PRE,)})
REPORT = Report(status=Status.CRITICAL, units=(), elapsed_s=2.0,
                probes=(ProbeResult(DepKind.DNS, "updates.spamassassin.org TXT", ProbeStatus.FAIL, "dns-timeout",
                                    "no answer from 10.0.0.53 in 5 s", 5.0),
                        ProbeResult(DepKind.HTTP, "http://sa-update.example/MIRRORED.BY", ProbeStatus.OK, None,
                                    "200", 0.1)),
                findings=(Finding("MP101", Severity.CRITICAL, "spamd.service", "sa-update can fail the start",
                                  "wrap it"),))
JOURNAL = tuple(f"line {i}" for i in range(20))


def test_json_contract() -> None:
    result = to_json(explain(LIVE, None, REPORT, JOURNAL))
    json.dumps(result)  # plain JSON types only
    assert list(result) == ["schema_version", "unit", "failed_command", "cause", "exit_status", "signal", "meaning",
                            "journal", "differences", "probes", "findings", "diagnosis"]
    assert result["failed_command"] == {"argv": ["/bin/sh", "-c", "sa-update || true"], "key": "ExecStartPre",
                                        "index": 0, "seconds": 12.5}
    assert (result["cause"], result["exit_status"], result["signal"]) == ("exit-code", 4, None)
    assert result["meaning"] == "sa-update exit 4: every channel failed (network, DNS, mirrors)"
    assert result["journal"] == list(JOURNAL)
    assert result["differences"] == ["systemd says the unit files changed since it loaded them: run "
                                     "`systemctl daemon-reload`"]
    assert [(p["target"], p["error"]) for p in result["probes"]] == [
        ("updates.spamassassin.org TXT", "dns-timeout"), ("http://sa-update.example/MIRRORED.BY", None)]
    assert [(f["code"], f["severity"]) for f in result["findings"]] == [("MP101", "critical")]
    assert "dropin install spamd.service" in result["diagnosis"]


def test_json_without_a_failure_or_a_check() -> None:
    fine = LiveUnit(**{**LIVE.__dict__, "active_state": "active", "sub_state": "exited", "result": "success",
                       "need_daemon_reload": False, "exec": {}})
    result = to_json(explain(fine, None, None, ()))
    assert (result["failed_command"], result["cause"], result["probes"], result["findings"]) == (None, "ok", [], [])
    assert result["diagnosis"] == "spamd.service's last start did not fail (active/exited, result success)."


def test_text() -> None:
    explanation = explain(LIVE, None, REPORT, JOURNAL)
    lines = render_text(explanation).splitlines()
    assert lines[0] == explanation.diagnosis and lines[1] == ""
    assert lines[2] == "journal of that start:" and lines[3:18] == [f"  line {i}" for i in range(5, 20)]
    assert lines[18:] == ["failed probes:", f"  dns   {'updates.spamassassin.org TXT':55} dns-timeout: no answer "
                          "from 10.0.0.53 in 5 s"]


def test_imports_only_the_check_renderer_and_the_model() -> None:
    path = Path(mailpreflight.__file__).parent / "render" / "explain.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    runtime = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in runtime
               for a in (n.names if isinstance(n, ast.Import) else [n.names[0]])}
    assert modules <= {"__future__", "typing", "mailpreflight.render.check", "mailpreflight.model"}, modules
