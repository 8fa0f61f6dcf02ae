"""A file tree seen as a guest sees it: "/" or an offline root (a mounted VM disk).

Symlinks are resolved INSIDE the root: an absolute target is relative to the root and `..` never climbs
above it (like systemd's chase() with a root). Paths given and returned are guest paths.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

MAX_LINKS = 32
DEV_NULL = "/dev/null"
_T = TypeVar("_T")


@dataclass(frozen=True)
class RootFS:
    root: str = "/"
    _dirs: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    _memo: dict[Hashable, object] = field(default_factory=dict, compare=False, hash=False, repr=False)

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
        return os.path.join(self.root, guest.lstrip("/")) if self.root != "/" else guest

    def lstat(self, guest: str) -> os.stat_result | None:
        try:
            return os.lstat(self.host(guest))
        except (OSError, ValueError):
            return None

    def readlink(self, guest: str) -> str | None:
        try:
            return os.readlink(self.host(guest))
        except (OSError, ValueError):
            return None

    def chase(self, guest: str, follow_last: bool = True) -> str | None:
        """Resolve symlinks component by component inside the root; None if a component is missing.

        `/dev/null` is returned as is: under an offline root the guest's /dev is usually not populated,
        yet a link to it is what masks a unit. Directories are resolved once and remembered (a loader
        reads thousands of files from the same few directories).
        """
        parent, _, base = guest.rpartition("/")
        if not base or base in (".", "..") or "/." in parent or "//" in guest:
            return self._chase(guest, follow_last)
        resolved_parent = self._chase_dir(parent or "/")
        if resolved_parent is None:
            return None
        candidate = posixpath.join(resolved_parent, base)
        if candidate == DEV_NULL:
            return DEV_NULL
        info = self.lstat(candidate)
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
        if resolved is not None and len(self._dirs) < 8192:
            self._dirs[guest] = resolved
        return resolved

    def _chase(self, guest: str, follow_last: bool) -> str | None:
        todo = [p for p in guest.split("/") if p]
        done = "/"
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                done = posixpath.dirname(done)
                continue
            candidate = posixpath.join(done, part)
            if candidate == "/dev" and todo == ["null"]:
                return DEV_NULL  # whether or not the guest's /dev is populated
            info = self.lstat(candidate)
            if info is None:
                return None
            if stat.S_ISLNK(info.st_mode) and (todo or follow_last):
                hops += 1
                target = self.readlink(candidate)
                if target is None or hops > MAX_LINKS:
                    return None
                if target.startswith("/"):
                    done = "/"
                todo = [p for p in target.split("/") if p] + todo
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
        try:
            info = os.stat(self.host(resolved))
        except OSError:
            return False
        return stat.S_ISCHR(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_size == 0)

    def listdir(self, guest: str) -> list[str]:
        """Entries of a directory resolved inside the root (a guest's absolute link never leads to the host)."""
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        try:
            return sorted(os.listdir(self.host(resolved)))
        except (OSError, ValueError):
            return []

    def scan(self, guest: str) -> list[tuple[str, int]]:
        """listdir(), each entry with its file type as the directory read gives it (stat.S_IFLNK, S_IFDIR, S_IFREG;
        0 for any other or unknown): what the loader's index of a unit directory needs (units/index.py), without a
        system call per entry."""
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        found: list[tuple[str, int]] = []
        try:
            with os.scandir(self.host(resolved)) as entries:
                for entry in entries:
                    try:
                        kind = (stat.S_IFLNK if entry.is_symlink() else stat.S_IFDIR if entry.is_dir(
                            follow_symlinks=False) else stat.S_IFREG if entry.is_file(follow_symlinks=False) else 0)
                    except OSError:
                        kind = 0
                    found.append((entry.name, kind))
        except (OSError, ValueError):
            return []
        return sorted(found, key=lambda item: item[0])

    def is_dir(self, guest: str) -> bool:
        resolved = self.chase(guest)
        return resolved is not None and resolved != DEV_NULL and os.path.isdir(self.host(resolved))

    def read_bytes(self, guest: str, limit: int = 64 * 1024 * 1024) -> bytes:
        """Read a file after resolving it inside the root. Raises OSError."""
        resolved = self.chase(guest)
        if resolved is None:
            raise FileNotFoundError(guest)
        if resolved == DEV_NULL:
            return b""
        with open(self.host(resolved), "rb") as handle:
            # read(limit) would allocate `limit` bytes up front: check the size instead.
            if os.fstat(handle.fileno()).st_size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", guest)
            return handle.read()

    def read_text(self, guest: str) -> str | None:
        try:
            return self.read_bytes(guest, 1024 * 1024).decode("utf-8", "replace")
        except OSError:
            return None
