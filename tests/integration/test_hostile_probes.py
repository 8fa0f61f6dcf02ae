"""`--timeout` is the total per probe, and the report is out (and the process gone) at the deadline, against
servers that drip: one header line, status byte or body byte every 0.8 s, slow redirect chains, a DNS server
that never answers, one whose TCP retry drips, and a system resolver (getaddrinfo) that hangs.

Servers run on 127.0.0.1 in this process (tests/integration/hostile_net.py), or, for the whole `check`, on
the loopback of a network namespace the test makes (`unshare --net --mount`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_net import SilentUDP, TCPServer, TruncatingDNS, by_path, drip_tls, run_timed

from helpers import make_tree
from mailpreflight.model import DepKind, ProbeResult, ProbeStatus
from mailpreflight.probes import http, net
from mailpreflight.probes.budget import Budget
from mailpreflight.probes.dns import ResolverConfig, query
from mailpreflight.probes.runner import GRACE, ProbeRunner

HERE = Path(__file__).resolve().parent
SLACK = 0.4  # scheduling on a busy 2-core machine


@pytest.fixture(scope="module")
def dripping() -> Iterator[int]:
    server = TCPServer(by_path)
    yield server.port
    server.close()


@pytest.mark.parametrize(("path", "method", "seen"), [
    ("/headers", "HEAD", "connected to 127.0.0.1:{port}; the status line and headers did not complete"),
    ("/status", "HEAD", "connected to 127.0.0.1:{port}; the status line and headers did not complete"),
    ("/body", "GET", "HTTP 200 from http://127.0.0.1:{port}/body; the body did not complete (0 bytes read)"),
    ("/0", "HEAD", "(after 2 redirect(s): HTTP 302 http://127.0.0.1:{port}/0 -> HTTP 302 http://127.0.0.1:{port}/1)"),
])
def test_http_timeout_is_the_total(dripping: int, path: str, method: str, seen: str) -> None:
    started = time.monotonic()
    result, body = http.fetch(f"http://127.0.0.1:{dripping}{path}", 1.0, method=method, max_bytes=65536)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + SLACK, result
    assert (result.status, result.error, body) == (ProbeStatus.FAIL, "read-timeout", None)
    assert result.detail.startswith("gave up after 1.0 s (--timeout 1 s is the total per probe): ")
    assert seen.format(port=dripping) in result.detail


def test_tls_handshake_that_drips() -> None:
    server = TCPServer(drip_tls)
    try:
        started = time.monotonic()
        result, _ = http.fetch(f"https://127.0.0.1:{server.port}/", 1.0)
        assert 1.0 <= time.monotonic() - started < 1.0 + SLACK
    finally:
        server.close()
    assert result.error == "read-timeout"
    assert result.detail.endswith(f"connected to 127.0.0.1:{server.port}; the TLS handshake did not complete")


def test_http_connect_timeout_counts_too() -> None:
    """A budget spent before the connection: no socket is even opened, the class is connect-timeout."""
    budget_left = http.fetch("http://127.0.0.1:9/", 0.0)[0]
    assert budget_left.error == "connect-timeout" and "gave up after 0.0 s" in budget_left.detail


def test_dns_servers_share_the_timeout() -> None:
    silent = SilentUDP()
    try:
        resolver = ResolverConfig(("127.0.0.1", "127.0.0.1", "127.0.0.1"), "test", silent.port)
        started = time.monotonic()
        result = query("1.0.4.updates.spamassassin.org", "TXT", resolver, 1.0)
        assert time.monotonic() - started < 1.0 + SLACK
    finally:
        silent.close()
    assert result.error == "dns-timeout" and silent.received == 2
    assert result.detail == ("127.0.0.1: no answer within 0.5 s; 127.0.0.1: no answer within 0.5 s; 1 more "
                             "server(s) not asked: the --timeout of 1 s was used up")


def test_dns_tcp_retry_that_drips() -> None:
    server = TruncatingDNS()
    try:
        started = time.monotonic()
        result = query("mirrors.updates.spamassassin.org", "TXT", ResolverConfig(("127.0.0.1",), "t", server.port),
                       1.0)
        assert time.monotonic() - started < 1.0 + SLACK
    finally:
        server.close()
    assert result.error == "dns-timeout" and result.detail.startswith("127.0.0.1: no answer within 1.0 s")


def test_runner_abandons_a_probe_no_timeout_reaches() -> None:
    """getaddrinfo cannot be interrupted: the runner gives up on it at --timeout (+GRACE) and says where."""
    release = threading.Event()

    def stuck() -> ProbeResult:
        Budget(0.5).note("resolving mirror.stuck.test (system resolver)")
        release.wait(30)
        return ProbeResult(DepKind.HTTP, "http://mirror.stuck.test/", ProbeStatus.OK, None, "late", 30.0)

    runner = ProbeRunner(30, probe_timeout=0.5)
    started = time.monotonic()
    try:
        results = runner.run({(DepKind.HTTP, "http://mirror.stuck.test/"): stuck,
                              (DepKind.TCP, "127.0.0.1:9"): lambda: net.tcp("127.0.0.1:9", 0.5)})
    finally:
        runner.close()
        release.set()
    assert 0.5 + GRACE <= time.monotonic() - started < 0.5 + GRACE + SLACK
    given_up = results[("http", "http://mirror.stuck.test/")]
    assert given_up.error == "deadline" and given_up.status is ProbeStatus.FAIL
    assert given_up.detail.startswith("no result after 0.")
    assert given_up.detail.endswith("s (--timeout 0.5 s), abandoned while resolving mirror.stuck.test "
                                    "(system resolver)")
    assert results[("tcp", "127.0.0.1:9")].error == "refused"  # the others are not held up


def test_nothing_starts_after_the_overall_deadline() -> None:
    ran: list[str] = []

    def task() -> ProbeResult:
        ran.append("x")
        return ProbeResult(DepKind.TCP, "127.0.0.1:9", ProbeStatus.OK, None, "", 0.0)

    runner = ProbeRunner(0.0)
    results = runner.run({(DepKind.TCP, "127.0.0.1:9"): task})
    runner.close()
    assert ran == [] and results[("tcp", "127.0.0.1:9")].error == "deadline"


def test_a_stuck_probe_thread_does_not_hold_the_process() -> None:
    """The process exits once its work is done, whatever a probe thread is still blocked in."""
    program = textwrap.dedent("""
        import threading, time
        from mailpreflight.model import DepKind, ProbeResult
        from mailpreflight.probes.runner import ProbeRunner

        def forever() -> ProbeResult:
            threading.Event().wait()  # like getaddrinfo against a black-holed resolver
            raise AssertionError("unreachable")

        runner = ProbeRunner(30, probe_timeout=0.3)
        result = runner.run({(DepKind.HTTP, "http://stuck.test/"): forever})[("http", "http://stuck.test/")]
        runner.close()
        print(result.error, flush=True)
    """)
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert completed.returncode == 0 and completed.stdout == "deadline\n", completed.stderr
    assert elapsed < 0.3 + GRACE + 1.5  # interpreter start-up included


def test_check_prints_at_the_overall_deadline(tmp_path: Path, dripping: int) -> None:
    """--deadline 2 with a --timeout of 30: the probe still receiving its drip is reported as `deadline`, the
    report printed and the process gone at 2 s (plus start-up), its probe thread left behind."""
    root = make_tree(tmp_path / "guest", {
        "/etc/systemd/system/drip.service":
            f"[Service]\nType=oneshot\nExecStartPre=/usr/bin/curl -fsS http://127.0.0.1:{dripping}/headers\n"
            "ExecStart=/bin/true\n",
    })
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    outcome = run_timed([sys.executable, "-m", "mailpreflight", "check", "--root", str(root), "--timeout", "30",
                         "--deadline", "2", "--resolv-conf", str(resolv), "--no-auth", "drip.service"])
    assert_on_time(outcome, 2)
    assert outcome["returncode"] == 2 and "Traceback" not in str(outcome["stderr"]), outcome["stderr"]
    assert f"http://127.0.0.1:{dripping}/headers" in str(outcome["stdout"])
    assert "deadline         not finished before the overall --deadline" in str(outcome["stdout"])


def assert_on_time(outcome: dict[str, object], bound: float) -> None:
    """The report came at the bound (plus the interpreter's start-up and loading the units, which a loaded CI
    machine stretches), and the process was gone right after it: no probe thread held it."""
    report, exited = float(str(outcome["report_seconds"])), float(str(outcome["seconds"]))
    assert report < bound + 2.5, outcome
    assert exited - report < 0.5, outcome


def _namespace_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for unshare --net --mount"
    for tool in ("unshare", "ip", "mount", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --net --mount fails: {probe.stderr.strip()}"
    return None


def test_check_reports_at_the_timeout_against_a_hostile_network(tmp_path: Path) -> None:
    """`mailpreflight check --timeout 2`, in a namespace whose only servers drip or stay silent — the system
    resolver too: the report is printed and the process has exited within the timeout + 2 s."""
    reason = _namespace_reason()
    if reason:
        pytest.skip(reason)
    root = make_tree(tmp_path / "guest", {
        "/etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "/etc/systemd/system/drip.service":
            "[Service]\nType=oneshot\nExecStartPre=/usr/bin/curl -fsS -o /dev/null http://127.0.0.1:8080/headers\n"
            "ExecStart=/bin/true\n",
        "/etc/systemd/system/stuck.service":
            "[Service]\nType=oneshot\nExecStartPre=/usr/bin/curl -fsS -o /dev/null http://mirror.stuck.test/x\n"
            "ExecStart=/bin/true\n",
        "/etc/systemd/system/spamd.service":
            "[Service]\nExecStartPre=/usr/bin/sa-update\nExecStart=/usr/sbin/spamd\n",
    })
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    command = [sys.executable, "-m", "mailpreflight", "check", "--root", str(root), "--timeout", "2",
               "--resolv-conf", str(resolv), "--sa-version", "4.000001", "--no-auth", "--format", "json",
               "drip.service", "stuck.service", "spamd.service"]
    completed = subprocess.run(["unshare", "--net", "--mount", sys.executable, str(HERE / "hostile_net.py"),
                                str(resolv), *command], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout)
    assert_on_time(outcome, 2)
    assert outcome["returncode"] == 2 and "Traceback" not in outcome["stderr"], outcome["stderr"]
    report = json.loads(outcome["stdout"])
    assert report["elapsed_s"] < 2 + GRACE + SLACK  # the check's own clock: probing ended at the timeout
    probes = {p["target"]: p for p in report["probes"]}
    dripped = probes["http://127.0.0.1:8080/headers"]
    assert dripped["error"] == "read-timeout" and dripped["detail"].startswith("gave up after 2.0 s")
    stuck = probes["http://mirror.stuck.test/x"]
    assert stuck["error"] == "deadline" and "abandoned while resolving and connecting to mirror.stuck.test:80" \
        in stuck["detail"]
    assert probes["TXT 1.0.4.updates.spamassassin.org"]["error"] == "dns-timeout"
    assert {u["name"]: u["start"]["predicted"] for u in report["units"]} == {
        "drip.service": "fail", "stuck.service": "fail", "spamd.service": "fail"}
    assert outcome["dns_questions"] > 0  # the silent resolver was really asked
