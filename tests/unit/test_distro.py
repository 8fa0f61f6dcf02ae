"""One distribution detection (units/distro.py), os-release first, used by the unit search paths, libpam's
Debian patch and SpamAssassin's site dir alike — on the real os-release files of Debian 12 (base-files .deb)
and openSUSE Leap 15.6 (the example guest's /usr/lib/os-release, as Leap 15.6's openSUSE-release package
installs it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import debcache
from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth import pam
from mailpreflight.deps.spamassassin_plugins import site_dir
from mailpreflight.units.distro import distribution, os_release
from mailpreflight.units.searchpath import search_paths_for
from mailroots import write

REPO = Path(__file__).resolve().parents[2]
LEAP_OS_RELEASE = REPO / "units/examples/opensuse-leap15-mail/usr/lib/os-release"
# /etc/SuSE-release of SUSE Linux Enterprise Server 11 SP4 (package sles-release 11.4), the last SLES
# generation before os-release; SLE 15 and Leap 15 no longer ship the file.
SLES11_SUSE_RELEASE = "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n"


def _debian12(root: Path) -> Path:
    return debcache.extract(root, "base-files")


def _includes_only_from_etc(root: Path) -> bool:
    """Debian's libpam patch, seen from outside: an include of a file only /usr/lib/pam.d has fails."""
    write(root, "/usr/lib/pam.d/common-vendor", "auth required pam_unix.so\n")
    write(root, "/etc/pam.d/dovecot", "auth include common-vendor\n")
    return any(p.kind == "missing-include" for p in pam.resolve(RootFS(str(root)), "dovecot").problems)


def _every_user_agrees(root: Path, debian: bool) -> None:
    fs = RootFS(str(root))
    assert ("/lib/systemd/system" in search_paths_for(fs, 252)) is debian
    assert _includes_only_from_etc(root) is debian
    (root / "etc/spamassassin").mkdir(parents=True, exist_ok=True)
    (root / "etc/mail/spamassassin").mkdir(parents=True, exist_ok=True)
    assert site_dir(fs, []) == ("/etc/spamassassin" if debian else "/etc/mail/spamassassin")


def test_debian12_from_its_own_os_release(tmp_path: Path) -> None:
    root = _debian12(tmp_path / "root")
    assert (root / "etc/os-release").is_symlink()  # -> ../usr/lib/os-release, as base-files ships it
    found = distribution(RootFS(str(root)))
    assert (found.id, found.like, found.debian, found.suse) == ("debian", (), True, False)
    assert found.source == "/etc/os-release:6"
    assert found.release["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"  # quotes removed as systemd does
    assert found.release["VERSION_ID"] == "12"
    assert os_release(RootFS(str(root)))["VERSION_CODENAME"] == "bookworm"
    _every_user_agrees(root, debian=True)


def test_debian12_without_os_release_falls_back_to_debian_version(tmp_path: Path) -> None:
    root = _debian12(tmp_path / "root")
    (root / "etc/os-release").unlink()
    (root / "usr/lib/os-release").unlink()
    found = distribution(RootFS(str(root)))
    assert (found.id, found.debian, found.source) == ("debian", True, "/etc/debian_version:1")
    _every_user_agrees(root, debian=True)


def test_debian12_os_release_wins_without_debian_version(tmp_path: Path) -> None:
    """Before: libpam's Debian patch was assumed from /etc/debian_version only, the search paths from
    os-release; a root with one and not the other got two answers."""
    root = _debian12(tmp_path / "root")
    (root / "etc/debian_version").unlink()
    assert distribution(RootFS(str(root))).debian
    _every_user_agrees(root, debian=True)


def test_leap15_from_its_own_os_release(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    shutil.copy(LEAP_OS_RELEASE, root / "usr/lib/os-release")
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    found = distribution(RootFS(str(root)))
    assert (found.id, found.like, found.debian, found.suse) == ("opensuse-leap", ("suse", "opensuse"), False, True)
    assert found.source == "/etc/os-release:3" and found.release["VERSION_ID"] == "15.6"
    _every_user_agrees(root, debian=False)


def test_leap15_with_a_stray_debian_version_is_still_suse(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    shutil.copy(LEAP_OS_RELEASE, root / "usr/lib/os-release")  # only /usr/lib/os-release: systemd's fallback
    write(root, "/etc/debian_version", "12.8\n")
    found = distribution(RootFS(str(root)))
    assert found.suse and not found.debian and found.source == "/usr/lib/os-release:3"
    _every_user_agrees(root, debian=False)


def test_suse_release_fallback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "/etc/SuSE-release", SLES11_SUSE_RELEASE)
    found = distribution(RootFS(str(root)))
    assert (found.id, found.suse, found.debian, found.source) == ("sles", True, False, "/etc/SuSE-release:1")
    _every_user_agrees(root, debian=False)


def test_nothing_says_and_os_release_without_id(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert not distribution(RootFS(str(root))).known
    write(root, "/etc/os-release", 'NAME="Some Linux"\n')
    found = distribution(RootFS(str(root)))
    assert (found.id, found.known, found.debian) == ("linux", True, False)  # os-release(5): ID defaults to linux
