"""A file tree seen as a guest sees it: "/" or an offline root (a mounted VM disk).

Symlinks are resolved INSIDE the root: an absolute target is relative to the root and `..` never climbs
above it (like systemd's chase() with a root). Paths given and returned are guest paths.

This is the one gate every read of guest data goes through (`open_file`, `read_bytes`, `read_optional`, `read_text`,
`listdir`, `glob`). A guest is hostile until checked, so a read:
- opens the already-resolved path from the root one component at a time with O_NOFOLLOW (a component swapped
  for a link after it was resolved fails instead of leading out of the root);
- takes the last component with O_PATH first and looks at what it is before opening it for reading: a FIFO
  would block for ever, a device node (`/dev/zero`'s 1,5; a block device is a host disk; 10,130 arms the
  watchdog) must not even be opened. Anything but a regular file is refused with a `GuestFileRefused`
  (an OSError whose strerror says what the file is and what to do), recorded in `refusals`;
- reads at most limit+1 bytes: a bigger file is refused the same way.
Globs and directory listings happen inside the root too, with caps on entries, matches and work.

Its parts: access/bounded.py (the bounded read loop, what a refusal is), access/ledger.py (what a run may still
read and list, what was refused), access/globbing.py (glob(3)'s pattern rules and caps).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import io
import os
import posixpath
import stat
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal, TypeVar

from mailpreflight.access.beneath import PIN_FLAGS, open_beneath
from mailpreflight.access.bounded import GuestFileRefused, describe, read_at_most, size_text
from mailpreflight.access.globbing import GLOB_DEPTH, GLOB_MATCHES, GLOB_STEPS, GlobResult, glob_regex, glob_unescape
from mailpreflight.access.ledger import LISTDIR_TOTAL_LIMIT, READ_TOTAL_LIMIT, Ledger, Refusal

MAX_LINKS = 32
MAX_CHASE_STEPS = 4096  # path components walked to resolve one path, links included
DEV_NULL = "/dev/null"
READ_LIMIT = 8 * 1024 * 1024  # unit files, drop-ins, environment files: systemd's own are a few KiB
TEXT_LIMIT = 1024 * 1024  # read_text(): configuration files
LISTDIR_LIMIT = 100_000  # entries of one directory
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_MAX = 4096  # Linux's, bytes with the final NUL
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
_T = TypeVar("_T")


# why a file is not read once the run's read budget is spent (read_bytes, read_head)
_SPENT = (f"not read: this run already read {size_text(READ_TOTAL_LIMIT)} from the root (no mail system's "
          "configuration is this big; look for what fills it)")


class Absent(enum.Enum):
    """_open_found() and _pin_plain(): the file does not exist (a value, not an exception: read_optional())."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT


class NotOnDisk(FileNotFoundError):
    """A path that resolves into files a subclass makes itself (GeneratedFS's /run/systemd/generator*): not read
    from the disk; the subclass answers it."""


