"""`explain` against a REAL systemd (user manager, real D-Bus): units that fail by exit code, by timeout and by
a missing binary; both live backends return the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from systemd_lab import UserManagerLab

from mailpreflight.live.backend import open_backend

UNITS = {
    "mpe-exit.service": "[Service]\nType=oneshot\nExecStartPre=/bin/true\nExecStartPre=/bin/sh -c 'exit 4'\n"
                        "ExecStart=/bin/true\n",
    "mpe-timeout.service": "[Service]\nType=oneshot\nTimeoutStartSec=1\nExecStartPre=/bin/sleep 30\n"
                           "ExecStart=/bin/true\n",
    "mpe-missing.service": "[Service]\nType=oneshot\nExecStartPre=/nonexistent/bin/sa-update\nExecStart=/bin/true\n",
    "mpe-fine.service": "[Service]\nType=oneshot\nExecStartPre=-/bin/false\nExecStart=/bin/true\n",
}


@pytest.fixture
def started(systemd_lab: UserManagerLab, lab_units: Path) -> UserManagerLab:
    for name, text in UNITS.items():
        (lab_units / name).write_text(text)
    systemd_lab.reload()
    for name in UNITS:
        systemd_lab.start_unit(name, timeout=30)
    return systemd_lab


def explain(lab: UserManagerLab, name: str, backend: str = "auto") -> dict[str, Any]:
    env = {**os.environ, **lab.env}
    done = subprocess.run([sys.executable, "-m", "mailpreflight", "explain", "--user", "--backend", backend, name,
                           "--format", "json", "--timeout", "1"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_exit_code(started: UserManagerLab) -> None:
    result = explain(started, "mpe-exit.service")
    assert result["failed_command"]["key"] == "ExecStartPre" and result["failed_command"]["index"] == 1
    assert result["failed_command"]["argv"] == ["/bin/sh", "-c", "exit 4"]
    assert (result["cause"], result["exit_status"]) == ("exit-code", 4)
    assert "ExecStartPre[1]" in result["diagnosis"]


def test_timeout(started: UserManagerLab) -> None:
    result = explain(started, "mpe-timeout.service")
    assert result["failed_command"]["argv"] == ["/bin/sleep", "30"]
    assert result["cause"] == "timeout" and result["signal"] == "SIGTERM"
    assert "TimeoutStartSec=1 s" in result["diagnosis"] and "does not help" in result["diagnosis"]


def test_missing_binary(started: UserManagerLab) -> None:
    result = explain(started, "mpe-missing.service")
    assert (result["cause"], result["exit_status"]) == ("not-found", 203)
    assert "install the program or correct the path /nonexistent/bin/sa-update" in result["diagnosis"]


def test_a_unit_that_is_fine(started: UserManagerLab) -> None:
    result = explain(started, "mpe-fine.service")
    assert result["failed_command"] is None and result["cause"] == "ok"


@pytest.mark.parametrize("backend", ["pystemd", "dbus-python"])
def test_each_backend_explains(started: UserManagerLab, backend: str) -> None:
    assert explain(started, "mpe-exit.service", backend)["exit_status"] == 4


def test_both_backends_return_identical_data(started: UserManagerLab) -> None:
    address = started.env["DBUS_SESSION_BUS_ADDRESS"]
    for name in UNITS:
        units = [asdict(open_backend(kind, user=True, address=address).unit(name))
                 for kind in ("pystemd", "dbus-python")]
        assert units[0] == units[1], name
        assert units[0]["exec"]["ExecStartPre"], name


def test_files_backend_agrees_on_what_the_files_say(started: UserManagerLab) -> None:
    import pwd

    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.live.backend import FilesBackend
    from mailpreflight.units.loader import UnitLoader
    from mailpreflight.units.specifiers import user_manager

    me = pwd.getpwuid(os.getuid())
    who = {"u": me.pw_name, "U": str(me.pw_uid), "g": me.pw_name, "G": str(me.pw_gid), "s": me.pw_shell}
    files = FilesBackend(UnitLoader(RootFS("/"), started.unit_paths(), user_manager(started.env, who)))
    live = open_backend("pystemd", user=True, address=started.env["DBUS_SESSION_BUS_ADDRESS"])
    for name in UNITS:
        ours, theirs = files.unit(name), live.unit(name)
        assert (ours.id, ours.fragment_path, ours.dropin_paths) == (theirs.id, theirs.fragment_path,
                                                                   theirs.dropin_paths)
        for key, runs in ours.exec.items():
            assert [(r.path, r.argv, r.ignore, r.flags) for r in runs] == [
                (r.path, r.argv, r.ignore, r.flags) for r in theirs.exec.get(key, ())], (name, key)
        assert ours.timeout_start_s == theirs.timeout_start_s, name
