"""`drift`: what changed since a `snapshot` baseline, and which findings each change causes (mail
authentication MP3xx, the units' static start-path risks MP1xx).

A finding is new when its key (code + subject) was not in the baseline's findings; it is tied to every change
of a file that decides it (its `paths`). A baseline names the host it was taken on (machine-id, else
hostname); comparing it against another host is refused unless asked for, because every file would "drift".
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import replace

from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth.check import TrackedFinding
from mailpreflight.baseline.digestkey import for_baseline
from mailpreflight.baseline.document import Baseline
from mailpreflight.baseline.snapshot import (
    MAIL_PATHS,
    analyse,
    collect,
    host_of,
)
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import (
    ChangeKind,
    ChangeView,
    DriftView,
    EntryType,
    FileRecord,
    HostRecord,
    Status,
    TrackedFindingView,
)
from mailpreflight.units.loader import UnitLoader

DIFF_LINES = 200  # per file; the rest is summarised


def status(changes: tuple[ChangeView, ...], new: tuple[TrackedFindingView, ...]) -> Status:
    """OK: nothing changed; WARNING: changes (or new warnings); CRITICAL: a new critical finding."""
    changed = Status.WARNING if changes else Status.OK
    return Status.worst([changed, *(issue.finding.severity.status for issue in new)])


def _same_host(before: HostRecord, now: HostRecord) -> str | None:
    """None when the baseline is from this host, else why not."""
    for label, old, new in (("machine-id", before.machine_id, now.machine_id),
                            ("hostname", before.hostname, now.hostname)):
        if old and new:
            if old != new:
                return f"{label} {_shown(old)} (baseline) is not {_shown(new)} (this root)"
            return None
    return None


def _shown(value: str) -> str:
    """A host's id as an error message quotes it: one line, not too long (a guest's /etc/machine-id may be anything)."""
    words = " ".join(value.split())
    return words if len(words) <= 64 else f"{words[:64]}..."


def check_host(baseline_file: str, baseline: Baseline, fs: RootFS, other_host: bool,
               say: Callable[[str], None] | None = None) -> HostRecord:
    """This root's host identity; refuses a baseline of another host unless told. `say` is told of a bad
    /etc/machine-id (taken as unknown: the hostname decides)."""
    host, problem = host_of(fs)
    if problem and say is not None:
        say(f"warning: {problem}")
    mismatch = _same_host(baseline.host, host)
    if mismatch and not other_host:
        raise MailpreflightError(f"{baseline_file}: the baseline is from another host: {mismatch}; pass "
                                 "--other-host to use it anyway")
    return host


def compare(baseline_file: str, baseline: Baseline, fs: RootFS, other_host: bool = False,
            digest_key: str | None = None, say: Callable[[str], None] | None = None) -> DriftView:
    """`digest_key`: the key file the baseline's digests were made with (default: this host's); `say`: as for
    check_host()."""
    host = check_host(baseline_file, baseline, fs, other_host, say)
    digest = for_baseline(baseline_file, baseline, digest_key)  # the same key, or no comparison at all
    loader = UnitLoader(fs)
    found = analyse(loader)
    tracked = found.tracked
    before_files = baseline.files
    after_files, _ = collect(fs, digest, (*found.units, *found.modules), (*found.depends, *before_files))
    changes = _watched(_changes(before_files, after_files), before_files, set(found.units))
    before_keys = {_key(f) for f in baseline.findings}
    now_keys = {issue.key for issue in tracked}
    new = [issue for issue in tracked if issue.key not in before_keys]
    causes: dict[str, list[TrackedFinding]] = {change.path: [] for change in changes}
    pairs: set[tuple[str, TrackedFinding]] = set()  # a set, not `in causes`: a file may cause thousands
    for issue in new:
        decisive = {p for path in issue.paths for p in (path, fs.chase(path)) if p}  # symlinks: both ends
        for path in sorted(decisive):
            if path in causes and (path, issue) not in pairs:
                pairs.add((path, issue))
                causes[path].append(issue)
    tied = {id(issue) for issues in causes.values() for issue in issues}
    views = {id(issue): _view(issue, before_files) for issue in tracked}
    new_views = tuple(views[id(issue)] for issue in new)
    changed = tuple(replace(change, causes=tuple(views[id(issue)] for issue in causes[change.path]))
                    for change in changes)
    return DriftView(
        status=status(changed, new_views), baseline_file=baseline_file, baseline_created=baseline.created,
        baseline_host=baseline.host, baseline_root=baseline.root, host=host, root=fs.root, changes=changed,
        new=new_views, loose=tuple(views[id(issue)] for issue in new if id(issue) not in tied),
        resolved=tuple(f for f in baseline.findings if _key(f) not in now_keys),
        persisting=tuple(views[id(issue)] for issue in tracked if issue.key in before_keys))


def _key(issue: TrackedFindingView) -> str:
    return f"{issue.finding.code}:{issue.subject}"


_RESTORE = re.compile(r"`mailpreflight restore --baseline FILE (/\S+)`")


def _view(issue: TrackedFinding, before: Mapping[str, FileRecord]) -> TrackedFindingView:
    """The finding; a hint to restore a path this baseline does not hold (e.g. /etc/pam.d/pop, which Debian does
    not ship) says so instead of naming a restore that refuses."""
    finding = issue.finding
    missing = [m for m in _RESTORE.finditer(finding.hint) if m.group(1) not in before]
    if missing:
        path = missing[0].group(1)
        finding = replace(finding, hint=f"recreate {path}: this baseline does not hold it (it was not recorded "
                                        "when the snapshot was taken)")
    return TrackedFindingView(finding, issue.subject, issue.paths)


def _watched(changes: list[ChangeView], before: Mapping[str, FileRecord], units: set[str]) -> list[ChangeView]:
    """Drop "added" paths that are only newly looked at (e.g. a module a changed stack now names): a path is
    new inside a directory the baseline recorded (or a new one there), as a mail unit's file (a vendor
    drop-in in a new directory), or as a fixed path."""
    known = set(before)
    fixed = units | set(MAIL_PATHS)
    kept = []
    for change in changes:  # sorted: a directory comes before its entries
        if change.change is ChangeKind.ADDED:
            if posixpath.dirname(change.path) not in known and change.path not in fixed:
                continue
            known.add(change.path)
        kept.append(change)
    return kept


def _changes(before: Mapping[str, FileRecord], after: Mapping[str, FileRecord]) -> list[ChangeView]:
    changes: list[ChangeView] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            changes.append(ChangeView(path, ChangeKind.ADDED, _describe(new), _diff(path, None, new), None, new, ()))
        elif new is None:
            changes.append(ChangeView(path, ChangeKind.DELETED, _describe(old), _diff(path, old, None), old, None, ()))
        else:
            details = _details(old, new)
            if details:
                content = old.sha256 != new.sha256
                changes.append(ChangeView(path, ChangeKind.CHANGED, details,
                                          _diff(path, old, new) if content else None, old, new, ()))
    return changes


def _describe(entry: FileRecord | None) -> tuple[str, ...]:
    if entry is None:
        return ()
    owner = f"{entry.owner or entry.uid}:{entry.group or entry.gid}"
    extra = f" -> {entry.target}" if entry.kind is EntryType.SYMLINK else (
        f", {entry.size} bytes" if entry.kind is EntryType.FILE else "")
    return (f"{entry.kind.value} {owner} {entry.mode}{extra}",)


def _details(old: FileRecord, new: FileRecord) -> tuple[str, ...]:
    details = []
    if old.kind is not new.kind:
        details.append(f"type {old.kind.value} -> {new.kind.value}")
    if old.mode != new.mode:
        details.append(f"mode {old.mode} -> {new.mode}")
    if old.uid != new.uid:
        details.append(f"owner {old.owner or old.uid} -> {new.owner or new.uid}")
    if old.gid != new.gid:
        details.append(f"group {old.group or old.gid} -> {new.group or new.gid}")
    if old.target != new.target:
        details.append(f"target {old.target} -> {new.target}")
    if old.sha256 != new.sha256:
        details.append("content")
    return tuple(details)


def _diff(path: str, old: FileRecord | None, new: FileRecord | None) -> str | None:
    """A unified diff when both sides' texts are known (a deleted file: its whole recorded text)."""
    texts = []
    for entry in (old, new):
        if entry is None or entry.kind is not EntryType.FILE:
            texts.append("" if entry is None else None)
        else:
            texts.append(entry.text)
    if texts[0] is None or texts[1] is None or (old is None and new is None):
        return None
    lines = list(difflib.unified_diff(texts[0].splitlines(keepends=True), texts[1].splitlines(keepends=True),
                                      f"baseline{path}", f"now{path}"))
    if not lines:
        return None
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... {len(lines) - DIFF_LINES} more diff lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
