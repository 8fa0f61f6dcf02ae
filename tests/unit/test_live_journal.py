"""live/journal.py on its own, fast: what it asks journalctl for, and what it keeps of the answer -- a journal
is written by the services themselves, so its lines are data to check, never to trust. A real journald is in
tests/integration/test_explain_journal.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailpreflight.live.backend import LiveUnit
from mailpreflight.live.journal import journal

INVOCATION = "5f0c2b1e9a7d4c3b8e6f1a2d3c4b5a69"
ANSWER = [
    json.dumps({"MESSAGE": "sa-update: channel failed", "_SYSTEMD_INVOCATION_ID": INVOCATION}),
    "not json at all",
    json.dumps({"MESSAGE": [104, 105, 255]}),  # journalctl's form of a message that is not UTF-8
    json.dumps(["an", "array"]),
    json.dumps("a string"),
    json.dumps({"NO_MESSAGE": "x"}),
    json.dumps({"MESSAGE": "second line \u00e9"}),
]


def unit(invocation: str) -> LiveUnit:
    return LiveUnit(id="spamd.service", load_state="loaded", active_state="failed", sub_state="failed",
                    result="exit-code", invocation_id=invocation, fragment_path="/etc/systemd/system/spamd.service",
                    dropin_paths=(), wants=(), after=(), environment=(), timeout_start_s=90.0, service_type="oneshot",
                    need_daemon_reload=False)


@pytest.fixture
def journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journalctl first in PATH that records its argv and prints ANSWER (plus bytes that are not UTF-8)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "answer").write_bytes("\n".join(ANSWER).encode() + b"\n\xff\xfe garbage\n")
    script = bin_dir / "journalctl"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\ncat {tmp_path}/answer\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path / "argv"


def test_the_invocation_is_asked_for_and_only_text_messages_kept(journalctl: Path) -> None:
    assert journal(unit(INVOCATION)) == ("sa-update: channel failed", "second line \u00e9")
    assert journalctl.read_text().splitlines() == [
        "-o", "json", "--no-pager", "-n", "50", f"_SYSTEMD_INVOCATION_ID={INVOCATION}",  # no --user: see journal()
        "+", f"OBJECT_SYSTEMD_INVOCATION_ID={INVOCATION}", "_UID=0"]  # the guard's line sent over the socket


@pytest.mark.parametrize("invocation", ["", "0" * 32])
def test_no_invocation_no_journalctl(journalctl: Path, invocation: str) -> None:
    assert journal(unit(invocation)) == ()
    assert not journalctl.exists()


def test_no_journalctl_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert journal(unit(INVOCATION)) == ()
