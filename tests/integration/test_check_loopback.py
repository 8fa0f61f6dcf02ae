"""`check` against real servers on loopback: dnsmasq answers the channel's TXT records, a Python HTTP server
plays the mirrors. Fast scenarios; the firewall scenarios with the real sa-update are in the netlab tests."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.analyze import analyze
from mailpreflight.model import Prediction, Report
from mailpreflight.predict.judge import CheckOptions, check
from mailpreflight.probes.dns import ResolverConfig
from mailpreflight.render.check import render_json, render_nagios, render_prometheus
from mailpreflight.units.loader import UnitLoader

REVISION = "1913500"
REPO = Path(__file__).resolve().parents[2]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTP server on loopback: /m1 and /m2 serve the revision's files, /dead does not exist."""
    docroot = tmp_path_factory.mktemp("www")
    for mirror in ("m1", "m2"):
        (docroot / mirror).mkdir()
        body = b"not really a tarball, only probed"
        (docroot / mirror / f"{REVISION}.tar.gz").write_bytes(body)
        (docroot / mirror / f"{REVISION}.tar.gz.asc").write_text("signature")
        (docroot / mirror / f"{REVISION}.tar.gz.sha512").write_text(hashlib.sha512(body).hexdigest())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(docroot), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), docroot
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory, mirrors: tuple[int, Path]) -> Iterator[ResolverConfig]:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (apt install dnsmasq-base)")
    port = free_port(socket.SOCK_DGRAM)
    http_port = mirrors[0]
    workdir = tmp_path_factory.mktemp("dnsmasq")
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--local=/lab.test/",
            f"--pid-file={workdir}/pid", "--user=root", "--group=root",
            f'--txt-record=1.0.4.ok.lab.test,{REVISION} is the newest',
            f'--txt-record=mirrors.ok.lab.test,http://127.0.0.1:{http_port}/MIRRORED.BY',
            f'--txt-record=mirrors.nonew.lab.test,http://127.0.0.1:{http_port}/MIRRORED.BY',
            f'--txt-record=1.0.4.halfdead.lab.test,{REVISION}',
            f'--txt-record=1.0.4.refused.lab.test,{REVISION}']
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break  # dnsmasq holds the port: it is up
            time.sleep(0.05)
        yield ResolverConfig(("127.0.0.1",), "test dnsmasq", port)
    finally:
        process.terminate()
        process.wait(10)


def root_with(tmp_path: Path, channel: str, pre: str, mirror_lines: str) -> Path:
    directory = f"/var/lib/spamassassin/4.000001/{channel.replace('.', '_')}"
    return make_tree(tmp_path, {
        "/etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "/usr/share/perl5/Mail/SpamAssassin.pm": 'our $VERSION = "4.000001";\n',
        "/usr/bin/curl": "#!/bin/false\n",
        f"{directory}/MIRRORED.BY": mirror_lines,
        # rules of an earlier successful update: spamd has rules whatever this run does (without them, an
        # existing update dir makes spamd exit 'no rules were found', tests/vm/)
        f"{directory}.cf": "# UPDATE version 1\n",
        "/etc/systemd/system/spamd.service":
            f"[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            f"ExecStartPre={pre.format(channel=channel)}\nExecStart=/usr/sbin/spamd\n",
    })


def run_check(root: Path, resolver: ResolverConfig, timeout: float = 2.0) -> Report:
    fs = RootFS(str(root))
    result = analyze(UnitLoader(fs).load("spamd.service"), fs)
    return check([result], CheckOptions(timeout=timeout, deadline=30), resolver)


def sa_verdict(report: Report) -> tuple[str, str, str]:
    command = next(c for c in report.units[0].commands if c.command.tool == "sa-update")
    return command.predicted.value, command.predicted_exit, report.units[0].start_predicted.value


def test_all_fine(tmp_path: Path, dns_server: ResolverConfig, mirrors: tuple[int, Path]) -> None:
    port = mirrors[0]
    root = root_with(tmp_path, "ok.lab.test", "/usr/bin/sa-update --channel {channel}",
                     f"http://127.0.0.1:{port}/m1 weight=5\nhttp://127.0.0.1:{port}/m2/\n")
    report = run_check(root, dns_server)
    assert sa_verdict(report) == ("ok", "0", "ok"), report.units[0]
    probe = next(p for p in report.probes if p.target == "TXT 1.0.4.ok.lab.test")
    assert probe.ok and probe.answers == (f"{REVISION} is the newest",)
    assert f"http://127.0.0.1:{port}/m1/{REVISION}.tar.gz.asc" in [p.target for p in report.probes]
    # It starts today; what remains are the static risks of a bare sa-update (exit 1 on quiet days, ...).
    assert report.status.value == "warning"
    assert all(f.message.startswith("risk: ") for f in report.findings)


