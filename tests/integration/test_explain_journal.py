"""`explain`'s journal part against a REAL journald: the systemd lab with its own private systemd-journald
(UserManagerLab(..., journald=True)), a user unit whose ExecStartPre prints to stdout and stderr and exits 4 (like
sa-update when every channel failed), started twice with a different distinctive line each time.

explain runs INSIDE the lab's mount namespace (UserManagerLab.run_inside), where /run/systemd/journal/* and
/run/log/journal are the lab's, so its `journalctl` reads the lab's journal and nothing of the host's.

Found by this test (and fixed): explain used to run `journalctl --user ...` for user units. `--user` restricts
journalctl to the files user-$UID.journal, but journald writes a user service's messages (with
_SYSTEMD_USER_UNIT and _SYSTEMD_INVOCATION_ID) to system.journal whenever the user is root or another system
user, whenever the storage is volatile (/run/log/journal is never split per user), and with SplitMode=none; then
explain's journal was always empty. The same match without `--user` finds exactly that invocation's lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from systemd_lab import UserManagerLab

UNIT = "mpj-update.service"


@dataclass(frozen=True)
class Run:
    marks: tuple[str, str]  # the distinctive token of the first and of the second invocation
    invocations: tuple[str, str]
    starts: tuple[dict[str, Any], dict[str, Any]]


def lines(mark: str) -> list[str]:
    return [f"mpj stdout {mark}", f"mpj stderr {mark}"]


def journal_messages(lab: UserManagerLab, *args: str) -> list[str]:
    done = lab.journalctl("-o", "json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(raw).get("MESSAGE") for raw in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def lab(journald_lab: UserManagerLab) -> UserManagerLab:
    return journald_lab  # tests/integration/conftest.py: one lab with its own journald for the session


@pytest.fixture(scope="module")
def run(lab: UserManagerLab, tmp_path_factory: pytest.TempPathFactory) -> Run:
    bin_dir = tmp_path_factory.mktemp("mpj-bin")  # the host's /tmp: the same inside the lab's namespace
    sa_update = bin_dir / "sa-update"
    # it lingers a moment before it exits: journald attributes a stream's lines to the unit from the writer's
    # /proc entry, and a writer already gone under load leaves lines without _SYSTEMD_* fields
    sa_update.write_text('#!/bin/sh\necho "mpj stdout $MARK"\necho "mpj stderr $MARK" >&2\nsleep 1\nexit 4\n')
    sa_update.chmod(0o755)
    (lab.unit_dir / UNIT).write_text(f"[Service]\nType=oneshot\nEnvironment=MARK=unset\nExecStartPre={sa_update}\n"
                                     "ExecStart=/bin/true\n")
    marks = (f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}")
    starts = []
    for mark in marks:
        (lab.unit_dir / f"{UNIT}.d").mkdir(exist_ok=True)
        (lab.unit_dir / f"{UNIT}.d" / "mark.conf").write_text(f"[Service]\nEnvironment=MARK={mark}\n")
        lab.reload()
        start = lab.start_unit(UNIT)
        assert (start["Result"], start["exec_status"]["ExecStartPre"][0]["status"]) == ("exit-code", 4), start
        # journald reads the service's stdout stream asynchronously: wait until this start's lines are stored
        deadline = time.monotonic() + 30  # journald under load (2 busy cores) can take seconds
        while not set(lines(mark)) <= set(journal_messages(lab, f"_SYSTEMD_INVOCATION_ID={start['InvocationID']}")):
            assert time.monotonic() < deadline, (mark, lab.journalctl("-o", "json", "-n", "40").stdout)
            time.sleep(0.05)
        starts.append(start)
    invocations = (starts[0]["InvocationID"], starts[1]["InvocationID"])
    assert invocations[0] != invocations[1]
    return Run(marks, invocations, (starts[0], starts[1]))


def explain_inside(lab: UserManagerLab) -> dict[str, Any]:
    done = lab.run_inside([sys.executable, "-m", "mailpreflight", "explain", "--user", UNIT, "--format", "json",
                           "--timeout", "1"])
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def explained(lab: UserManagerLab, run: Run) -> dict[str, Any]:
    return explain_inside(lab)


def test_the_lab_journal_is_private(lab: UserManagerLab) -> None:
    # from inside: the lab's volatile journal only; the host's /var/log/journal is hidden by an empty tmpfs
    inside = lab.run_inside(["sh", "-c", "ls -A /var/log/journal 2>/dev/null; echo; ls -A /run/log/journal"])
    host_persistent, _, volatile = inside.stdout.partition("\n")
    assert host_persistent == ""
    machine_id = Path("/etc/machine-id").read_text().strip()
    assert volatile.split() == [machine_id]
    # the journal sockets are not the host's (a host without journald has none at all)
    assert lab.run_inside(["test", "-S", "/run/systemd/journal/stdout"]).returncode == 0
    assert os.stat("/run/systemd").st_dev != int(lab.run_inside(["stat", "-c", "%d", "/run/systemd"]).stdout)


def test_the_lab_journal_has_each_invocation_with_its_user_unit(lab: UserManagerLab, run: Run) -> None:
    for mark, invocation in zip(run.marks, run.invocations, strict=True):
        done = lab.journalctl("-o", "json", f"_SYSTEMD_INVOCATION_ID={invocation}")
        entries = [json.loads(raw) for raw in done.stdout.splitlines()]
        assert sorted(e["MESSAGE"] for e in entries) == sorted(lines(mark))
        for e in entries:  # as on a real machine: the user manager is user@UID.service
            uid = os.getuid()
            assert (e["_SYSTEMD_USER_UNIT"], e["_SYSTEMD_UNIT"], e["_TRANSPORT"]) == (
                UNIT, f"user@{uid}.service", "stdout")
            assert e["_SYSTEMD_CGROUP"] == f"/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/{UNIT}"


def test_explain_finds_the_failed_command(explained: dict[str, Any]) -> None:
    assert explained["failed_command"]["key"] == "ExecStartPre"
    assert (explained["cause"], explained["exit_status"]) == ("exit-code", 4)
    assert explained["meaning"].startswith("sa-update exit 4")


def test_explains_journalctl_argv_needs_no_user_flag(lab: UserManagerLab, run: Run) -> None:
    """Why explain's journalctl has no `--user`: with it, that invocation's lines are not found."""
    match = f"_SYSTEMD_INVOCATION_ID={run.invocations[1]}"
    assert journal_messages(lab, "--user", "--no-pager", "-n", "50", match) == []
    assert sorted(journal_messages(lab, "--no-pager", "-n", "50", match)) == sorted(lines(run.marks[1]))


def test_explain_journal_of_that_invocation(explained: dict[str, Any], run: Run) -> None:
    assert sorted(explained["journal"]) == sorted(lines(run.marks[1]))
    assert not any(run.marks[0] in line for line in explained["journal"])
