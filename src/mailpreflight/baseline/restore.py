"""`restore`: put files under /etc back as a `snapshot` baseline recorded them (text, mode, owner, or a
symlink's target) — e.g. the /etc/pam.d/imap an upgrade deleted.

Only what the baseline holds completely is written: a file whose text was not recorded (not world-readable,
too big, binary) or had values redacted is refused. Writes are atomic (temp file, fsync, rename, fsync of the
directory), never go through a symlink, never touch /usr; a file that is there and differs is kept as
PATH.mailpreflight-backup first; restoring what is already restored changes nothing.

The baseline travelled through tickets and mail: it is checked like any hostile input. Its paths must be
canonical (`/etc/../../tmp/x` is refused, not normalised into something else); set-uid, set-gid and sticky
bits are dropped unless --allow-setid; what --dry-run prints includes every mode and owner change.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass

from mailpreflight.access.bounded import describe
from mailpreflight.access.rootfs import RootFS
from mailpreflight.access.safewrite import (
    checked_parts,
    diff,
    guest_directory,
    guest_parts,
    lstat_in,
    read_in,
    symlink_in,
    write_in,
)
from mailpreflight.baseline.digestkey import Digest, check_entry
from mailpreflight.baseline.document import Baseline
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import FileRecord

BACKUP_SUFFIX = ".mailpreflight-backup"
REDACTED = "<redacted>"
ID_MAX = 2**32 - 2  # (uid_t)-1 means "no change" to chown()
TARGET_MAX = 4095  # PATH_MAX - 1


@dataclass(frozen=True)
class Restored:
    path: str
    changed: bool
    diff: str
    message: str


@dataclass(frozen=True)
class _Now:
    """What is at the path now."""

    info: os.stat_result | None
    text: str | None = None
    target: str | None = None


def _current(fs: RootFS, path: str) -> _Now:
    """What is at `path` now, looked at inside the root without following any link; a regular file's text
    is read through the gate, anything but a file or a link is refused (restore replaces nothing else)."""
    name = posixpath.basename(path)
    try:
        with guest_directory(fs, path) as fd:
            info = lstat_in(fd, name)
            if info is None:
                return _Now(None)
            if stat.S_ISLNK(info.st_mode):
                return _Now(info, target=os.readlink(name, dir_fd=fd))
            if not stat.S_ISREG(info.st_mode):
                raise MailpreflightError(f"refusing to replace {path}: {describe(info.st_mode, info.st_rdev)}, not a "
                                         "regular file or a symlink", hint="look at it and move it away first")
            return _Now(info, text=read_in(fd, name, path, 64 * 1024 * 1024))
    except FileNotFoundError:  # its directory is missing: restore creates it
        return _Now(None)


def _altered(baseline_file: str, path: str, what: str) -> MailpreflightError:
    return MailpreflightError(f"{baseline_file}: the record of {path} has {what}: the baseline was altered or "
                              "damaged", hint="take the file from a backup, or a new baseline with `snapshot`")


def _checked(baseline_file: str, path: str, entry: FileRecord) -> tuple[int, int, int]:
    """mode, uid, gid of a baseline record, refusing values no snapshot writes (load_baseline checked them too:
    this holds for a record from anywhere)."""
    mode_text = entry.mode
    if not isinstance(mode_text, str) or not mode_text.isdigit() or any(c not in "01234567" for c in mode_text):
        raise _altered(baseline_file, path, f"the mode {str(mode_text)[:20]!r}, not an octal number")
    mode = int(mode_text, 8)
    if mode > 0o7777:
        raise _altered(baseline_file, path, f"the mode {mode_text[:20]}, more than permission bits")
    ids = []
    for key, value in (("uid", entry.uid), ("gid", entry.gid)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ID_MAX:
            raise _altered(baseline_file, path, f"the {key} {str(value)[:20]!r}, not a user or group id")
        ids.append(value)
    return mode, ids[0], ids[1]


def restore(fs: RootFS, baseline_file: str, baseline: Baseline, path: str, dry_run: bool, *,
            digest: Digest, allow_setid: bool = False) -> Restored:
    """`digest`: the baseline's (digestkey.for_baseline); an entry whose MAC does not match is refused. A valid
    MAC says the entry is what `snapshot` recorded, not that what it recorded is safe to write: every check
    below holds for it too."""
    checked_parts(path, "restore")  # canonical: `/etc/../../tmp/x` is refused, never normalised
    if not path.startswith("/etc/"):
        raise MailpreflightError(f"refusing to write {path}: only /etc is restored, never /usr")
    parts = guest_parts(path)
    entry = baseline.files.get(path)
    if entry is None:
        raise MailpreflightError(f"{baseline_file}: {path} is not in the baseline (`drift` lists what it holds)")
    check_entry(baseline_file, path, entry, digest)
    kind = entry.kind
    if kind not in ("file", "symlink"):
        raise MailpreflightError(f"{baseline_file}: {path} was a {str(kind)[:20]}: only files and symlinks are "
                                 "restored")
    recorded = entry.text
    text = recorded if isinstance(recorded, str) else ""
    if kind == "file" and recorded is None:
        raise MailpreflightError(f"{baseline_file}: no text of {path} ({entry.text_omitted}): restore it "
                                 "from a backup")
    if kind == "file" and REDACTED in text:
        raise MailpreflightError(f"{baseline_file}: the text of {path} has redacted secrets: restore it from a "
                                 "backup")
    mode, uid, gid = _checked(baseline_file, path, entry)
    dropped = ""
    if mode & 0o7000 and not allow_setid:
        dropped = (f"; its set-uid/set-gid/sticky bits ({entry.mode}) were not restored (--allow-setid "
                   "restores them)")
        mode &= 0o777
    now = _current(fs, path)
    name = parts[-1]
    if kind == "symlink":
        target = entry.target
        if not isinstance(target, str) or not target or "\0" in target or len(target) > TARGET_MAX:
            raise _altered(baseline_file, path, "no usable symlink target")
        if now.target == target:
            return Restored(path, False, "", f"{path} already points to {target}")
        before = "(missing)" if now.info is None else now.target or "a file"
        change = f"{path}: {before} -> symlink to {target}\n"
    else:
        meta_now = None if now.info is None or now.target is not None else (
            stat.S_IMODE(now.info.st_mode), now.info.st_uid, now.info.st_gid)
        if now.target is None and now.text == text and meta_now == (mode, uid, gid):
            return Restored(path, False, "", f"{path} is already as in the baseline")
        change = diff(now.text, text, path) + _meta_change(path, now, meta_now, (mode, uid, gid))
    if dry_run:
        return Restored(path, False, change, f"would restore {path}{dropped}")
    backup = ""
    with guest_directory(fs, path, create=True) as fd:
        if now.info is not None:
            if lstat_in(fd, name + BACKUP_SUFFIX) is not None:
                raise MailpreflightError(f"{path} differs from the baseline and {path}{BACKUP_SUFFIX} already "
                                         "exists", hint="move the old backup away first")
            os.link(name, name + BACKUP_SUFFIX, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            backup = f"; the previous one is kept as {path}{BACKUP_SUFFIX} (undo: mv {path}{BACKUP_SUFFIX} {path})"
        if kind == "symlink":
            symlink_in(fd, name, str(entry.target))
        else:
            write_in(fd, name, text, mode, (uid, gid))
    undo = "" if backup else f" (undo: rm {path})"
    return Restored(path, True, change, f"restored {path}{backup or undo}{dropped}")


def _meta_change(path: str, now: _Now, meta_now: tuple[int, int, int] | None, meta: tuple[int, int, int]) -> str:
    """The mode/owner line --dry-run shows (and the diff alone would not)."""
    mode, uid, gid = meta
    warning = "  (world-writable!)" if mode & 0o002 else ""
    if meta_now is None:
        was = "a symlink" if now.target is not None else "missing"
        return f"{path}: {was} -> file mode {mode:04o}, owner {uid}:{gid}{warning}\n"
    if meta_now == meta:
        return ""
    old_mode, old_uid, old_gid = meta_now
    changes = []
    if old_mode != mode:
        changes.append(f"mode {old_mode:04o} -> {mode:04o}")
    if (old_uid, old_gid) != (uid, gid):
        changes.append(f"owner {old_uid}:{old_gid} -> {uid}:{gid}")
    return f"{path}: {', '.join(changes)}{warning}\n"

