"""`check` at fleet scale (issue 14), on loopback: hundreds of units sharing sa-update's endpoints probe each
endpoint once, and sa-update's chains of all units advance together — one round of probes per step of the chain,
as many for 300 units and 16 mirrors as for one unit and one mirror. Dropped endpoints are loopback sockets that
never answer (a UDP socket nobody reads, a TCP listener that never accepts); the time it takes is measured by
benchmarks/check.py in a namespace lab, not asserted here."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.analyze import iter_tree
from mailpreflight.model import DepKind, ProbeResult, Report
from mailpreflight.predict.judge import CheckOptions, check
from mailpreflight.probes.dns import ResolverConfig
from mailpreflight.probes.runner import ProbeRunner, Task
from mailpreflight.units.loader import UnitLoader

REVISION = "1913500"
CHANNEL = "fleet.lab.test"
TIMEOUT = 1.0
RUN, START = ProbeRunner.run, ProbeRunner.start


@pytest.fixture(scope="module")
def black_hole() -> Iterator[tuple[int, int]]:
    """(udp port, tcp port) on 127.0.0.1 that never answer: DNS questions and HTTP requests time out."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4096)  # connections complete in the kernel; nothing ever reads or answers
    try:
        yield udp.getsockname()[1], tcp.getsockname()[1]
    finally:
        udp.close()
        tcp.close()


def mirror_list(port: int, count: int, prefix: str = "") -> str:
    return "".join(f"http://127.0.0.1:{port}/{prefix}m{i}/ weight=1\n" for i in range(count))