def test_one_mirror_dead_is_degraded(tmp_path: Path, dns_server: ResolverConfig, mirrors: tuple[int, Path]) -> None:
    port = mirrors[0]
    root = root_with(tmp_path, "halfdead.lab.test", "-/usr/bin/sa-update --nogpg --channel {channel}",
                     f"http://127.0.0.1:{port}/m1\nhttp://127.0.0.1:{port}/dead\n")
    report = run_check(root, dns_server)
    assert sa_verdict(report) == ("degraded", "0", "ok")
    [mp202] = [f for f in report.findings if f.code == "MP202"]
    assert "`mailpreflight firewall spamd.service` lists it" in mp202.hint  # a command, not only advice
    assert f"http://127.0.0.1:{port}/m1/{REVISION}.tar.gz.sha512" in [p.target for p in report.probes]


def test_no_new_rules_fails_a_bare_sa_update(tmp_path: Path, dns_server: ResolverConfig,
                                              mirrors: tuple[int, Path]) -> None:
    root = root_with(tmp_path, "nonew.lab.test", "/usr/bin/sa-update --channel {channel}", "")
    report = run_check(root, dns_server)
    assert sa_verdict(report) == ("ok", "1", "fail")
    assert "exit 1" in report.units[0].reason
    assert report.status.value == "critical"
    tolerated = run_check(root_with(tmp_path / "b", "nonew.lab.test",
                                    '/bin/sh -c "sa-update --channel {channel} || true"', ""), dns_server)
    assert sa_verdict(tolerated) == ("ok", "1", "ok")


def test_refused_mirrors_fail_fast(tmp_path: Path, dns_server: ResolverConfig) -> None:
    closed = free_port(socket.SOCK_STREAM)
    root = root_with(tmp_path, "refused.lab.test", "-/usr/bin/sa-update --channel {channel}",
                     f"http://127.0.0.1:{closed}/a\nhttp://127.0.0.1:{closed}/b\n")
    started = time.monotonic()
    report = run_check(root, dns_server)
    assert time.monotonic() - started < 5
    assert sa_verdict(report) == ("fail", "4", "ok")  # tolerated by '-'
    command = report.units[0].commands[0]
    assert command.predicted_seconds < 10  # refused: sa-update moves on at once (plus 2 s between mirrors)
    assert "refused" in command.reason


def test_unknown_channel_fails(tmp_path: Path, dns_server: ResolverConfig) -> None:
    root = root_with(tmp_path, "nothing.lab.test", "/usr/bin/sa-update --channel {channel}", "")
    report = run_check(root, dns_server)
    assert sa_verdict(report) == ("fail", "4", "fail")
    assert "nxdomain" in report.units[0].commands[0].reason


def test_json_contract(tmp_path: Path, dns_server: ResolverConfig, mirrors: tuple[int, Path]) -> None:
    port = mirrors[0]
    root = root_with(tmp_path, "halfdead.lab.test", "/usr/bin/sa-update --channel {channel}",
                     f"http://127.0.0.1:{port}/m1\nhttp://127.0.0.1:{port}/dead\n")
    document = json.loads(render_json(run_check(root, dns_server)))
    jsonschema.validate(document, json.loads((REPO / "docs/schemas/check.schema.json").read_text()))
    assert document["units"][0]["start"] == {"predicted": "ok", "reason": document["units"][0]["start"]["reason"]}


def test_monitoring_outputs(tmp_path: Path, dns_server: ResolverConfig) -> None:
    root = root_with(tmp_path, "nothing.lab.test", "/usr/bin/sa-update --channel {channel}", "")
    report = run_check(root, dns_server)
    nagios = render_nagios(report).splitlines()
    assert nagios[0].startswith("MAILPREFLIGHT CRITICAL: 1 unit(s) will fail to start: spamd.service | ")
    assert all("|" not in line for line in nagios[1:])
    text = render_prometheus(report)
    assert 'mailpreflight_unit_start_ok{unit="spamd.service"} 0' in text
    assert "mailpreflight_status 2" in text
    assert Prediction.FAIL.value == "fail"


@pytest.mark.parametrize(("prefix", "start"), [("", "fail"), ("-", "ok")])
def test_other_tools_in_the_start_path(tmp_path: Path, dns_server: ResolverConfig, mirrors: tuple[int, Path],
                                       prefix: str, start: str) -> None:
    closed = free_port(socket.SOCK_STREAM)
    make_tree(tmp_path, {"/etc/systemd/system/fetchrules.service":
                         f"[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
                         f"Type=oneshot\nExecStartPre={prefix}/usr/bin/curl -fsS -o /tmp/r "
                         f"http://127.0.0.1:{closed}/rules\nExecStart=/usr/bin/curl -fsS "
                         f"http://127.0.0.1:{mirrors[0]}/m1/{REVISION}.tar.gz\n"})
    fs = RootFS(str(tmp_path))
    report = check([analyze(UnitLoader(fs).load("fetchrules.service"), fs)], CheckOptions(timeout=2, deadline=20),
                   dns_server)
    unit = report.units[0]
    verdicts = [(c.command.key, c.predicted.value, c.predicted_exit) for c in unit.commands]
    assert verdicts == [("ExecStartPre", "fail", "non-zero"), ("ExecStart", "ok", "0")]
    assert "refused" in unit.commands[0].reason
    assert unit.start_predicted.value == start
