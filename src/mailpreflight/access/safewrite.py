"""Writing files safely: atomic replacement (temp file in the same directory, fsync, rename, fsync of the
directory: a reader never sees half a file), where under a root a guest path may be written (only /etc, never
through a symlink), and the diffs shown for --dry-run. Used by check --output, snapshot, dropin and restore."""

from __future__ import annotations

import difflib
import os
import posixpath
import stat
import tempfile

from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError


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


def write_atomically(path: str, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None,
                     make_dirs: bool = False) -> None:
    """Replace `path` with `text` atomically, with `mode` (and `owner`: uid, gid); `make_dirs`: create missing
    directories (0755), e.g. a new UNIT.d/."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".mailpreflight-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if owner is not None:
            os.chown(temp, *owner)
        os.chmod(temp, mode)  # after chown, which may clear set-id bits
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    fsync_dir(directory)


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
