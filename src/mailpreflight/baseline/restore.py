"""`restore`: put files under /etc back as a `snapshot` baseline recorded them (text, mode, owner, or a
symlink's target) — e.g. the /etc/pam.d/imap an upgrade deleted.

Only what the baseline holds completely is written: a file whose text was not recorded (not world-readable,
too big, binary) or had values redacted is refused. Writes are atomic (temp file, fsync, rename, fsync of the
directory), never go through a symlink, never touch /usr; a file that is there and differs is kept as
PATH.mailpreflight-backup first; restoring what is already restored changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mailpreflight.access.rootfs import RootFS
from mailpreflight.access.safewrite import diff, fsync_dir, host_path, write_atomically
from mailpreflight.baseline.digestkey import Digest, check_entry
from mailpreflight.errors import MailpreflightError

BACKUP_SUFFIX = ".mailpreflight-backup"
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Restored:
    path: str
    changed: bool
    diff: str
    message: str


def _current(host: str) -> tuple[str | None, str | None, os.stat_result | None]:
    """(text, link target, lstat) of what is there now."""
    try:
        info = os.lstat(host)
    except FileNotFoundError:
        return None, None, None
    if os.path.islink(host):
        return None, os.readlink(host), info
    with open(host, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read(), None, info


def restore(fs: RootFS, baseline_file: str, baseline: dict[str, Any], path: str, dry_run: bool, *,
            digest: Digest) -> Restored:
    """`digest`: the baseline's (digestkey.for_baseline); an entry whose MAC does not match is refused."""
    entry = baseline["files"].get(path)
    if not isinstance(entry, dict):
        raise MailpreflightError(f"{baseline_file}: {path} is not in the baseline (`drift` lists what it holds)")
    check_entry(baseline_file, path, entry, digest)
    kind = entry.get("type")
    if kind not in ("file", "symlink"):
        raise MailpreflightError(f"{baseline_file}: {path} was a {kind}: only files and symlinks are restored")
    recorded = entry.get("text")
    text = recorded if isinstance(recorded, str) else ""
    if kind == "file" and recorded is None:
        raise MailpreflightError(f"{baseline_file}: no text of {path} ({entry.get('text_omitted')}): restore it "
                                 "from a backup")
    if kind == "file" and REDACTED in text:
        raise MailpreflightError(f"{baseline_file}: the text of {path} has redacted secrets: restore it from a "
                                 "backup")
    if not path.startswith("/etc/"):
        raise MailpreflightError(f"refusing to write {path}: only /etc is restored, never /usr")
    host = host_path(fs, path, allow_link=True)
    old_text, old_target, info = _current(host)
    mode, uid, gid = int(entry["mode"], 8), int(entry["uid"]), int(entry["gid"])
    if kind == "symlink":
        target = str(entry.get("target"))
        if old_target == target:
            return Restored(path, False, "", f"{path} already points to {target}")
        change = f"{path}: {'(missing)' if info is None else old_target or 'a file'} -> symlink to {target}\n"
    else:
        same_meta = info is not None and (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, uid, gid)
        if old_target is None and old_text == text and same_meta:
            return Restored(path, False, "", f"{path} is already as in the baseline")
        change = diff(old_text, text, path) or f"{path}: mode/owner back to {entry['mode']} {uid}:{gid}\n"
    if dry_run:
        return Restored(path, False, change, f"would restore {path}")
    backup = ""
    if info is not None:
        if os.path.lexists(host + BACKUP_SUFFIX):
            raise MailpreflightError(f"{path} differs from the baseline and {path}{BACKUP_SUFFIX} already exists",
                                     hint="move the old backup away first")
        os.link(host, host + BACKUP_SUFFIX, follow_symlinks=False)
        backup = f"; the previous one is kept as {path}{BACKUP_SUFFIX} (undo: mv {path}{BACKUP_SUFFIX} {path})"
    if kind == "symlink":
        _replace_with_symlink(host, target)
    else:
        write_atomically(host, text, mode, (uid, gid), make_dirs=True)
    undo = "" if backup else f" (undo: rm {path})"
    return Restored(path, True, change, f"restored {path}{backup or undo}")


def _replace_with_symlink(host: str, target: str) -> None:
    directory = os.path.dirname(host)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(host)}.tmp-{os.getpid()}")
    os.symlink(target, temp)
    os.replace(temp, host)
    fsync_dir(directory)
