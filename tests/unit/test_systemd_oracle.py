"""Our reading of unit files against systemd's own: `systemd-analyze verify` (systemd's real parser, run
offline) must report the same problems on the same lines, and the same load outcome."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.loader import LoadState, UnitLoader

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")

BOM = "\ufeff"
CASES: dict[str, str] = {
    "comments-and-continuations": "[Unit]\nDescription=x\n# c\n; c\n[Service]\nExecStart=/bin/true \\\n  a \\\n"
                                  "# inside\n  b\nBogusKey=1 \\\n  cont\n",
    "bom-then-comment": f"{BOM}# looks like a comment\n[Service]\nExecStart=/bin/true\n",
    "bom-then-section": f"{BOM}[Service]\nExecStart=/bin/true\n",
    "outside-section": "Description=x\n[Service]\nExecStart=/bin/true\n",
    "missing-equals-and-key": "[Service]\nExecStart=/bin/true\nNoEquals\n=nokey\n.include /etc/x\n",
    "unknown-and-x-sections": "[X-Mine]\nA=1\n[Bogus]\nB=1\n[Service]\nExecStart=/bin/true\nX-Key=1\n",
    "invalid-section-header": "[Service]\nExecStart=/bin/true\n[Serv\"ice]\n",
    "unclosed-section-header": "[Service\nExecStart=/bin/true\n",
    "not-utf8": "[Service]\nExecStart=/bin/true\nUser=\udcff\n",
    "unknown-escape": "[Service]\nExecStart=/bin/echo \\q x\\;y \\; \"a\\sb\"\n",
    "unbalanced-later-word": "[Service]\nExecStart=/bin/echo \"x\n",
    "unbalanced-first-word": "[Service]\nExecStart=/bin/true\nExecStartPre=\"/bin/echo x\n",
    "ignored-bad-line": "[Service]\nExecStart=/bin/true\nExecStartPre=-/bin/echo \"x\n",
    "unknown-specifier": "[Service]\nExecStart=/bin/echo %z\n",
    "environment-errors": "[Service]\nExecStart=/bin/true\nEnvironment=A=1 \"B=2 3\" 4X=5 C=%z\n"
                          "EnvironmentFile=relative\n",
    "relative-dir": "[Service]\nExecStart=/bin/\n",
    "empty-path": "[Service]\nExecStart=-\nExecStart=/bin/true\n",
    "crlf-and-cr": "[Service]\r\nExecStart=/bin/true\r\nBogus=1\rOther=2\n",
    "trailing-continuation-at-eof": "[Service]\nExecStart=/bin/true\nBogus=1 \\",
    "long-line": "[Service]\nExecStart=/bin/true " + "a" * (1024 * 1024) + "\n",
}
# Where systemd fails a file without saying where, we do say it (the admin needs the line).
OURS_ONLY = {"long-line": {(2, "Line too long")}}
_MESSAGE = re.compile(r"^(?P<file>/\S+?):(?P<line>\d+): (?P<msg>.*)$")


def systemd_says(path: Path) -> tuple[set[tuple[int, str]], str]:
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=60, env={"SYSTEMD_LOG_LEVEL": "info", "PATH": "/usr/bin:/bin"})
    found = set()
    for line in proc.stderr.splitlines():
        match = _MESSAGE.match(line)
        if match and match["file"] == str(path):
            found.add((int(match["line"]), _gist(match["msg"])))
    if "has a bad unit file setting" in proc.stderr:
        outcome = LoadState.BAD_SETTING.value
    elif "failed to load properly" in proc.stderr:
        outcome = LoadState.ERROR.value
    else:
        outcome = LoadState.LOADED.value
    return found, outcome


def _gist(message: str) -> str:
    """Compare messages by their first words: the tails quote values in slightly different ways."""
    return " ".join(message.split()[:3])


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_findings_as_systemd(tmp_path: Path, name: str) -> None:
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    path = unit_dir / "t.service"
    path.write_bytes(CASES[name].encode("utf-8", "surrogateescape"))
    expected, outcome = systemd_says(path)
    unit = UnitLoader(RootFS(str(tmp_path)), version=252).load("t.service")
    ours = {(d.source.systemd_line, _gist(d.message)) for d in unit.diagnostics if d.source.line}
    assert unit.load_state.value == outcome
    assert ours == expected | OURS_ONLY.get(name, set())
