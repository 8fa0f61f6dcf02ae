"""Real Debian 12 packages for tests: `.deb`s from the cache ($MAILPREFLIGHT_DEB_CACHE, else
/var/cache/mailpreflight-debs), fetched there with `apt-get download` when missing, extracted with `dpkg-deb -x`
(nothing of theirs runs). The cache is never inside the repository. A test that needs a package the cache
does not hold and apt cannot get skips, saying which and why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

APT_TIMEOUT = 180  # seconds for one `apt-get download`


def cache_dir() -> Path:
    return Path(os.environ.get("MAILPREFLIGHT_DEB_CACHE") or "/var/cache/mailpreflight-debs")


def deb(name: str) -> Path:
    """The cached .deb of package `name` (downloaded into the cache first if it is not there)."""
    cache = cache_dir()
    found = sorted(cache.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        pytest.skip(f"{name}: not in {cache} and no apt-get to download it")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["apt-get", "download", name], cwd=cache, capture_output=True, text=True,
                              timeout=APT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{name}: not in {cache}, and `apt-get download {name}` failed: {exc}")
    found = sorted(cache.glob(f"{name}_*.deb"))
    if done.returncode != 0 or not found:
        pytest.skip(f"{name}: not in {cache}, and `apt-get download {name}` failed (exit {done.returncode}): "
                    f"{done.stderr.strip()[-300:]}")
    return found[-1]


def extract(root: Path, *names: str) -> Path:
    """`dpkg-deb -x` the packages into `root`, in order (a later package's file wins), as a fresh install
    unpacks them; nothing of theirs is run."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (apt: dpkg)")
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        subprocess.run(["dpkg-deb", "-x", str(deb(name)), str(root)], check=True, capture_output=True, timeout=120)
    return root


def version(name: str) -> str:
    """The cached package's version, as dpkg-deb reads it from the package."""
    return subprocess.run(["dpkg-deb", "-f", str(deb(name)), "Version"], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()
