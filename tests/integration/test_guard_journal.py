"""The guard's warning in a REAL journal when the unit throws its stderr away (StandardError=null, as Debian's
spamd.service): the lab's systemd user manager with its private systemd-journald runs a unit whose guarded
ExecStartPre fails; `journalctl --user-unit UNIT` must show the warning. Before fix/journalsend.py the line went
to /dev/null; a booted Debian 12 guest (tests/vm/) showed the same loss for the in-guest `logger` form, whose
`logger --journald` entry is checked here with the real util-linux logger.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any

import pytest
from systemd_lab import UserManagerLab

from mailpreflight.fix import dropin, inguest

GUARDED = "mpg-guarded.service"
LOGGED = "mpg-logged.service"


@pytest.fixture(scope="module")
def lab(journald_lab: UserManagerLab) -> UserManagerLab:
    return journald_lab  # tests/integration/conftest.py: one lab with its own journald for the session


def entries(lab: UserManagerLab, *match: str, want: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The journal entries matching `match`, once one of them contains `want` (journald stores asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        done = lab.journalctl("-o", "json", *match)
        found = [json.loads(raw) for raw in done.stdout.splitlines()]
        if any(want in str(e.get("MESSAGE", "")) for e in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def start(lab: UserManagerLab, name: str, exec_start_pre: str) -> None:
    (lab.unit_dir / name).write_text("[Service]\nType=oneshot\nStandardOutput=null\nStandardError=null\n"
                                     f"ExecStartPre={exec_start_pre}\nExecStart=/bin/true\n")
    lab.reload()
    started = lab.start_unit(name)
    assert started["Result"] == "success", started  # the failure was tolerated


def test_guard_warning_reaches_the_units_journal_without_stderr(lab: UserManagerLab) -> None:
    program = dropin.guard_program()
    start(lab, GUARDED, dropin.exec_line("-", [program, "guard", "--timeout", "5", "--diagnose-budget", "0", "--",
                                              "/bin/sh", "-c", "exit 4"]))
    want = "mailpreflight guard: sh exited 4"
    found = entries(lab, f"--user-unit={GUARDED}", want=want)
    [line] = [e for e in found if want in e.get("MESSAGE", "")]
    assert line["MESSAGE"].endswith("; the unit starts anyway")
    assert (line["PRIORITY"], line["SYSLOG_IDENTIFIER"], line["OBJECT_SYSTEMD_USER_UNIT"]) == (
        "4", "mailpreflight", GUARDED)
    # explain reads that start's journal by its invocation ID: the guard's line is among it
    assert len(line["OBJECT_SYSTEMD_INVOCATION_ID"]) == 32
    done = lab.run_inside([sys.executable, "-m", "mailpreflight", "explain", "--user", GUARDED, "--format", "json",
                           "--timeout", "1"])
    assert "Traceback" not in done.stderr, done.stderr
    assert any(want in message for message in json.loads(done.stdout)["journal"]), done.stdout


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
def test_in_guest_logger_form_sends_the_unit_field(lab: UserManagerLab) -> None:
    logger = shutil.which("logger")
    assert logger
    wrapper = inguest.Wrapper("timeout+logger", shutil.which("timeout") or "/usr/bin/timeout", "/bin/sh", logger)
    start(lab, LOGGED, dropin.exec_line("-", wrapper.argv(["/bin/sh", "-c", "exit 4"], 5, "sa-update",
                                                          "spamd.service")))
    want = "mailpreflight guard: sa-update exited 4"
    found = entries(lab, "OBJECT_SYSTEMD_UNIT=spamd.service", want=want)
    [line] = [e for e in found if want in e.get("MESSAGE", "")]
    assert (line["PRIORITY"], line["SYSLOG_IDENTIFIER"], line["_UID"]) == ("4", "mailpreflight", "0")
    assert line["MESSAGE"].endswith("(124: stopped after 5 s); the unit starts anyway")
