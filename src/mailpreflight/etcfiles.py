"""Writing under /etc of a root: where a guest path may be written (never through a symlink, never outside
/etc), durable renames, and the diffs shown for --dry-run. Used by `dropin` and `restore`."""

from __future__ import annotations

import difflib
import os
import posixpath
import stat

from mailpreflight.errors import MailpreflightError
from mailpreflight.units.rootfs import RootFS


def host_path(fs: RootFS, guest: str, allow_link: bool = False) -> str:
    """The host path to write, refusing symlinks anywhere on the way, anything outside /etc, and replacing
    anything but a regular file (unless `allow_link`: restore may put a link back)."""
    if not guest.startswith("/etc/"):
        raise MailpreflightError(f"refusing to write {guest}: only /etc is written, never /usr")
    parent = posixpath.dirname(guest)
    walked = "/"
    for part in [p for p in parent.split("/") if p]:
        walked = posixpath.join(walked, part)
        info = fs.lstat(walked)
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise MailpreflightError(f"refusing to write through the symlink {walked}")
    info = fs.lstat(guest)
    if info is not None and not stat.S_ISREG(info.st_mode) and not (allow_link and stat.S_ISLNK(info.st_mode)):
        raise MailpreflightError(f"refusing to replace {guest}: not a regular file")
    return fs.host(guest)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def diff(old: str | None, new: str | None, path: str) -> str:
    return "".join(difflib.unified_diff((old or "").splitlines(True), (new or "").splitlines(True),
                                        f"a{path}" if old is not None else "/dev/null",
                                        f"b{path}" if new is not None else "/dev/null"))
