"""`mailpreflight guard`: real processes, real signals, probes only to 127.0.0.0/8.

Guard runs in a child interpreter (as systemd would run it) with an environment without proxies, so that no
probe leaves the loopback. Commands named like real tools (sa-update, curl) are small scripts in tmp_path;
sa-update's diagnosis would ask the system's resolver, so those runs set --diagnose-budget 0.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mailpreflight.fix.guard import dependencies, diagnose, diagnose_within, main, parse_args, subject, summarize
from mailpreflight.model import DepKind, ProbeResult, ProbeStatus

GUARD = "import sys; from mailpreflight.fix.guard import main; sys.exit(main(sys.argv[1:]))"
ENV = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}


def guard(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", GUARD, *args], input=stdin, capture_output=True, text=True,
                          env=ENV, timeout=timeout, check=False)


def script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def running(pid: int) -> bool:
    """Alive and not a zombie (this container's init does not reap orphans; systemd would)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_for(path: Path, lines: int = 1, seconds: float = 10) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            found = path.read_text(encoding="utf-8").split()
            if len(found) >= lines:
                return [int(word) for word in found]
        time.sleep(0.02)
    raise AssertionError(f"{path} never got {lines} pids")


def one_warning(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("<4>mailpreflight guard: "), stderr
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


# --- running the command ---------------------------------------------------------------------------------


def test_success_passes_output_through_unchanged() -> None:
    done = guard("--", "sh", "-c", "echo out; echo err >&2; seq 3")
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n1\n2\n3\n", "err\n")


def test_command_gets_dev_null_as_stdin_and_its_own_process_group() -> None:
    code = "import os, sys; print(repr(sys.stdin.read()), os.getpgrp() == os.getpid() == os.getsid(0))"
    done = guard("--", sys.executable, "-c", code, stdin="guard's own input")
    assert (done.returncode, done.stdout, done.stderr) == (0, "'' True\n", "")


def test_no_shell_between_guard_and_the_command() -> None:
    done = guard("--", "echo", "$HOME", "a;b", "*")
    assert done.stdout == "$HOME a;b *\n"


def test_failure_exits_0_with_one_warning_line() -> None:
    done = guard("--diagnose-budget", "0", "--", "sh", "-c", "echo partial; exit 3")
    assert done.returncode == 0
    assert done.stdout == "partial\n"
    line = one_warning(done.stderr)
    assert "sh exited 3 after " in line
    assert line.endswith("; the unit starts anyway")


def test_failure_line_carries_a_diagnosis_by_default() -> None:
    done = guard("--", "false")
    assert done.returncode == 0
    assert "false exited 1 after" in one_warning(done.stderr)
    assert "no network endpoint known to probe" in done.stderr


def test_strict_passes_the_status_on() -> None:
    done = guard("--strict", "--diagnose-budget", "0", "--", "sh", "-c", "exit 3")
    assert done.returncode == 3
    assert one_warning(done.stderr).endswith("; exit status 3 passed on")
    assert guard("--strict", "--", "true").returncode == 0


def test_killed_by_a_signal_is_128_plus_n() -> None:
    done = guard("--strict", "--diagnose-budget", "0", "--", "sh", "-c", "kill -SEGV $$")
    assert done.returncode == 128 + signal.SIGSEGV
    assert "was killed by SIGSEGV" in one_warning(done.stderr)


def test_sa_update_exit_1_is_no_new_rules_not_a_failure(tmp_path: Path) -> None:
    sa_update = script(tmp_path, "sa-update", "exit 1")
    for strict in ((), ("--strict",)):
        done = guard(*strict, "--diagnose-budget", "0", "--", sa_update, "--channel", "updates.example.org")
        assert (done.returncode, done.stderr) == (0, "")


def test_sa_update_exit_4_is_a_failure(tmp_path: Path) -> None:
    sa_update = script(tmp_path, "sa-update", "exit 4")
    done = guard("--diagnose-budget", "0", "--", sa_update)
    assert done.returncode == 0
    assert "sa-update exited 4 after" in one_warning(done.stderr)
    assert guard("--strict", "--diagnose-budget", "0", "--", sa_update).returncode == 4


def test_ok_status_adds_successes_and_replaces_the_tools_default(tmp_path: Path) -> None:
    assert guard("--ok-status", "3,5", "--", "sh", "-c", "exit 5").stderr == ""
    assert guard("--ok-status", "3,5", "--strict", "--", "true").returncode == 0
    sa_update = script(tmp_path, "sa-update", "exit 1")
    done = guard("--ok-status", "2", "--strict", "--diagnose-budget", "0", "--", sa_update)
    assert done.returncode == 1
    assert "sa-update exited 1" in one_warning(done.stderr)


def test_missing_binary_is_a_warning_and_exit_0(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-tool")
    done = guard("--", missing, "--flag")
    assert done.returncode == 0
    line = one_warning(done.stderr)
    assert "no-such-tool cannot run: No such file or directory" in line
    assert guard("--strict", "--", missing).returncode == 127
    assert guard("--strict", "--", "no-such-tool-in-path-either").returncode == 127


def test_nul_in_argv_cannot_run() -> None:
    assert main(["--diagnose-budget", "0", "--strict", "--", "echo", "a\0b"]) == 126


def test_not_executable_is_126(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n", encoding="utf-8")
    done = guard("--strict", "--", str(plain))
    assert done.returncode == 126
    assert "plain cannot run: Permission denied" in one_warning(done.stderr)


# --- time bound and signals ------------------------------------------------------------------------------


def test_timeout_kills_the_whole_group_within_about_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    done = guard("--timeout", "1", "--strict", "--diagnose-budget", "0", "--",
                 "sh", "-c", f"sleep 30 & echo $! >> {pids}; echo $$ >> {pids}; sleep 30")
    elapsed = time.monotonic() - started
    assert done.returncode == 124
    assert 0.9 < elapsed < 3.5, elapsed
    line = one_warning(done.stderr)
    assert "sh timed out after 1." in line
    assert "stopped with SIGTERM" in line
    background, shell = wait_for(pids, 2)
    assert not running(background)
    assert not running(shell)


def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    done = guard("--timeout", "0.5", "--grace", "1", "--diagnose-budget", "0", "--",
                 "sh", "-c", f"trap '' TERM; sleep 30 & echo $! >> {pids}; sleep 30")
    elapsed = time.monotonic() - started
    assert done.returncode == 0
    assert 1.4 < elapsed < 4.0, elapsed
    assert "stopped with SIGKILL after 1 s grace" in one_warning(done.stderr)
    assert not running(wait_for(pids)[0])


def test_a_member_left_behind_by_the_leader_gets_its_grace_then_sigkill(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the leader dies on SIGTERM at once, its background child ignores it
    done = guard("--timeout", "0.5", "--grace", "1", "--diagnose-budget", "0", "--",
                 "sh", "-c", f"(trap '' TERM; sleep 30) & echo $! >> {pids}; sleep 30")
    assert "SIGKILL" in one_warning(done.stderr)
    assert not running(wait_for(pids)[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_guard_is_forwarded_to_the_group(tmp_path: Path, signum: signal.Signals) -> None:
    # (a background job of sh ignores SIGINT: that one needs the SIGKILL after --grace)
    pids = tmp_path / "pids"
    process = subprocess.Popen(
        [sys.executable, "-c", GUARD, "--strict", "--grace", "1", "--", "sh", "-c",
         f"sleep 30 & echo $! >> {pids}; echo $$ >> {pids}; wait"],
        stderr=subprocess.PIPE, text=True, env=ENV)
    background, shell = wait_for(pids, 2)
    started = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    assert time.monotonic() - started < 3
    assert process.returncode == 128 + signum
    assert stderr.strip() == f"<5>mailpreflight guard: sh stopped by {signum.name} after " + \
        stderr.strip().rsplit("after ", 1)[1]
    assert not running(background)
    assert not running(shell)


def test_guard_restores_its_signal_handlers(tmp_path: Path) -> None:
    code = ("import signal; from mailpreflight.fix.guard import run_command; run_command(['true'], 5, 1); "
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    assert done.stdout == "True\n"


def test_a_successful_run_imports_no_probe_machinery() -> None:
    code = ("import sys; from mailpreflight.fix.guard import main; main(['--', 'true']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'dns', 'urllib3') "
            "or m.startswith(('mailpreflight.deps', 'mailpreflight.probes', 'mailpreflight.units', "
            "'mailpreflight.model', 'dataclasses'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
    # its command line's parser, shared with the analysis, is standard library only (deps/__init__ is empty)
    assert done.stdout == "['mailpreflight.deps', 'mailpreflight.deps.guardline']\n"


# --- the diagnosis ---------------------------------------------------------------------------------------


def test_diagnosis_names_a_refused_endpoint(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/x"
    text = diagnose(["curl", "-fsS", url], {}, budget=3)
    assert text == f"unreachable: {url} (refused)"


def test_guard_line_names_the_refused_endpoint(tmp_path: Path, closed_port: int) -> None:
    curl = script(tmp_path, "curl", "exit 7")
    url = f"http://127.0.0.1:{closed_port}/rules.tar.gz"
    done = guard("--", curl, "-fsS", "-o", "/dev/null", url)
    assert done.returncode == 0
    line = one_warning(done.stderr)
    assert re.fullmatch(rf"<4>mailpreflight guard: curl exited 7 after \d+\.\d s; unreachable: {re.escape(url)} "
                        r"\(refused\); the unit starts anyway", line), line


def test_a_shell_around_a_network_tool_is_named_and_diagnosed_as_that_tool(tmp_path: Path,
                                                                           closed_port: int) -> None:
    """`bash -c "sa-update || true"` is the case mailpreflight exists for: the warning names and probes the
    program the shell runs (found as `deps` finds it), not the shell."""
    curl = script(tmp_path, "curl", "exit 7")
    url = f"http://127.0.0.1:{closed_port}/rules.tar.gz"
    done = guard("--", "/bin/sh", "-ec", f"{curl} -fsS -o /dev/null {url}; echo done")
    line = one_warning(done.stderr)
    assert re.fullmatch(rf"<4>mailpreflight guard: curl \(run by sh -c\) exited 7 after \d+\.\d s; unreachable: "
                        rf"{re.escape(url)} \(refused\); the unit starts anyway", line), line
    argv = ["/bin/bash", "-c", "sa-update --nogpg || true"]
    assert subject(argv, {}) == "sa-update (run by bash -c)"
    assert dependencies(argv, {}) == dependencies(["sa-update", "--nogpg"], {}) != []
    assert subject(["/bin/sh", "-c", "exit 4"], {}) == "sh" and subject(["/usr/bin/sa-update"], {}) == "sa-update"


def test_a_proxied_url_is_diagnosed_through_its_proxy(closed_port: int) -> None:
    argv = ["curl", "-x", f"127.0.0.1:{closed_port}", "http://127.0.0.1:81/x"]
    assert [(d.kind, d.target) for d in dependencies(argv, {})] == [(DepKind.TCP, f"127.0.0.1:{closed_port}")]
    assert diagnose(argv, {}, budget=3) == f"unreachable: 127.0.0.1:{closed_port} (refused)"
    env = {"http_proxy": f"http://127.0.0.1:{closed_port}"}
    assert diagnose(["curl", "http://127.0.0.1:81/x"], env, budget=3) == \
        f"unreachable: 127.0.0.1:{closed_port} (refused)"


def test_diagnosis_stays_within_its_budget() -> None:
    # A server that accepts connections (the kernel does) but never answers: the HTTP probe would wait.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/slow"
        started = time.monotonic()
        text = diagnose_within(["wget", url], {}, budget=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert text.startswith(f"unreachable: {url} (") or text == "no diagnosis", text


def test_diagnosis_never_raises() -> None:
    # an empty argv (parse_args never lets one through) has nothing to probe; a broken rule is "no diagnosis"
    assert diagnose([], {}, budget=1) == "no network endpoint known to probe"
    assert diagnose_within([], {}, budget=1) == "no network endpoint known to probe"
    assert diagnose(["true"], {}, budget=1) == "no network endpoint known to probe"


def test_dependencies_dns_first_no_udp_at_most_8() -> None:
    urls = [f"http://127.0.0.{i}:81/" for i in range(1, 12)]
    found = dependencies(["curl", *urls], {})
    assert [d.target for d in found] == urls[:8]
    sa = dependencies(["sa-update", "--forcemirror", "http://127.0.0.1:1/", "--channel", "a.example",
                       "--channel", "b.example"], {})
    kinds = [d.kind for d in sa]
    assert DepKind.UDP not in kinds
    assert kinds == sorted(kinds, key=lambda k: k is not DepKind.DNS)
    assert {"TXT mirrors.a.example", "TXT mirrors.b.example"} <= {d.target for d in sa}
    assert len(sa) <= 8


def _result(kind: DepKind, target: str, error: str | None) -> ProbeResult:
    return ProbeResult(kind, target, ProbeStatus.OK if error is None else ProbeStatus.FAIL, error, "", 0.1)


def test_summary_wording() -> None:
    results: Sequence[ProbeResult] = [
        _result(DepKind.DNS, "TXT 1.0.4.updates.example.org", "nxdomain"),  # sa-update's "nothing new"
        _result(DepKind.DNS, "TXT mirrors.updates.example.org", "dns-timeout"),
        _result(DepKind.DNS, "A mirror.example", "nxdomain"),
        _result(DepKind.HTTP, "http://mirror.example/", "connect-timeout"),
        _result(DepKind.HTTPS, "https://other.example/", "http-status"),
        _result(DepKind.TCP, "10.0.0.1:53", "deadline"),
        _result(DepKind.TCP, "10.0.0.2:53", None),
    ]
    assert summarize(results, 3) == (
        "unreachable: TXT mirrors.updates.example.org (dns-timeout), http://mirror.example/ (connect-timeout), "
        "10.0.0.1:53 (no answer within 3 s); failing: A mirror.example (nxdomain), "
        "https://other.example/ (http-status)")
    assert summarize(results[-1:], 3) == "all 1 endpoints probed answered"
    assert summarize([], 3) == "no network endpoint known to probe"


# --- the command line ------------------------------------------------------------------------------------


def test_parse_args_defaults_and_the_command_untouched() -> None:
    options = parse_args(["--", "sa-update", "--", "--timeout", "9"])
    assert options.timeout == 60 and options.grace == 5 and options.diagnose_budget == 3
    assert options.ok_status is None and not options.strict
    assert options.command == ["sa-update", "--", "--timeout", "9"]
    options = parse_args(["--timeout", "1.5", "--grace", "0", "--ok-status", "1,2", "--strict", "--", "x"])
    assert (options.timeout, options.grace, options.ok_status, options.strict) == (1.5, 0.0, frozenset({1, 2}), True)


@pytest.mark.parametrize("argv", [
    ["true"], ["--"], ["--timeout", "0", "--", "true"], ["--timeout", "x", "--", "true"],
    ["--timeout", "nan", "--", "true"], ["--grace", "-1", "--", "true"], ["--ok-status", "1,x", "--", "true"],
    ["--ok-status", "300", "--", "true"], ["--bogus", "--", "true"],
])
def test_usage_errors_are_one_line_and_3(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("mailpreflight guard: ")


def test_help_is_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "-- COMMAND [ARG...]" in capsys.readouterr().out
