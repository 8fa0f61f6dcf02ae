"""`pip install .` gives a working tool: the wheel carries its data files and console script, and the tool
runs without the live extra (no pystemd, no dbus-python)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from mailpreflight import __version__

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"pip wheel failed: {done.stderr.strip()[-400:]}")
    return next(out.glob("mailpreflight-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    # the version comes from mailpreflight.__version__ (pyproject: dynamic = ["version"])
    assert wheel.name == f"mailpreflight-{__version__}-py3-none-any.whl"
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert f"\nVersion: {__version__}\n" in zipfile.ZipFile(wheel).read(metadata).decode()
    assert "mailpreflight/units/keys-252.txt" in names  # read at run time by the loader
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mailpreflight = mailpreflight.cli:command" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_without_the_live_extra(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    # the wheel with its own dependencies (dnspython, requests), without the live extra
    # without PYTHONPATH: a checkout's src/ (with the egg-info the wheel build leaves there) on it would make
    # pip think mailpreflight is installed already, and skip it
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=300, env=clean)
    assert install.returncode == 0, install.stderr
    shown = subprocess.run([str(target / "bin" / "mailpreflight"), "show", "--root",
                            str(REPO / "units/examples/opensuse-leap15-mail"), "spamd.service", "--format", "json"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean)
    assert shown.returncode == 0, shown.stderr
    assert '"sa-update || true"' in shown.stdout
    explained = subprocess.run([str(target / "bin" / "mailpreflight"), "explain", "spamd.service"],
                               capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean)
    assert explained.returncode == 3 and "pip install 'mailpreflight[live]'" in explained.stderr


def test_pipx_install(wheel: Path, tmp_path: Path) -> None:
    env = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pipx", "install", str(wheel)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([str(tmp_path / "bin" / "mailpreflight"), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.stdout.strip() == f"mailpreflight {__version__}"
