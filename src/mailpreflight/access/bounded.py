"""Bounded reading of files whose content is hostile (docs/design.md, "Layers and their rules"): what a refused
file is (`GuestFileRefused`, `describe`), the one read loop that never takes more than limit+1 bytes
(`read_at_most`, used by the gate in rootfs.py and by safewrite.py), and `read_regular_file` for host files the
admin named whose content is untrusted (a baseline)."""

from __future__ import annotations

import errno
import os
import stat

_CHUNK = 1024 * 1024


def describe(mode: int, rdev: int = 0) -> str:
    """What a file is, for a message: "a FIFO (named pipe)", "a character device (1,5)", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return f"a character device ({os.major(rdev)},{os.minor(rdev)})"
    if stat.S_ISBLK(mode):
        return f"a block device ({os.major(rdev)},{os.minor(rdev)})"
    return f"a file of unknown type (mode {mode:o})"


class GuestFileRefused(OSError):
    """A guest file that is there but is not read: not a regular file, too big, or changed while being opened.

    An OSError, so callers that report unreadable files report it (strerror says what it is and what to do)
    and the others carry on as with a missing file."""

    def __init__(self, guest: str, reason: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, reason, guest)
        self.guest = guest
        self.reason = reason

    def __reduce__(self) -> tuple[type[GuestFileRefused], tuple[str, str, int]]:
        """Pickled as made (a deps worker sends it to the parent): OSError's own would pass (errno, strerror,
        filename) to this __init__ in the wrong order."""
        return type(self), (self.guest, self.reason, self.errno if self.errno is not None else errno.EINVAL)


def read_at_most(fd: int, limit: int, size: int | None = None) -> bytes:
    """The bytes of open file `fd`, at most limit+1 of them: more than `limit` tells the caller the file is too
    big. Never more, whatever st_size says (a file can grow, /proc files say 0), and never a buffer of `limit`
    bytes up front: the first read asks for what st_size announces (`size`: what fstat() said already)."""
    chunks: list[bytes] = []
    total = 0
    announced = os.fstat(fd).st_size if size is None else size
    wanted = min(announced, limit) + 1
    while total <= limit:
        chunk = os.read(fd, min(wanted - total if total < wanted else _CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total == announced < wanted:  # all st_size said and no byte more: the end (no read of nothing to say
            break                        # so); a file that says 0 (/proc) or reads short before its size goes on
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_regular_file(path: str, limit: int) -> bytes:
    """A host file the admin named whose CONTENT is untrusted (a baseline that travelled through a ticket): only
    a regular file is opened (a FIFO would block, a device would be read without end), at most `limit` bytes.
    Raises OSError (GuestFileRefused for a file that is not regular or too big)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise GuestFileRefused(path, f"{describe(info.st_mode, info.st_rdev)}, not a regular file: not read "
                                     "(save it to a file first)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise GuestFileRefused(path, "replaced while being opened: not read")
        if now.st_size > limit:
            raise GuestFileRefused(path, f"larger than {size_text(limit)}: not read", errno.EFBIG)
        data = read_at_most(fd, limit)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise GuestFileRefused(path, f"larger than {size_text(limit)}: not read", errno.EFBIG)
    return data


def size_text(limit: int) -> str:
    """A limit as a message says it: "8 MiB", "1000 bytes"."""
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
