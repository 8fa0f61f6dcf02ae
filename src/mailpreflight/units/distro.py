"""Which distribution a tree is: one answer for everything that depends on it (unit search paths, libpam's
Debian patch, Cyrus SASL's config dirs, SpamAssassin's site dir).

os-release first, as systemd reads it (os-release(5); `load_os_release_pairs()` in systemd 252's
os-util.c): /etc/os-release, else /usr/lib/os-release — the first that exists, parsed like an
EnvironmentFile= — and its ID and ID_LIKE. Only a tree without os-release falls back to the files older
tools looked at: /etc/debian_version (Debian and its derivatives, since 1996) and /etc/SuSE-release (SUSE up
to SLE 12 and openSUSE 42; gone in SLE 15 / Leap 15, which only have os-release).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.environ import parse_env_file

OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
DEBIAN_VERSION = "/etc/debian_version"
SUSE_RELEASE = "/etc/SuSE-release"
OS_RELEASE_MAX_BYTES = 64 * 1024
DEBIAN_FAMILY = frozenset({"debian", "ubuntu"})
SUSE_FAMILY = frozenset({"suse", "opensuse", "sles", "sled", "opensuse-leap", "opensuse-tumbleweed"})


@dataclass(frozen=True)
class Distribution:
    """`id`: os-release's ID (os-release(5)'s default "linux" when the file has none; "" when no file
    says anything); `like`: ID_LIKE's words; `source`: "file:line" of what
    decided it ("" when nothing did); `release`: every os-release field (empty for the fallbacks)."""

    id: str = ""
    like: tuple[str, ...] = ()
    source: str = ""
    release: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> frozenset[str]:
        return frozenset(word for word in (self.id, *self.like) if word)

    @property
    def known(self) -> bool:
        return bool(self.family)

    @property
    def debian(self) -> bool:
        """Debian or a derivative (Ubuntu, Devuan, ...): Debian's patched libpam, split /usr until 255, ..."""
        return bool(self.family & DEBIAN_FAMILY)

    @property
    def suse(self) -> bool:
        return bool(self.family & SUSE_FAMILY)


def os_release_file(fs: RootFS) -> str | None:
    """The os-release file systemd reads: /etc/os-release if it exists, else /usr/lib/os-release."""
    return next((path for path in OS_RELEASE_FILES if fs.chase(path) is not None), None)


def os_release(fs: RootFS) -> dict[str, str]:
    """The tree's os-release as key -> value, unquoted as systemd does (parse_env_file)."""
    path = os_release_file(fs)
    if path is None:
        return {}
    try:
        data = fs.read_bytes(path, OS_RELEASE_MAX_BYTES)
    except OSError:
        return {}
    return dict(parse_env_file(data).env)


def distribution(fs: RootFS) -> Distribution:
    path = os_release_file(fs)
    release = os_release(fs)
    if path is not None and release:
        line = _line_of(fs, path, "ID") or _line_of(fs, path, "ID_LIKE")
        return Distribution(release.get("ID", "").strip().lower() or "linux",  # os-release(5): ID defaults to linux
                            tuple(w.lower() for w in release.get("ID_LIKE", "").split()),
                            f"{path}:{line}" if line else path, release)
    if fs.chase(DEBIAN_VERSION) is not None:
        return Distribution("debian", (), f"{DEBIAN_VERSION}:1")
    suse = fs.read_text(SUSE_RELEASE)
    if suse is not None:
        first = suse.split("\n", 1)[0]
        return Distribution("opensuse" if "opensuse" in first.lower() else "sles", ("suse",), f"{SUSE_RELEASE}:1")
    return Distribution()


def _line_of(fs: RootFS, path: str, key: str) -> int | None:
    for number, line in enumerate((fs.read_text(path) or "").splitlines(), 1):
        if line.lstrip().startswith(f"{key}="):
            return number
    return None
