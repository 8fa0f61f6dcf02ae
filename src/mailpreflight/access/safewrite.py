"""Writing files safely: atomic replacement (temp file in the same directory, fsync, rename, fsync of the
directory: a reader never sees half a file), only to paths whose every component was checked, where under a
root a guest path may be written (only /etc), and the diffs shown for --dry-run. Used by check --output,
snapshot --output, dropin and restore.

Every write walks its directory from a start the admin chose (the root, "/", or the working directory) one
component at a time with O_NOFOLLOW|O_DIRECTORY, and then works inside that directory's descriptor: a path
with `..`, `.` or `//`, or a symlinked component anywhere, is refused, and a component swapped for a link
after the check cannot redirect the write.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import posixpath
import secrets
import stat
from collections.abc import Iterator

from mailpreflight.access.bounded import describe, read_at_most
from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError

_WALK_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def checked_parts(path: str, what: str = "write") -> list[str]:
    """The components of a path to write; refuses `..`, `.`, `//`, a trailing `/` and NUL."""
    if not path or "\0" in path:
        raise MailpreflightError(f"refusing to {what} {path!r}: not a path")
    parts = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise MailpreflightError(f"refusing to {what} {path}: a path with "
                                     f"{'`//` or a trailing `/`' if not part else f'`{part}`'} in it is ambiguous",
                                     hint="give the plain path, e.g. /etc/x rather than /etc/./x or /etc/../etc/x")
    return parts


def guest_parts(guest: str) -> list[str]:
    """A guest path we may write: absolute, canonical and under /etc (never /usr: the vendor's)."""
    parts = checked_parts(guest)
    if not guest.startswith("/") or parts[0] != "etc" or len(parts) < 2:
        raise MailpreflightError(f"refusing to write {guest}: only /etc is written, never /usr")
    return parts


@contextlib.contextmanager
def directory(start: str, parts: list[str], create: bool = False, shown: str = "") -> Iterator[int]:
    """The descriptor of directory start/parts, walked one component at a time without following links;
    missing components are created (0755) when `create`. `start` itself (the root, "/" or ".") is the admin's
    and opened as given. Raises MailpreflightError for a symlinked component, OSError for the rest."""
    fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = shown.rstrip("/") if shown else ""
    try:
        for part in parts:
            walked = f"{walked}/{part}"
            try:
                following = os.open(part, _WALK_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                following = os.open(part, _WALK_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    target = os.readlink(part, dir_fd=fd)
                    raise MailpreflightError(f"refusing to write through the symlink {walked} (-> {target})",
                                             hint="give the path without links") from exc
                raise MailpreflightError(f"refusing to write under {walked}: {describe(info.st_mode)}, not a "
                                         "directory") from exc
            os.close(fd)
            fd = following
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def guest_directory(fs: RootFS, guest: str, create: bool = False) -> Iterator[int]:
    """The descriptor of the directory of guest path `guest` (checked by `guest_parts`) under the root."""
    parts = guest_parts(guest)
    with directory(fs.root, parts[:-1], create, "") as fd:
        yield fd


def lstat_in(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # e.g. a long name + ".mailpreflight-backup": over 255 bytes
            raise MailpreflightError(f"{name[:80]}...: a name longer than the file system allows ({len(name)} "
                                     "bytes): nothing written", hint="rename the file to a shorter name") from exc
        raise


def read_in(fd: int, name: str, shown: str, limit: int = 8 * 1024 * 1024) -> str | None:
    """The text of regular file `name` in directory `fd`, None if missing; anything else is refused, unopened
    (a symlink is never read through, a FIFO never blocks)."""
    info = lstat_in(fd, name)
    if info is None:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise MailpreflightError(f"refusing to read {shown}: {describe(info.st_mode, info.st_rdev)}, not a "
                                 "regular file", hint="look at it and remove it by hand")
    handle = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=fd)
    try:
        now = os.fstat(handle)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise MailpreflightError(f"refusing to read {shown}: it was replaced while being opened")
        data = read_at_most(handle, limit)
        if len(data) > limit:
            raise MailpreflightError(f"refusing to read {shown}: larger than {limit} bytes")
    finally:
        os.close(handle)
    return data.decode("utf-8", "replace")


def write_in(fd: int, name: str, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Replace `name` in directory `fd` with `text` atomically, with `mode` (and `owner`: uid, gid)."""
    temp = f".mailpreflight-{secrets.token_hex(6)}"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
    with _renamed_over(fd, temp, name), os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        if owner is not None:
            os.fchown(out.fileno(), *owner)
        os.fchmod(out.fileno(), mode)  # after chown, which may clear set-id bits
        os.fsync(out.fileno())


def symlink_in(fd: int, name: str, target: str) -> None:
    """Replace `name` in directory `fd` with a symlink to `target` atomically (restore puts a link back)."""
    temp = f".{name}.tmp-{secrets.token_hex(6)}"
    os.symlink(target, temp, dir_fd=fd)
    with _renamed_over(fd, temp, name):
        pass  # the link is made: only the rename is left


@contextlib.contextmanager
def _renamed_over(fd: int, temp: str, name: str) -> Iterator[None]:
    """The commit of an atomic write in directory `fd`: once the body has made `temp`, rename it over `name` and
    fsync the directory; if anything fails, `temp` is removed."""
    try:
        yield
        os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=fd)
        raise
    os.fsync(fd)


def write_atomically(path: str, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None,
                     make_dirs: bool = False) -> None:
    """Replace host file `path` (check --output, snapshot --output) with `text` atomically, with `mode` (and
    `owner`: uid, gid); `make_dirs`: create missing directories (0755). Every component is checked: no `..`,
    `.`, `//`, no symlink (MailpreflightError names the one found); a relative path starts at the working
    directory."""
    parts = checked_parts(path)
    if path.startswith("/") and len(parts) == 1 and not parts[0]:
        raise MailpreflightError("refusing to write /: not a file")
    with directory("/" if path.startswith("/") else ".", parts[:-1], make_dirs,
                   "" if path.startswith("/") else ".") as fd:
        info = lstat_in(fd, parts[-1])
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise MailpreflightError(f"refusing to replace {path}: {describe(info.st_mode, info.st_rdev)}, not a "
                                     "regular file")
        write_in(fd, parts[-1], text, mode, owner)


def write_guest(fs: RootFS, guest: str, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None,
                make_dirs: bool = False) -> None:
    """Replace guest file `guest` (under /etc) in the root with `text` atomically: the same checks from the
    root down; only a regular file (or nothing) is replaced."""
    parts = guest_parts(guest)
    with directory(fs.root, parts[:-1], make_dirs) as fd:
        info = lstat_in(fd, parts[-1])
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise MailpreflightError(f"refusing to replace {guest}: {describe(info.st_mode, info.st_rdev)}, not a "
                                     "regular file")
        write_in(fd, parts[-1], text, mode, owner)


def host_path(fs: RootFS, guest: str, allow_link: bool = False) -> str:
    """The host path of a guest path we may write, for messages and checks only (writes go through
    `write_guest`/`guest_directory`): canonical, under /etc, no symlinked component, and replacing nothing
    but a regular file (unless `allow_link`: restore may put a link back)."""
    parts = guest_parts(guest)
    walked = ""
    for part in parts[:-1]:
        walked = f"{walked}/{part}"
        info = fs.lstat(walked)
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise MailpreflightError(f"refusing to write through the symlink {walked}")
        if info is None:
            break
    info = fs.lstat(guest) if fs.lstat(posixpath.dirname(guest)) is not None else None
    if info is not None and not stat.S_ISREG(info.st_mode) and not (allow_link and stat.S_ISLNK(info.st_mode)):
        raise MailpreflightError(f"refusing to replace {guest}: {describe(info.st_mode, info.st_rdev)}, not a "
                                 "regular file")
    return fs.host(guest)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def diff(old: str | None, new: str | None, path: str) -> str:
    return "".join(difflib.unified_diff((old or "").splitlines(True), (new or "").splitlines(True),
                                        f"a{path}" if old is not None else "/dev/null",
                                        f"b{path}" if new is not None else "/dev/null"))
