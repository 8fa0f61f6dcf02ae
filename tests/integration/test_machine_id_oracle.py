"""units/machineid.py against systemd 252 itself: `systemd-id128 machine-id` run in a private mount namespace
where /etc/machine-id is each candidate text (a bind mount; the host's file is never touched). systemd's
answer — the id, or a refusal — must be ours."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailpreflight.units.machineid import parse_machine_id

ID = "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a"
TEXTS = [f"{ID}\n", ID, f"{ID.upper()}\n", "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a\n",
         "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a", f"{ID}\n\n", f" {ID}\n", f"{ID}\r\n", ID[:31], ID + "0",
         "0" * 32 + "\n", "uninitialized\n", "{0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a}\n"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("systemd-id128") or not shutil.which("unshare")
    or not Path("/etc/machine-id").is_file(),
    reason="needs root, unshare, systemd-id128 and an /etc/machine-id file to mount over")


@pytest.mark.parametrize("text", TEXTS, ids=[repr(t)[:40] for t in TEXTS])
def test_same_answer_as_systemd(tmp_path: Path, text: str) -> None:
    candidate = tmp_path / "machine-id"
    candidate.write_text(text)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount --bind "$1" /etc/machine-id && exec systemd-id128 machine-id', "sh",
                           str(candidate)], capture_output=True, text=True, timeout=30)
    systemd = done.stdout.strip() if done.returncode == 0 else None
    assert parse_machine_id(text).value == systemd, done.stderr
