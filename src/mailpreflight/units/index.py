"""The search path, read once per loader run (docs/design.md, "Performance"): one listing of each unit directory,
and of each drop-in directory when a unit first needs it; every lstat, link chase and mask test answered once.

Answers are exactly RootFS's (the read gate): the index only remembers them. A name in a search directory whose
entry is not a symlink resolves to the directory's resolved path plus the name, with no system call; anything
else goes through RootFS and is remembered. The index is a snapshot: a loader sees the tree as it was when it
first looked (the name map was always one), so code that writes into the root and reads again builds a new
loader.
"""

from __future__ import annotations

import os
import posixpath
import stat

from mailpreflight.access.rootfs import DEV_NULL, RootFS

_MISSING = object()


class SearchIndex:
    """Listings, lstat results, chased paths and mask tests of one tree, for one loader run."""

    def __init__(self, fs: RootFS, search_paths: tuple[str, ...]) -> None:
        self.fs = fs
        self.search_paths = search_paths
        self._listings: dict[str, tuple[str, ...]] = {}  # guest dir as asked -> sorted entries
        self._entries: dict[str, tuple[tuple[str, int], ...]] = {}  # the same, each with its file type
        self._resolved_dirs: dict[str, str | None] = {}
        self._lstat: dict[str, os.stat_result | None] = {}
        self._kinds: dict[str, int] = {}  # file type of the entries of listed directories (0: not known)
        self._chase: dict[str, str | None] = {}
        self._null: dict[str, bool] = {}
        self._is_dir: dict[str, bool] = {}
        self._conf_files: dict[str, tuple[tuple[str, str], ...]] = {}

    def listdir(self, directory: str) -> tuple[str, ...]:
        """RootFS.listdir(), once per directory and run; the type of every entry comes with it (RootFS.scan)."""
        found = self._listings.get(directory)
        if found is None:
            self._scan(directory)
            found = self._listings[directory]
        return found

    def entries(self, directory: str) -> tuple[tuple[str, int], ...]:
        """listdir() with each entry's file type as the listing gave it (kind(): 0 when it did not say)."""
        found = self._entries.get(directory)
        if found is None:
            self._scan(directory)
            found = self._entries[directory]
        return found

    def _scan(self, directory: str) -> None:
        scanned = tuple(self.fs.scan(directory))
        self._entries[directory] = scanned
        self._listings[directory] = tuple(name for name, _ in scanned)
        prefix = directory.rstrip("/") + "/"
        for name, kind in scanned:
            self._kinds[prefix + name] = kind

    def conf_files(self, directory: str) -> tuple[tuple[str, str], ...]:
        """(name, path) of each `*.conf` of a drop-in directory that is a file or a link, not hidden, in name order
        (what conf_files_list_strv() takes from it), once per directory and run: a drop-in directory many units
        share (service.d/, a dashed prefix) is looked at once."""
        found = self._conf_files.get(directory)
        if found is None:
            pairs = ((entry, posixpath.join(directory, entry)) for entry in self.listdir(directory)
                     if entry.endswith(".conf") and not entry.startswith("."))
            found = self._conf_files[directory] = tuple(
                (entry, path) for entry, path in pairs if self.kind(path) in (stat.S_IFREG, stat.S_IFLNK))
        return found

    def kind(self, path: str) -> int:
        """The file type of a path (stat.S_IFLNK, S_IFREG, ...; 0 if it does not exist), not following a last link;
        for an entry of a listed directory, known from the listing."""
        kind = self._kinds.get(path)
        if kind:
            return kind
        info = self.lstat(path)
        return stat.S_IFMT(info.st_mode) if info is not None else 0

    def is_link(self, path: str) -> bool:
        return self.kind(path) == stat.S_IFLNK

    def resolved_dir(self, directory: str) -> str | None:
        if directory not in self._resolved_dirs:
            self._resolved_dirs[directory] = self.fs.chase(directory)
        return self._resolved_dirs[directory]

    def lstat(self, path: str) -> os.stat_result | None:
        found = self._lstat.get(path, _MISSING)
        if found is _MISSING:
            found = self._lstat[path] = self.fs.lstat(self._direct(path) or path)
        return found  # type: ignore[return-value]

    def readlink(self, path: str) -> str | None:
        return self.fs.readlink(self._direct(path) or path)

    def chase(self, path: str) -> str | None:
        """RootFS.chase(path): the last part is resolved from the lstat already made when it is not a link."""
        found = self._chase.get(path, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        direct = self._direct(path)
        result: str | None
        if direct is None:
            result = self.fs.chase(path)
        elif direct == DEV_NULL:
            result = DEV_NULL
        elif self._kinds.get(path) in (stat.S_IFDIR, stat.S_IFREG):  # the listing's type: there, and no link
            result = direct
        else:
            info = self.lstat(path)
            result = None if info is None else self.fs.chase(path) if stat.S_ISLNK(info.st_mode) else direct
        self._chase[path] = result
        return result

    def is_null_or_empty(self, path: str) -> bool:
        """RootFS.is_null_or_empty(path); a plain entry of a listed directory needs no second stat."""
        found = self._null.get(path)
        if found is None:
            direct = self._direct(path)
            info = self.lstat(path) if direct is not None and direct != DEV_NULL else None
            if info is not None and not stat.S_ISLNK(info.st_mode):
                found = stat.S_ISCHR(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_size == 0)
            else:
                found = self.fs.is_null_or_empty(path)
            self._null[path] = found
        return found

    def is_dir(self, path: str) -> bool:
        found = self._is_dir.get(path)
        if found is None:
            found = self._is_dir[path] = self.fs.is_dir(path)
        return found

    def _direct(self, path: str) -> str | None:
        """`path` with its directory resolved, when it is a plain name in a directory already listed (a search
        directory or a drop-in directory); None otherwise (then RootFS answers)."""
        parent = self._parent_resolved(path)
        return None if parent is None else posixpath.join(parent, path.rpartition("/")[2])

    def _parent_resolved(self, path: str) -> str | None:
        parent, _, base = path.rpartition("/")
        if not base or base in (".", "..") or parent not in self._listings:
            return None
        resolved = self.resolved_dir(parent)
        return None if resolved is None or resolved == DEV_NULL else resolved
