"""The .deb, built once per session by packaging/deb/build (test_deb.py installs it on this machine,
test_deb_clean_root.py in a clean Debian 12 root, test_ansible.py's check-mode run copies it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_deb() -> Path:
    if shutil.which("dpkg-buildpackage", path="/usr/bin:/bin") is None:
        pytest.skip("dpkg-buildpackage not found: not a Debian machine with dpkg-dev (./bootstrap installs it)")
    built = subprocess.run([str(REPO / "packaging/deb/build")], capture_output=True, text=True, timeout=600)
    # exit 3: build dependencies missing; the script names the apt-get command. ./bootstrap installs them, so in
    # CI this fails instead of skipping.
    assert built.returncode == 0, built.stdout + built.stderr
    return Path(built.stdout.strip())