@dataclass(frozen=True)
class RootFS:
    """One run's view of a guest's tree (or of "/"): every read of guest data goes through it (the module's
    docstring); `opened` is when the run began looking, the moment the ages it reports are counted to."""

    root: str = "/"
    opened: float = field(default_factory=time.time, compare=False, hash=False, repr=False)
    _dirs: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _ledger: Ledger = field(default_factory=Ledger, compare=False, hash=False, repr=False)
    _memo: dict[Hashable, object] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _held: list[int] = field(default_factory=list, compare=False, hash=False, repr=False)  # holding_root()

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """A fact read from the tree that every unit of a run shares (SpamAssassin's version, resolv.conf, a
        MIRRORED.BY, ...): computed on first use and remembered by this instance, which is one run's view of
        the tree (docs/design.md, "Performance"). Code that writes into the root and then needs such a fact
        again builds a new RootFS. `key` starts with the name of the function computing it."""
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        value = self._memo[key] = compute()
        return value

    def forget(self) -> None:
        """Drop what memo() remembers: the next use reads the tree again (tests/realpkg/knowledge.py lists what
        each unit's analysis reads, shared files included)."""
        self._memo.clear()

    @property
    def is_offline(self) -> bool:
        return os.path.realpath(self.root) != "/"

    def host(self, guest: str) -> str:
        """The host path of a guest path (only for reading; never follow the result blindly)."""
        if self.root == "/":
            return guest
        # os.path.join(root, guest.lstrip("/")), written out: called for every lstat and read of a run
        return self.root + guest.lstrip("/") if self.root.endswith("/") else f"{self.root}/{guest.lstrip('/')}"

    def lstat(self, guest: str) -> os.stat_result | None:
        """lstat() of a guest path: its directories resolved inside the root, the last component not followed
        (the host path alone would follow a guest's /lib -> /usr/lib link to the host's /usr/lib)."""
        resolved = self._resolve_parent(guest)
        return None if resolved is None else self._lstat(resolved)

    def readlink(self, guest: str) -> str | None:
        """A guest link's target, as written (its directories resolved inside the root)."""
        resolved = self._resolve_parent(guest)
        return None if resolved is None else self._readlink(resolved)

    def _resolve_parent(self, guest: str) -> str | None:
        parent, _, base = guest.rpartition("/")
        if base and base not in (".", "..") and "/." not in parent and "//" not in guest:
            resolved_parent = self._chase_dir(parent or "/")
            return None if resolved_parent is None else posixpath.join(resolved_parent, base)
        return self.chase(guest, follow_last=False)

    def _lstat(self, resolved: str) -> os.stat_result | None:
        """lstat() of a RESOLVED guest path (no link in its directories)."""
        try:
            return os.lstat(self.host(resolved))
        except (OSError, ValueError):
            return None

    def _readlink(self, resolved: str) -> str | None:
        try:
            return os.readlink(self.host(resolved))
        except (OSError, ValueError):
            return None

    def chase(self, guest: str, follow_last: bool = True) -> str | None:
        """Resolve symlinks component by component inside the root; None if a component is missing.

        `/dev/null` is returned as is: under an offline root the guest's /dev is usually not populated,
        yet a link to it is what masks a unit. Directories are resolved once and remembered (a loader
        reads thousands of files from the same few directories).
        """
        if guest == DEV_NULL:
            return DEV_NULL  # named itself, as through a link (_chase): whether or not the guest's /dev is there
        parent, _, base = guest.rpartition("/")
        if not base or base in (".", "..") or "/." in parent or "//" in guest:
            return self._chase(guest, follow_last)
        resolved_parent = self._chase_dir(parent or "/")
        if resolved_parent is None:
            return None
        candidate = f"{resolved_parent}{base}" if resolved_parent.endswith("/") else f"{resolved_parent}/{base}"
        if candidate == DEV_NULL:
            return DEV_NULL
        info = self._lstat(candidate)
        if info is None:
            return None
        if follow_last and stat.S_ISLNK(info.st_mode):
            return self._chase(candidate, follow_last)
        return candidate

    def _chase_dir(self, guest: str) -> str | None:
        """Cached per instance, and only when found: a directory created later (a new drop-in dir) is seen. Its
        parent is resolved the same way: a new directory next to known ones costs one lstat."""
        hit = self._dirs.get(guest)
        if hit is not None:
            return hit
        resolved = self.chase(guest)
        if resolved == DEV_NULL:
            # /dev/null is no directory, whatever the guest's /dev is: nothing lies below it (a name under it looked
            # up on the host would go through the guest's /dev, which can be a link to anywhere)
            return None
        if resolved is not None and len(self._dirs) < 8192:
            self._dirs[guest] = resolved
        return resolved

    def _chase(self, guest: str, follow_last: bool) -> str | None:
        todo = [p for p in reversed(guest.split("/")) if p]  # a stack: the next component last
        done = "/"
        hops = steps = 0
        while todo:
            part = todo.pop()
            steps += 1
            if steps > MAX_CHASE_STEPS:  # links of thousands of `..` each: give up as on a loop
                return None
            if part == ".":
                continue
            if part == "..":
                done = posixpath.dirname(done)
                continue
            candidate = posixpath.join(done, part)
            if candidate == "/dev" and todo == ["null"]:
                return DEV_NULL  # whether or not the guest's /dev is populated
            info = self._lstat(candidate)
            if info is None:
                return None
            if stat.S_ISLNK(info.st_mode) and (todo or follow_last):
                hops += 1
                target = self._readlink(candidate)
                if target is None or hops > MAX_LINKS:
                    return None
                if target.startswith("/"):
                    done = "/"
                todo.extend(p for p in reversed(target.split("/")) if p)
                continue
            done = candidate
        return done

    def normalize_link(self, link_dir: str, target: str) -> str:
        """A symlink's target as an absolute, `..`-free guest path, without following the last part."""
        joined = target if target.startswith("/") else posixpath.join(link_dir, target)
        parent = self.chase(posixpath.dirname(posixpath.normpath(joined)))
        base = posixpath.basename(posixpath.normpath(joined))
        if parent is None:
            return posixpath.normpath(joined)
        return posixpath.join(parent, base)

    def is_null_or_empty(self, guest: str) -> bool:
        """What systemd treats as a mask: /dev/null (or any char device) or an empty regular file."""
        resolved = self.chase(guest)
        if resolved is None:
            return False
        if resolved == DEV_NULL:
            return True
        info = self._lstat(resolved)  # resolved: not a link (lstat opens nothing, a device node is harmless)
        return info is not None and (stat.S_ISCHR(info.st_mode)
                                     or (stat.S_ISREG(info.st_mode) and info.st_size == 0))

    def is_dir(self, guest: str) -> bool:
        resolved = self.chase(guest)
        info = self._lstat(resolved) if resolved is not None and resolved != DEV_NULL else None
        return info is not None and stat.S_ISDIR(info.st_mode)

    # -- the gate ------------------------------------------------------------------------------------------
    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """Every guest file refused so far (not a regular file, too big), once each, in order."""
        return tuple(Refusal(path, reason) for path, reason in self._ledger.refused.items())

    def sharing_ledger(self, view: RootFS) -> RootFS:
        """`view` (another RootFS of the same root, e.g. with generated units) counting and recording what it
        reads in this one's ledger: one budget, one list of refusals and one `opened` per run."""
        object.__setattr__(view, "_ledger", self._ledger)
        object.__setattr__(view, "opened", self.opened)
        return view

    def note_refused(self, refusals: Iterable[Refusal]) -> None:
        """Refusals another process of this run made (cli/fanout.py's workers): reported with this one's."""
        for refusal in refusals:
            self._refuse(refusal.path, refusal.reason)

    def budget(self) -> tuple[int, int]:
        """(bytes, directory entries) this run may still read and list."""
        return self._ledger.bytes_left, self._ledger.entries_left

    def draw_budget(self, draw: Callable[[int, int], tuple[int, int]]) -> None:
        """This process is one of the workers reading the root for one run (cli/fanout.py): what it reads and
        lists comes out of what they share (`draw`: bytes and entries wanted -> granted), as it needs it."""
        self._ledger.bytes_left = self._ledger.entries_left = 0
        self._ledger.draw = draw

    def _refuse(self, guest: str, reason: str, code: int = errno.EINVAL) -> GuestFileRefused:
        if len(self._ledger.refused) < 1000:
            self._ledger.refused.setdefault(guest, reason)
        return GuestFileRefused(guest, reason, code)

    def _open_parent(self, resolved: str) -> tuple[int, str]:
        """(fd of the parent directory, last component) of a resolved guest path, walked from the root one
        component at a time with O_NOFOLLOW: a component that is (now) a symlink fails with ENOTDIR/ELOOP
        instead of being followed. The root itself is the admin's and is opened as given."""
        parts = resolved.split("/")[1:]
        if (not resolved.startswith("/") or "\0" in resolved or any(p in ("", ".", "..") for p in parts[:-1])
                or parts[-1] in (".", "..")):
            raise OSError(errno.EINVAL, "not a resolved path", resolved)
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                parent, fd = fd, -1
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd, parts[-1] or "."

    def open_file(self, guest: str, follow_last: bool = True) -> BinaryIO:
        """A regular guest file, opened for reading without blocking and without following a link out of the
        root (`/dev/null` reads as empty). Raises FileNotFoundError, GuestFileRefused for anything that is not
        a regular file (never opened for reading: a device's open alone can act), or another OSError."""
        opened = self._open_regular(guest, follow_last)
        return io.BytesIO(b"") if opened is None else os.fdopen(opened[0], "rb")

    def _open_regular(self, guest: str, follow_last: bool = True) -> tuple[int, int] | None:
        """(descriptor for reading, size fstat() gave) of a regular guest file; None for /dev/null."""
        opened = self._open_found(guest, follow_last)
        if opened is ABSENT:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", guest)
        return opened

    def _open_found(self, guest: str, follow_last: bool = True) -> tuple[int, int] | Literal[Absent.ABSENT] | None:
        """_open_regular(), but ABSENT for a file that does not exist (read_optional(): a missing optional file is
        the usual case there, and an exception costs more than the read)."""
        directory, _, base = guest.rpartition("/")
        moved = self._dirs.get(directory)
        where = guest
        if moved is not None and moved != directory and base not in ("", ".", ".."):
            # its directory is known to lie elsewhere (a link on the way: /lib -> usr/lib): pin the name there,
            # which is what chase() then _pin() do, without the openat2 call that would meet the link first
            where = f"{moved}/{base}" if moved != "/" else f"/{base}"
        plain = self._pin_plain(where)
        if plain is ABSENT:
            return ABSENT
        if plain is not None:
            return self._open_pinned(guest, where, plain[0], plain[1])
        resolved = self.chase(guest, follow_last)
        if resolved is None:
            return ABSENT
        if resolved == DEV_NULL:
            return None
        if not self._on_disk(resolved):
            raise NotOnDisk(errno.ENOENT, "made at boot by a systemd generator, not a file on the disk", guest)
        pinned = self._pin(resolved)  # resolved: no link left in it, unless one was swapped in since
        if pinned is not None:
            return self._open_pinned(guest, resolved, pinned)
        try:
            parent, name = self._open_parent(resolved)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise self._refuse(guest, "a path component changed into a symlink while being read: not read (is "
                                          "the guest still running?)", exc.errno) from exc
            raise
        try:  # O_PATH: nothing is opened for I/O yet (a link is pinned as the link, O_NOFOLLOW)
            pinned = os.open(name, PIN_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        return self._open_pinned(guest, resolved, pinned)

    def _pin_plain(self, guest: str) -> tuple[int, os.stat_result] | Literal[Absent.ABSENT] | None:
        """The fast way (access/beneath.py): an O_PATH descriptor of a guest path that holds no link, no `.` or `..`
        and is not /dev/null, pinned in one system call. ABSENT when a component is missing (or is no directory)
        before any link; None for anything else — a link on the way or at the end, no openat2 — which chase() and
        the walk then answer as they always have. With the descriptor, what fstat() said of it."""
        if guest == DEV_NULL:
            return None
        pinned = self._beneath(guest, PIN_FLAGS)
        if pinned in (-errno.ENOENT, -errno.ENOTDIR):  # met before any link: chase() would not find it either
            return ABSENT
        if pinned < 0:
            return None
        try:
            info = os.fstat(pinned)
        except BaseException:
            os.close(pinned)
            raise
        if stat.S_ISLNK(info.st_mode):
            os.close(pinned)  # the last component is a link: chase() follows it inside the root
            return None
        return pinned, info

    def _open_plain_dir(self, guest: str) -> int | None:
        """A directory of the guest's own, opened for listing in one openat2 call when its path holds no link, no
        `.`/`..` and is not the root; None for anything else (scan() then chases and walks, as it always has)."""
        if guest in ("/", DEV_NULL) or not self._on_disk(guest):
            return None
        fd = self._beneath(guest, _LIST_FLAGS)
        return fd if fd >= 0 else None

    def _beneath(self, path: str, flags: int) -> int:
        """open_beneath() of a guest path from the root's descriptor: a descriptor, or a negative errno (-EINVAL for a
        path this way does not take: not absolute, with `//`, `.` or `..`, a trailing `/`, or a host path longer than
        PATH_MAX, which lstat() and the walk could not reach; or when the root cannot be opened: chase() says why)."""
        if (not path.startswith("/") or "//" in path or "/." in path or path.endswith("/")
                or not self._host_fits(path)):
            return -errno.EINVAL
        root = self._root_fd()
        if root is None:
            return -errno.EINVAL
        try:
            return open_beneath(root, path[1:], flags)
        finally:
            self._drop_root(root)

    def _host_fits(self, guest: str) -> bool:
        """Is the host path of `guest` shorter than PATH_MAX? openat2 works from the root's descriptor and would
        reach a file that lstat() and the walk (which go through the host path) cannot: one tree, one answer."""
        if (len(self.root) + len(guest)) * 4 < _PATH_MAX:  # at most 4 bytes a character
            return True
        try:
            return len(os.fsencode(self.host(guest))) < _PATH_MAX
        except (UnicodeError, ValueError):
            return False

    def _root_fd(self) -> int | None:
        """An O_PATH descriptor of the root for openat2 (give it back with _drop_root()), or None (no such
        directory: the slow way says what then)."""
        if self._held:
            return self._held[0]
        try:
            return os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None

    def _drop_root(self, fd: int) -> None:
        if not self._held or self._held[0] != fd:
            os.close(fd)

    @contextlib.contextmanager
    def holding_root(self) -> Iterator[None]:
        """While the block runs, the root's descriptor is opened once, not once per read (`deps` over a whole
        tree: tens of thousands of reads; cli/fanout.py). Only for a block: a descriptor left open on a guest's
        FUSE mount would keep it from being unmounted (access/image.py)."""
        fd = None if self._held else self._root_fd()
        if fd is not None:
            self._held.append(fd)
        try:
            yield
        finally:
            if fd is not None:
                self._held.remove(fd)
                os.close(fd)

    def _on_disk(self, resolved: str) -> bool:
        """Is this resolved path read from the disk? (GeneratedFS: not in the dirs it makes itself.)"""
        return True

    def _pin(self, resolved: str) -> int | None:
        """An O_PATH descriptor of a resolved path (the last component not followed), in one system call; None
        when that cannot be done (a component changed into a link, no openat2): the walk below decides."""
        pinned = self._beneath(resolved, PIN_FLAGS)
        return pinned if pinned >= 0 else None

    def _open_pinned(self, guest: str, resolved: str, pinned: int,
                     info: os.stat_result | None = None) -> tuple[int, int]:
        """(descriptor for reading, size) of the file `pinned` (O_PATH, not a link; `info`: its fstat() if made
        already) holds, if it is a regular file; closes `pinned`. Anything else is refused, and never opened for
        reading (a device's open alone can act)."""
        try:
            info = info or os.fstat(pinned)
            if not stat.S_ISREG(info.st_mode):
                what = describe(info.st_mode, info.st_rdev)
                hint = ("it is listed, never read" if stat.S_ISDIR(info.st_mode)
                        else "replace it with a regular file if it is meant to be read")
                code = errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL
                raise self._refuse(guest, f"{what}, not a regular file: not read ({hint})", code)
            try:  # reopen the very inode just checked, for reading: nothing can be swapped in between
                return os.open(f"/proc/self/fd/{pinned}", _READ_FLAGS & ~os.O_NOFOLLOW), info.st_size
            except FileNotFoundError:  # no /proc: open the name again, and check it is the same regular file
                return self._reopen(guest, resolved, info), info.st_size
        finally:
            os.close(pinned)

    def _reopen(self, guest: str, resolved: str, info: os.stat_result) -> int:
        parent, name = self._open_parent(resolved)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            raise self._refuse(guest, "replaced while being read: not read (is the guest still running?)")
        return fd

    def read_bytes(self, guest: str, limit: int = READ_LIMIT) -> bytes:
        """A regular file's bytes, resolved inside the root, at most `limit` of them. Raises OSError:
        FileNotFoundError, GuestFileRefused (not a regular file, or larger than `limit`), ..."""
        return self._bytes_of(guest, self._open_regular(guest), limit)

    def read_optional(self, guest: str, limit: int = READ_LIMIT) -> bytes | None:
        """read_bytes(), but None when the file does not exist (`EnvironmentFile=-/etc/default/x`: on most systems
        it does not); every other failure raises as there."""
        opened = self._open_found(guest)
        return None if opened is ABSENT else self._bytes_of(guest, opened, limit)

    def _bytes_of(self, guest: str, opened: tuple[int, int] | None, limit: int) -> bytes:
        """read_bytes() of what _open_regular() opened for `guest`; closes it."""
        if opened is None:
            return b""
        fd, size = opened
        spent = _SPENT
        self._ledger.want(min(limit, size) + 1)  # a worker: enough for what the file says it holds
        budgeted = self._ledger.bytes_left < limit
        if budgeted:
            if self._ledger.bytes_left <= 0:
                os.close(fd)
                raise self._refuse(guest, spent, errno.EFBIG)
            limit = self._ledger.bytes_left
        try:
            data = read_at_most(fd, limit, size)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise self._refuse(guest, spent if budgeted else f"larger than {size_text(limit)}: not read (more than "
                                      "mail services' configuration ever holds; check what it is)", errno.EFBIG)
        self._ledger.bytes_left -= len(data)
        return data

    def read_head(self, guest: str, size: int) -> bytes:
        """The first `size` bytes (or fewer, at the end) of a regular file resolved inside the root, however large
        the file: whether a program is a `#!` script needs its first line, not a refusal of a large binary (and a
        warning the admin can do nothing about). Raises OSError as read_bytes() does, for anything but a regular
        file too; counts against the run's read budget."""
        return self._head_of(guest, self._open_regular(guest), size)

    def _head_of(self, guest: str, opened: tuple[int, int] | None, size: int) -> bytes:
        """read_head() of what _open_regular() opened for `guest`; closes it."""
        if opened is None:
            return b""
        fd, known = opened
        try:
            self._ledger.want(size)
            if self._ledger.bytes_left <= 0:
                raise self._refuse(guest, _SPENT, errno.EFBIG)
            data = read_at_most(fd, min(size, self._ledger.bytes_left) - 1, known)
        finally:
            os.close(fd)
        self._ledger.bytes_left -= len(data)
        return data

    def read_text(self, guest: str, limit: int = TEXT_LIMIT) -> str | None:
        """A file's text (undecodable bytes replaced), or None if it cannot be read (missing, refused, ...)."""
        try:
            return self.read_bytes(guest, limit).decode("utf-8", "replace")
        except OSError:
            return None

    def listdir(self, guest: str, limit: int = LISTDIR_LIMIT) -> list[str]:
        """Entries of a directory resolved inside the root (a guest's absolute link never leads to the host),
        sorted; at most `limit` of them (the rest is refused, and recorded in `refusals`)."""
        return [name for name, _ in self.scan(guest, limit)]

    def scan(self, guest: str, limit: int = LISTDIR_LIMIT) -> list[tuple[str, int]]:
        """listdir(), each entry with its file type as the directory read gives it (stat.S_IFLNK, S_IFDIR, S_IFREG;
        0 for any other or unknown): what the loader's index of a unit directory needs (units/index.py), without a
        system call per entry. NotOnDisk for a directory that resolves into what _on_disk() says is not read from
        the disk (GeneratedFS)."""
        fd = self._open_plain_dir(guest)  # a path without links: one openat2 call (access/beneath.py)
        resolved = guest if fd is not None else self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        if not self._on_disk(resolved):
            raise NotOnDisk(errno.ENOENT, "made at boot by a systemd generator, not a directory on the disk", guest)
        names: list[tuple[str, int]] = []
        try:
            if fd is not None:
                pass
            elif resolved == "/":
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                parent, name = self._open_parent(resolved)
                try:
                    fd = os.open(name, _LIST_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
            try:
                cap = min(limit, self._ledger.entries_left)
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if len(names) >= cap < limit:  # a worker: more of the run's entries, while it has them
                            self._ledger.want(entries=len(names) + 1)
                            cap = min(limit, self._ledger.entries_left)
                        if len(names) >= cap:
                            self._refuse(guest, f"more than {limit} entries: only {limit} of them read" if cap == limit
                                         else f"not listed in full: this run already listed {LISTDIR_TOTAL_LIMIT} "
                                              "directory entries of the root")
                            break
                        try:
                            kind = (stat.S_IFLNK if entry.is_symlink() else stat.S_IFDIR if entry.is_dir(
                                follow_symlinks=False) else stat.S_IFREG if entry.is_file(follow_symlinks=False) else 0)
                        except OSError:
                            kind = 0
                        names.append((entry.name, kind))
                self._ledger.entries_left -= len(names)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            pass
        names.sort()  # by name: a directory's names are unique, so the type never decides
        return names

    def glob(self, pattern: str, matches: int = GLOB_MATCHES, steps: int = GLOB_STEPS) -> GlobResult:
        """glob(3) of an absolute pattern inside the root: `*`, `?`, `[...]` and backslash escapes per
        component, names starting with `.` matched only by a pattern starting with `.`, links resolved inside
        the root. Capped: at most `matches` paths (and candidates at each level), `steps` directory entries
        looked at, GLOB_DEPTH components; a capped result says so in `problem`."""
        parts = [p for p in pattern.split("/") if p]
        if not pattern.startswith("/"):
            return GlobResult((), f"{pattern}: not an absolute path")
        if len(parts) > GLOB_DEPTH:
            return GlobResult((), f"{pattern}: more than {GLOB_DEPTH} path components: not expanded")
        candidates = ["/"]
        looked = 0
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            found: list[str] = []
            regex = glob_regex(part)
            for base in candidates:
                if regex is None:
                    names = [glob_unescape(part)]
                else:
                    entries = self.listdir(base)
                    looked += len(entries) + 1
                    names = [n for n in entries if regex.fullmatch(n)
                             and (not n.startswith(".") or part.startswith((".", "\\.")))]
                for name in names:
                    path = posixpath.join(base, name)  # as glob(3) returns it; resolved inside the root below
                    if self.is_dir(path) if not last else self.chase(path, follow_last=False) is not None:
                        found.append(path)
                if len(found) > matches:
                    return GlobResult((), f"{pattern}: more than {matches} matches: not expanded")
                if looked > steps:
                    return GlobResult((), f"{pattern}: more than {steps} directory entries to look at: not "
                                          "expanded")
            candidates = found
            if not candidates:
                break
        return GlobResult(tuple(sorted(candidates)))

