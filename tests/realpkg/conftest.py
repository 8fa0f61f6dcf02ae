"""Fixtures for the real-package corpus (tests/realpkg/debroot.py): one Debian 12 root per session, built from
the cached .debs into the session's tmp dir (about 10 s), skipped with the reason when the packages are neither
cached nor downloadable."""

from __future__ import annotations

from pathlib import Path

import debroot
import guestview
import pytest


@pytest.fixture(scope="session")
def debian_packages() -> list[debroot.Package]:
    problem = debroot.tools_missing()
    if problem:
        pytest.skip(f"real-package corpus: {problem}")
    try:
        return debroot.fetch()
    except debroot.CorpusUnavailable as exc:
        pytest.skip(f"real-package corpus unavailable: {exc}")


@pytest.fixture(scope="session")
def debian_build(tmp_path_factory: pytest.TempPathFactory, debian_packages: list[debroot.Package]) -> debroot.Build:
    """The root and what was done to make it (which units were enabled, which rc links made)."""
    return debroot.build_root(tmp_path_factory.mktemp("debian12") / "root", debian_packages)


@pytest.fixture(scope="session")
def debian_root(debian_build: debroot.Build) -> Path:
    return Path(debian_build.root)


@pytest.fixture(scope="session")
def guest_view() -> None:
    """Skip unless the guest's own programs can be run in a private mount namespace (root, overlayfs)."""
    reason = guestview.unavailable_reason()
    if reason:
        pytest.skip(f"cannot run the guest's generators here: {reason}")
