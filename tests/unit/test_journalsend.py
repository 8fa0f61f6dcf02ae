"""The guard's warning reaches `journalctl -u UNIT` although the unit's stderr goes nowhere (Debian's
spamd.service has StandardError=null): fix/journalsend.py for the guard, `logger --journald` for the in-guest
form. A real journald is in tests/integration/test_guard_journal.py, a booted guest in tests/vm/."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from mailpreflight.fix import guard, inguest, journalsend

V2 = "0::/system.slice/spamd.service\n"
USER = "0::/user.slice/user-0.slice/user@0.service/app.slice/mp-x.service\n"
V1 = "12:pids:/system.slice/spamd.service\n1:name=systemd:/system.slice/clamav-freshclam.service\n"


@pytest.mark.parametrize(("text", "expected"), [
    (V2, ("spamd.service", False)),
    (USER, ("mp-x.service", True)),
    (V1, ("clamav-freshclam.service", False)),
    ("0::/system.slice/spamd.service/.control\n", ("spamd.service", False)),  # Delegate=yes: the control group
    ("0::/system.slice/system-postfix.slice/postfix@-.service\n", ("postfix@-.service", False)),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", ("session-3.scope", False)),
    ("0::/\n", None), ("0::/init.scope/../x\n", ("init.scope", False)), ("", None), ("garbage", None),
])
def test_own_unit_from_proc_self_cgroup(text: str, expected: tuple[str, bool] | None) -> None:
    assert journalsend.own_unit(text) == expected


def test_stderr_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as f:
        info = os.fstat(f.fileno())
        assert journalsend.stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, f.fileno())
        assert not journalsend.stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}, f.fileno())
        assert not journalsend.stderr_is_journal({}, f.fileno())
        assert not journalsend.stderr_is_journal({"JOURNAL_STREAM": "x:y"}, f.fileno())


@pytest.fixture()
def journal(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock, path


def test_send_writes_one_native_entry_naming_the_unit(tmp_path: Path, journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    (tmp_path / "cgroup").write_text(V2)
    env = {"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}
    assert journalsend.send("mailpreflight guard: sa-update exited 4\nsecond line", 4, env, path,
                            str(tmp_path / "cgroup"))
    fields = dict(line.split("=", 1) for line in sock.recv(65536).decode().splitlines())
    assert fields == {"MESSAGE": "mailpreflight guard: sa-update exited 4 second line", "PRIORITY": "4",
                      "SYSLOG_IDENTIFIER": "mailpreflight", "OBJECT_SYSTEMD_UNIT": "spamd.service",
                      "OBJECT_SYSTEMD_INVOCATION_ID": env["INVOCATION_ID"]}
    (tmp_path / "cgroup").write_text(USER)
    assert journalsend.send("x", 5, {"INVOCATION_ID": "not-an-id"}, path, str(tmp_path / "cgroup"))
    assert sock.recv(65536) == (b"MESSAGE=x\nPRIORITY=5\nSYSLOG_IDENTIFIER=mailpreflight\n"
                                b"OBJECT_SYSTEMD_USER_UNIT=mp-x.service\n")


def test_send_only_under_systemd_and_never_fails(tmp_path: Path, journal: tuple[socket.socket, str]) -> None:
    _, path = journal
    (tmp_path / "cgroup").write_text(V2)
    cgroup = str(tmp_path / "cgroup")
    assert not journalsend.send("x", 4, {}, path, cgroup)  # run by hand: stderr only
    env = {"INVOCATION_ID": "1"}
    assert not journalsend.send("x", 4, env, str(tmp_path / "no-journald"), cgroup)
    assert not journalsend.send("x", 4, env, path, str(tmp_path / "no-cgroup"))
    (tmp_path / "cgroup").write_text("0::/\n")
    assert not journalsend.send("x", 4, env, path, cgroup)


def test_guard_warns_on_stderr_as_before(capfd: pytest.CaptureFixture[str]) -> None:
    assert guard.main(["--timeout", "5", "--diagnose-budget", "0", "--", "/bin/sh", "-c", "exit 4"]) == 0
    err = capfd.readouterr().err
    assert err.startswith("<4>mailpreflight guard: sh exited 4 after ") and err.endswith("; the unit starts anyway\n")
    assert err.count("\n") == 1


FAKE_LOGGER = """#!/bin/sh
if [ "$1" = --journald ]; then
  [ -n "${JOURNALD_OK:-}" ] || { echo "logger: unrecognized option '--journald'" >&2; exit 1; }
  cat > "$OUT.journald"; exit 0
fi
printf '%s\\n' "$@" > "$OUT.syslog"
"""


@pytest.mark.parametrize("has_journald", [True, False])
def test_in_guest_form_sends_the_unit_with_the_warning(tmp_path: Path, has_journald: bool) -> None:
    logger = tmp_path / "logger"
    logger.write_text(FAKE_LOGGER)
    logger.chmod(0o755)
    wrapper = inguest.Wrapper("timeout+logger", "/usr/bin/timeout", "/bin/sh", str(logger))
    # a name and a unit a hostile guest chose: nothing of them may act in the script
    argv = wrapper.argv(["/bin/sh", "-c", "exit 4"], 5, "sa$(touch PWNED)`id`", "x\\x2dy.service")
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "OUT": str(out), **({"JOURNALD_OK": "1"} if has_journald else {})}
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "PWNED").exists()
    if has_journald:
        assert (out.with_suffix(".journald").read_text().splitlines() ==
                ["MESSAGE=mailpreflight guard: sa_(touch PWNED)_id_ exited 4 (124: stopped after 5 s); the unit "
                 "starts anyway", "PRIORITY=4", "SYSLOG_IDENTIFIER=mailpreflight",
                 "OBJECT_SYSTEMD_UNIT=x\\x2dy.service"])
        assert not out.with_suffix(".syslog").exists()
    else:
        assert out.with_suffix(".syslog").read_text().splitlines() == [
            "-p", "daemon.warning", "-t", "mailpreflight",
            "guard: sa_(touch PWNED)_id_ exited 4 (124: stopped after 5 s); the unit starts anyway"]


def test_in_guest_form_is_silent_when_the_command_succeeds(tmp_path: Path) -> None:
    logger = tmp_path / "logger"
    logger.write_text(FAKE_LOGGER)
    logger.chmod(0o755)
    argv = inguest.Wrapper("timeout+logger", "/usr/bin/timeout", "/bin/sh", str(logger)).argv(
        ["/bin/true"], 5, "true", "spamd.service")
    done = subprocess.run(argv, env={"OUT": str(tmp_path / "out"), "JOURNALD_OK": "1"}, timeout=30)
    assert done.returncode == 0 and not list(tmp_path.glob("out*"))