@pytest.fixture(scope="module")
def list_server(tmp_path_factory: pytest.TempPathFactory, black_hole: tuple[int, int]) -> Iterator[int]:
    """An HTTP server on loopback serving /MIRRORED.BY: 16 mirrors, all in the black hole."""
    docroot = tmp_path_factory.mktemp("www")
    (docroot / "MIRRORED.BY").write_text(mirror_list(black_hole[1], 16))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(docroot), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory, list_server: int) -> Iterator[ResolverConfig]:
    """dnsmasq on loopback: the channel's revision, and its MIRRORED.BY at list_server."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (apt install dnsmasq-base)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("dnsmasq")
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--local=/lab.test/",
            f"--pid-file={workdir}/pid", "--user=root", "--group=root",
            f"--txt-record=1.0.4.{CHANNEL},{REVISION}",
            *(f"--txt-record=1.0.4.{k}.{CHANNEL},{REVISION}" for k in range(4)),
            f"--txt-record=mirrors.{CHANNEL},http://127.0.0.1:{list_server}/MIRRORED.BY"]
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


def fleet_root(root: Path, units: int, mirrored_by: str | None, channels: Sequence[str] = (CHANNEL,)) -> Path:
    """`units` services, each with its own file and `sa-update --channel C || true`, C taken in turn from
    `channels`; each channel's cached MIRRORED.BY (None: none cached, sa-update fetches it; "{channel}" in it
    becomes the channel)."""
    tree: dict[str, str] = {
        "/etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "/usr/share/perl5/Mail/SpamAssassin.pm": 'our $VERSION = "4.000001";\n',
        "/usr/bin/curl": "#!/bin/false\n",
    }
    for channel in channels if mirrored_by is not None else ():
        tree[f"/var/lib/spamassassin/4.000001/{channel.replace('.', '_')}/MIRRORED.BY"] = mirrored_by.replace(
            "{channel}", channel)
    for i in range(units):
        tree[f"/etc/systemd/system/filter{i}.service"] = (
            "[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\n"
            f'ExecStartPre=/bin/bash -c "sa-update --channel {channels[i % len(channels)]} || true"\n'
            f"ExecStart=/usr/sbin/filter{i}\n")
    return make_tree(root, tree)


def fleet_check(root: Path, resolver: ResolverConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[Report, list[int]]:
    """The report, and the number of new probes each round started (a round ends when run() has waited)."""
    rounds: list[int] = []
    started = [0]

    def counting_start(self: ProbeRunner, tasks: Mapping[tuple[DepKind, str], Task]) -> None:
        started[0] += sum(1 for kind, target in tasks
                          if (kind.value, target) not in self.results and (kind.value, target) not in self._asked)
        START(self, tasks)

    def counting_run(self: ProbeRunner, tasks: Mapping[tuple[DepKind, str], Task]) -> dict[tuple[str, str],
                                                                                          ProbeResult]:
        self.start(tasks)
        results = RUN(self, {})
        if started[0]:
            rounds.append(started[0])
            started[0] = 0
        return results

    monkeypatch.setattr(ProbeRunner, "start", counting_start)
    monkeypatch.setattr(ProbeRunner, "run", counting_run)
    fs = RootFS(str(root))
    return check(iter_tree(UnitLoader(fs)), CheckOptions(timeout=TIMEOUT, deadline=60), resolver), rounds


def sa_verdicts(report: Report) -> set[tuple[str, str, str]]:
    return {(c.predicted.value, c.predicted_exit, c.reason) for u in report.units for c in u.commands
            if c.command.tool == "sa-update"}


def test_every_endpoint_dropped_one_round_for_one_unit_or_300(tmp_path: Path, black_hole: tuple[int, int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    udp, tcp = black_hole
    resolver = ResolverConfig(("127.0.0.1",), "black hole", udp)
    one, rounds_one = fleet_check(fleet_root(tmp_path / "one", 1, mirror_list(tcp, 1)), resolver, monkeypatch)
    many, rounds_many = fleet_check(fleet_root(tmp_path / "many", 300, mirror_list(tcp, 16)), resolver, monkeypatch)
    assert len(many.units) == 300
    # the revision's TXT times out: the chain ends there, after one round, whatever the units and mirrors
    assert len(rounds_one) == len(rounds_many) == 1, (rounds_one, rounds_many)
    # each endpoint once: 300 units ask the same questions as one (the 16 mirrors are IP literals: no A lookups)
    assert rounds_many[0] == rounds_one[0] == len(many.probes)
    [(predicted, exit_class, reason)] = sa_verdicts(many)  # 300 units, one verdict
    [(predicted_one, exit_one, reason_one)] = sa_verdicts(one)
    assert (predicted, exit_class) == (predicted_one, exit_one)
    assert {p.error for p in many.probes} <= {"dns-timeout", "deadline"}
    # which of the two ends a dropped query first (its own timeout or the run's deadline) depends on the machine's
    # load, and the reason names it: the same ending is told the same way
    if {p.error for p in many.probes} == {p.error for p in one.probes}:
        assert reason == reason_one


def test_mirror_list_fetched_once_for_the_whole_fleet(tmp_path: Path, dns_server: ResolverConfig,
                                                      list_server: int, black_hole: tuple[int, int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached MIRRORED.BY: revision TXT, then the list over HTTP, then every mirror of it (dropped) —
    three rounds for one unit and for 200, and every unit reads the list the first one fetched."""
    one, rounds_one = fleet_check(fleet_root(tmp_path / "one", 1, None), dns_server, monkeypatch)
    many, rounds_many = fleet_check(fleet_root(tmp_path / "many", 200, None), dns_server, monkeypatch)
    assert len(rounds_one) == len(rounds_many) == 3, (rounds_one, rounds_many)
    assert rounds_many == rounds_one
    assert rounds_many[2] == 32  # 16 mirrors x (.tar.gz, .tar.gz.asc), all at once
    verdicts = sa_verdicts(many)
    assert len(verdicts) == 1 and verdicts == sa_verdicts(one), verdicts
    predicted, exit_class, reason = verdicts.pop()
    assert (predicted, exit_class) == ("fail", "4")
    assert f"MIRRORED.BY fetched from http://127.0.0.1:{list_server}/MIRRORED.BY" in reason
    assert "0 of 16 mirrors serve revision" in reason
    fetched = [p for p in many.probes if p.target.endswith("/MIRRORED.BY")]
    assert len(fetched) == 1 and fetched[0].ok


def test_chains_of_different_channels_advance_together(tmp_path: Path, dns_server: ResolverConfig,
                                                       black_hole: tuple[int, int],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Units on four channels, each with its own four mirrors, all dropped: the revisions in one round, the 4 x 4
    mirrors in the next — not one round of mirrors per channel (four --timeout), as when units were judged one
    after the other."""
    channels = [f"{k}.{CHANNEL}" for k in range(4)]
    root = fleet_root(tmp_path, 100, mirror_list(black_hole[1], 4, "{channel}/"), channels)
    report, rounds = fleet_check(root, dns_server, monkeypatch)
    assert len(rounds) == 2 and rounds[1] == 4 * 4 * 2, rounds
    assert {v[:2] for v in sa_verdicts(report)} == {("fail", "4")}
    assert len(sa_verdicts(report)) == 4  # one verdict per channel, the same for every unit on it
