"""The bash completion is generated from the argparse definitions (mailpreflight.render.manpage) and works in bash."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailpreflight.cli import build_parser
from mailpreflight.fix import guard
from mailpreflight.render.manpage import render_bash_completion

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "contrib" / "bash-completion" / "mailpreflight"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def test_committed_completion_is_generated() -> None:
    generated = render_bash_completion(build_parser(), {"guard": guard.build_parser()})
    assert SCRIPT.read_text(encoding="utf-8") == generated, (
        "regenerate it: python tools/gendocs.py --completion > contrib/bash-completion/mailpreflight")


def test_bash_accepts_it() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def complete(words: list[str], path: str | None = None) -> list[str]:
    """COMPREPLY for the command line `words` with the cursor in the last word."""
    quoted = " ".join("'" + word.replace("'", "'\\''") + "'" for word in words)
    script = (f"source '{SCRIPT}' || exit 9\n"
              "complete -p mailpreflight >/dev/null || exit 8\n"
              f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
              "_mailpreflight\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_verbs() -> None:
    assert complete(["mailpreflight", "ch"]) == ["check"]
    assert set(complete(["mailpreflight", ""])) == {"show", "deps", "check", "dropin", "explain", "firewall",
                                                    "snapshot", "drift", "restore", "cleanup", "guard"}


def test_formats() -> None:
    assert complete(["mailpreflight", "check", "--format", ""]) == ["text", "json", "nagios", "prometheus"]
    assert complete(["mailpreflight", "firewall", "--format", "i"]) == ["iptables"]


def test_options() -> None:
    offered = complete(["mailpreflight", "check", "--g"])
    assert offered == ["--guest-dns", "--guest-firewall", "--guest-interface"]
    assert "--dry-run" in complete(["mailpreflight", "dropin", "install", "--"])


def test_dropin_action_then_unit(tmp_path: Path) -> None:
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\nprintf 'spamd.service enabled enabled\\npostfix.service enabled enabled\\n'\n")
    systemctl.chmod(0o755)
    path = f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    assert complete(["mailpreflight", "dropin", "i"], path) == ["install"]
    assert complete(["mailpreflight", "dropin", "install", "sp"], path) == ["spamd.service"]
    assert complete(["mailpreflight", "check", "--timeout", "3", "p"], path) == ["postfix.service"]
    assert complete(["mailpreflight", "check", "--timeout", ""], path) == []


def test_guard_completes_the_command_after_double_dash() -> None:
    assert "bash" in complete(["mailpreflight", "guard", "--timeout", "5", "--", "bas"])
