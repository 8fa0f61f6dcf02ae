"""Fixtures for tests that talk to a real systemd user manager over a real D-Bus session bus."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_lab import LabError, UserManagerLab, unavailable_reason

HERE = Path(__file__).resolve().parent


def pytest_collection_finish(session: pytest.Session) -> None:
    """test_netlab_saupdate.py's labs (~160 s, nearly all of it waiting on timeouts) start now, in the background,
    when that module's tests are selected: the session's other tests run meanwhile."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.path.name == "test_netlab_saupdate.py":
            item.module.start_early(session)  # type: ignore[attr-defined]
            return


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # a conftest sees the whole session's items: mark only the ones below this directory
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def _loopback_only(purpose: str) -> Iterator[str]:
    """A network namespace with only `lo` up, for a lab's manager and its services: a guard that times out probes
    what the command needs (sa-update's DNS), and from here that must never leave the machine (DEVELOPERS.md:
    only 127.0.0.0/8 or namespaces a test made). Removed afterwards."""
    name = f"mp-{purpose}-{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if added.returncode != 0:
        pytest.skip(f"systemd lab unavailable: `ip netns add` failed: {added.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def systemd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManagerLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"systemd lab unavailable: {reason}")
    with _loopback_only("sdlab") as netns, UserManagerLab(tmp_path_factory.mktemp("sdlab"), netns=netns) as lab:
        yield lab


@pytest.fixture(scope="session")
def journald_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManagerLab]:
    """A lab with its own private systemd-journald (UserManagerLab(..., journald=True)), shared by the session."""
    reason = unavailable_reason(journald=True)
    if reason:
        pytest.skip(f"systemd lab with journald unavailable: {reason}")
    try:
        with _loopback_only("sdlab-journal") as netns, \
                UserManagerLab(tmp_path_factory.mktemp("sdlab-journal"), journald=True, netns=netns) as lab:
            yield lab
    except LabError as e:
        if "journald" in str(e) and "refusing: cgroup" not in str(e):
            pytest.skip(f"cannot start the lab's private systemd-journald: {e}")
        raise


@pytest.fixture
def lab_units(systemd_lab: UserManagerLab) -> Iterator[Path]:
    """The lab's unit dir; whatever a test adds there is removed afterwards, then daemon-reload."""
    unit_dir = systemd_lab.unit_dir
    before = set(_tree(unit_dir))
    yield unit_dir
    for path in sorted(set(_tree(unit_dir)) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a directory the test added holds only what it added
        else:
            path.unlink(missing_ok=True)
    systemd_lab.reload()
    systemd_lab.systemctl("reset-failed")  # no failed state carried into the next test


def _tree(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinks
        yield from (Path(dirpath, n) for n in dirnames + filenames)
