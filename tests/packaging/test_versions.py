"""One version: __version__ in src/mailpreflight/__init__.py. CHANGELOG.md's newest section is that version, and
packaging/deb/changelog.py turns CHANGELOG.md into the Debian changelog (refusing any other version)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailpreflight import __version__

REPO = Path(__file__).resolve().parents[2]
CONVERT = REPO / "packaging/deb/changelog.py"
MAINTAINER = "mailpreflight maintainers <maintainers@example.org>"


def convert(changelog: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CONVERT), str(changelog), version, MAINTAINER, "bookworm"],
                          capture_output=True, text=True, timeout=60)


def test_changelog_describes_this_version() -> None:
    done = convert(REPO / "CHANGELOG.md", __version__)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"mailpreflight ({__version__}) bookworm; urgency=medium\n\n  * ")
    assert f"\n -- {MAINTAINER}  " in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines() if line.startswith("  "))  # wrapped items


def test_debian_tools_read_the_converted_changelog(tmp_path: Path) -> None:
    if shutil.which("dpkg-parsechangelog") is None:
        pytest.skip("dpkg-parsechangelog not found (Debian: apt-get install dpkg-dev)")
    converted = tmp_path / "changelog"
    converted.write_text(convert(REPO / "CHANGELOG.md", __version__).stdout)
    parsed = subprocess.run(["dpkg-parsechangelog", "-l", str(converted), "-S", "Version"], capture_output=True,
                            text=True, timeout=60)
    assert parsed.returncode == 0 and parsed.stdout.strip() == __version__, parsed.stderr


def test_another_version_is_refused(tmp_path: Path) -> None:
    done = convert(REPO / "CHANGELOG.md", "99.0.0")
    assert done.returncode == 2 and done.stdout == ""
    assert f"the newest section of {REPO / 'CHANGELOG.md'} is {__version__}, but the version is 99.0.0" in done.stderr


@pytest.mark.parametrize("text, reason", [
    ("# Changelog\n\n## 1.0 - 2026-01-01\n\n- x\n", "heading not in the form"),
    ("## 1.0 (2026-01-01)\n\nfree text\n", "not a '- ' item"),
    ("## 1.0 (2026-01-01)\n\n", "no '- ' items"),
    ("# Changelog\n", "has no '## VERSION (YYYY-MM-DD)' section"),
])
def test_malformed_changelogs_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(text)
    done = convert(changelog, "1.0")
    assert done.returncode == 2 and reason in done.stderr, done.stderr
