"""Real Debian 12 packages for the tests that check mailpreflight on what Debian really ships.

`apt-get download` fetches them (this machine's apt sources) into a cache outside the repository,
${MAILPREFLIGHT_DEB_CACHE:-/var/cache/mailpreflight-debs}; `dpkg-deb -x` extracts them into a root, as the package
files land on a Debian 12 system before any maintainer script runs (what a postinst writes from debconf — postfix's
main.cf, freshclam.conf — is not there). A test that cannot have them skips, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def cache_dir() -> Path:
    return Path(os.environ.get("MAILPREFLIGHT_DEB_CACHE") or "/var/cache/mailpreflight-debs")


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def _package_of(path: Path) -> tuple[str, str] | None:
    shown = _run(["dpkg-deb", "--showformat=${Package}\t${Version}", "--show", str(path)])
    if shown.returncode != 0 or "\t" not in shown.stdout:
        return None
    name, version = shown.stdout.strip().split("\t", 1)
    return name, version


def _newest(candidates: list[tuple[str, Path]]) -> Path:
    best = candidates[0]
    for version, path in candidates[1:]:
        if _run(["dpkg", "--compare-versions", version, "gt", best[0]]).returncode == 0:
            best = (version, path)
    return best[1]


def deb(name: str) -> Path:
    """The cached .deb of package `name` (the newest cached version), downloaded first when there is none."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed: the real Debian packages cannot be extracted")
    cache = cache_dir()

    def cached() -> list[tuple[str, Path]]:
        found = []
        for path in cache.glob(f"{name}_*.deb"):
            fields = _package_of(path)
            if fields and fields[0] == name:
                found.append((fields[1], path))
        return found

    candidates = cached()
    if not candidates:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            done = _run(["apt-get", "download", "-q", name], cwd=cache, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"{name}: not in {cache} and `apt-get download {name}` could not run ({exc})")
        candidates = cached()
        if done.returncode != 0 or not candidates:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"{name}: not in {cache} and the registry cannot be reached (`apt-get download {name}`: "
                        f"{last}); fill the cache where a Debian 12 mirror is reachable")
    return _newest(candidates)


def version(name: str) -> str:
    fields = _package_of(deb(name))
    assert fields is not None
    return fields[1]


def extract(root: Path, *names: str) -> Path:
    """`dpkg-deb -x` of each package into `root` (created), in the order given."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        done = _run(["dpkg-deb", "-x", str(deb(name)), str(root)])
        assert done.returncode == 0, f"dpkg-deb -x {name}: {done.stderr}"
    return root
