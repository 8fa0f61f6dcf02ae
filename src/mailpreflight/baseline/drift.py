"""`drift`: what changed since a `snapshot` baseline, and which findings each change causes (mail
authentication MP3xx, the units' static start-path risks MP1xx).

A finding is new when its key (code + subject) was not in the baseline's findings; it is tied to every change
of a file that decides it (its `paths`). A baseline names the host it was taken on (machine-id, else
hostname); comparing it against another host is refused unless asked for, because every file would "drift".
"""

from __future__ import annotations

import difflib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from mailpreflight.access.rootfs import RootFS, read_regular_file
from mailpreflight.auth.check import TrackedFinding
from mailpreflight.baseline.digestkey import for_baseline
from mailpreflight.baseline.snapshot import (
    KIND,
    MAIL_PATHS,
    MAX_ENTRIES,
    SCHEMA_VERSION,
    analyse,
    collect,
    host_of,
)
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Status
from mailpreflight.units.loader import UnitLoader

DIFF_LINES = 200  # per file; the rest is summarised
_COMPARED = ("type", "mode", "uid", "gid", "target", "sha256")


@dataclass
class Change:
    path: str
    change: str  # deleted | added | changed
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    details: list[str] = field(default_factory=list)
    diff: str | None = None
    causes: list[TrackedFinding] = field(default_factory=list)


@dataclass
class Drift:
    baseline_file: str
    baseline: dict[str, Any]
    host: dict[str, str | None]
    changes: list[Change]
    new: list[TrackedFinding]
    resolved: list[dict[str, Any]]
    persisting: list[TrackedFinding]
    root: str = "/"

    def hint(self, finding: TrackedFinding) -> str:
        """The finding's fix, with this baseline (and root) filled in where it names `restore`."""
        where = f"--baseline {self.baseline_file}" + (f" --root {self.root}" if self.root != "/" else "")
        return finding.finding.hint.replace("--baseline FILE", where)

    @property
    def status(self) -> Status:
        """OK: nothing changed; WARNING: changes (or new warnings); CRITICAL: a new critical finding."""
        changed = Status.WARNING if self.changes else Status.OK
        return Status.worst([changed, *(issue.finding.severity.status for issue in self.new)])


BASELINE_LIMIT = 64 * 1024 * 1024  # real ones: a few MiB (texts only of small world-readable files)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_baseline(path: str) -> dict[str, Any]:
    """A baseline, checked before use: it travelled through tickets and mail, its content is hostile. What drift
    and restore both rely on is checked here; restore checks each entry it writes itself."""
    try:
        document = json.loads(read_regular_file(path, BASELINE_LIMIT).decode("utf-8"), parse_constant=_no_constant)
    except OSError as exc:
        raise MailpreflightError(f"cannot read baseline {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, a number of 4,300 digits
        line = getattr(exc, "lineno", 1)
        raise MailpreflightError(f"{path}:{line}: not a mailpreflight snapshot (invalid JSON)") from exc
    except RecursionError as exc:
        raise MailpreflightError(f"{path}:1: not a mailpreflight snapshot (nested too deeply)") from exc
    if not isinstance(document, dict) or document.get("kind") != KIND or not isinstance(document.get("files"),
                                                                                       dict):
        raise MailpreflightError(f"{path}:1: not a mailpreflight snapshot (take one with `mailpreflight snapshot`)")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise MailpreflightError(f"{path}:1: snapshot schema_version {document.get('schema_version')!r} is not "
                                 f"supported (this mailpreflight reads {SCHEMA_VERSION})")
    files = document["files"]
    if len(files) > MAX_ENTRIES + 1:
        raise MailpreflightError(f"{path}:1: {len(files)} paths: more than a snapshot ever records ({MAX_ENTRIES})")
    for name, entry in files.items():
        if not name.startswith("/") or "\0" in name or not isinstance(entry, dict):
            raise MailpreflightError(f"{path}: files entry {name[:200]!r} is not a path and its record: the "
                                     "baseline was altered; take a new one with `mailpreflight snapshot`")
    problem = _shape_problem(document)
    if problem:
        raise MailpreflightError(f"{path}: {problem}: not as `snapshot` writes it (take a new one with "
                                 "`mailpreflight snapshot`)")
    return document


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _shape_problem(document: dict[str, Any]) -> str | None:
    """What drift and restore both rely on and the document does not hold as `snapshot` writes it, or None (the
    type, mode, owner, link target and path of an entry are checked by restore for each entry it writes)."""
    host = document.get("host")
    if host is not None and (not isinstance(host, dict) or
                             any(not isinstance(v, str | None) for v in host.values())):
        return "\"host\" is not an object of strings"
    if not isinstance(document.get("findings", []), list):
        return "\"findings\" is not a list"
    if not isinstance(document.get("salt", ""), str) or not _is_unicode(document.get("salt", "")):
        return "\"salt\" is not a string"
    for name, entry in document["files"].items():
        where = f"files[{json.dumps(name)[:100]}]"
        text = entry.get("text")
        if text is not None and (not isinstance(text, str) or not _is_unicode(text)):  # diffed and written as UTF-8
            return f"{where}: \"text\" is not UTF-8 text"
        for key in ("sha256", "mac"):  # compared with hmac.compare_digest, which takes ASCII only
            if isinstance(entry.get(key), str) and not _HEX_DIGEST.fullmatch(entry[key]):
                return f"{where}: \"{key}\" is not a hex digest"
    return None


def _is_unicode(text: str) -> bool:
    """No lone surrogates: `snapshot` records only text that is valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _same_host(baseline: dict[str, Any], now: dict[str, str | None]) -> str | None:
    """None when the baseline is from this host, else why not."""
    before = baseline.get("host") or {}
    for key, label in (("machine_id", "machine-id"), ("hostname", "hostname")):
        old, new = before.get(key), now.get(key)
        if old and new:
            if old != new:
                return f"{label} {_shown(old)} (baseline) is not {_shown(new)} (this root)"
            return None
    return None


def _shown(value: str) -> str:
    """A host's id as an error message quotes it: one line, not too long (a guest's /etc/machine-id may be anything)."""
    words = " ".join(value.split())
    return words if len(words) <= 64 else f"{words[:64]}..."


def check_host(baseline_file: str, baseline: dict[str, Any], fs: RootFS, other_host: bool) -> dict[str, str | None]:
    """This root's host identity; refuses a baseline of another host unless told."""
    host = host_of(fs).to_json()
    mismatch = _same_host(baseline, host)
    if mismatch and not other_host:
        raise MailpreflightError(f"{baseline_file}: the baseline is from another host: {mismatch}; pass "
                                 "--other-host to use it anyway")
    return host


def compare(baseline_file: str, baseline: dict[str, Any], fs: RootFS, other_host: bool = False,
            digest_key: str | None = None) -> Drift:
    """`digest_key`: the key file the baseline's digests were made with (default: this host's)."""
    host = check_host(baseline_file, baseline, fs, other_host)
    digest = for_baseline(baseline_file, baseline, digest_key)  # the same key, or no comparison at all
    loader = UnitLoader(fs)
    found = analyse(loader)
    tracked = found.tracked
    before_files: dict[str, dict[str, Any]] = baseline["files"]
    after_files, _ = collect(fs, digest, (*found.units, *found.modules), (*found.depends, *before_files))
    changes = _watched(_changes(before_files, after_files), before_files, set(found.units))
    before_keys = {f"{f.get('code')}:{f.get('subject')}" for f in baseline.get("findings", [])
                   if isinstance(f, dict)}
    now_keys = {issue.key for issue in tracked}
    new = [issue for issue in tracked if issue.key not in before_keys]
    by_path = {change.path: change for change in changes}
    tied: set[tuple[str, TrackedFinding]] = set()  # a set, not `in causes`: a file may cause thousands of findings
    for issue in new:
        decisive = {p for path in issue.paths for p in (path, fs.chase(path)) if p}  # symlinks: both ends
        for path in sorted(decisive):
            if path in by_path and (path, issue) not in tied:
                tied.add((path, issue))
                by_path[path].causes.append(issue)
    resolved = [f for f in baseline.get("findings", []) if isinstance(f, dict)
                and f"{f.get('code')}:{f.get('subject')}" not in now_keys]
    persisting = [issue for issue in tracked if issue.key in before_keys]
    return Drift(baseline_file, baseline, host, changes, new, resolved, persisting, fs.root)


def _watched(changes: list[Change], before: dict[str, dict[str, Any]], units: set[str]) -> list[Change]:
    """Drop "added" paths that are only newly looked at (e.g. a module a changed stack now names): a path is
    new inside a directory the baseline recorded (or a new one there), as a mail unit's file (a vendor
    drop-in in a new directory), or as a fixed path."""
    known = set(before)
    fixed = units | set(MAIL_PATHS)
    kept = []
    for change in changes:  # sorted: a directory comes before its entries
        if change.change == "added":
            if posixpath.dirname(change.path) not in known and change.path not in fixed:
                continue
            known.add(change.path)
        kept.append(change)
    return kept


def _changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[Change]:
    changes: list[Change] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            changes.append(Change(path, "added", None, new, _describe(new), _diff(path, None, new)))
        elif new is None:
            changes.append(Change(path, "deleted", old, None, _describe(old), _diff(path, old, None)))
        else:
            details = _details(old, new)
            if details:
                content = old.get("sha256") != new.get("sha256")
                changes.append(Change(path, "changed", old, new, details, _diff(path, old, new) if content else None))
    return changes


def _describe(entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return []
    owner = f"{entry.get('owner') or entry.get('uid')}:{entry.get('group') or entry.get('gid')}"
    extra = f" -> {entry.get('target')}" if entry.get("type") == "symlink" else (
        f", {entry.get('size')} bytes" if entry.get("type") == "file" else "")
    return [f"{entry.get('type')} {owner} {entry.get('mode')}{extra}"]


def _details(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    details = []
    for key in _COMPARED:
        if old.get(key) != new.get(key):
            if key == "sha256":
                details.append("content")
            elif key in ("uid", "gid"):
                name = "owner" if key == "uid" else "group"
                details.append(f"{name} {old.get(name) or old.get(key)} -> {new.get(name) or new.get(key)}")
            else:
                details.append(f"{key} {old.get(key)} -> {new.get(key)}")
    return details


def _diff(path: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """A unified diff when both sides' texts are known (a deleted file: its whole recorded text)."""
    texts = []
    for entry in (old, new):
        if entry is None or entry.get("type") != "file":
            texts.append("" if entry is None else None)
        else:
            texts.append(entry.get("text"))
    if texts[0] is None or texts[1] is None or (old is None and new is None):
        return None
    lines = list(difflib.unified_diff(texts[0].splitlines(keepends=True), texts[1].splitlines(keepends=True),
                                      f"baseline{path}", f"now{path}"))
    if not lines:
        return None
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... {len(lines) - DIFF_LINES} more diff lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def to_json(drift: Drift) -> dict[str, Any]:
    base = drift.baseline
    return {
        "schema_version": SCHEMA_VERSION,
        "status": drift.status.value,
        "baseline": {"file": drift.baseline_file, "created": base.get("created"), "host": base.get("host"),
                     "root": base.get("root")},
        "host": drift.host,
        "changes": [{"path": c.path, "change": c.change, "details": c.details, "diff": c.diff,
                     "before": _public(c.before), "after": _public(c.after),
                     "causes": [issue.to_json() for issue in c.causes]} for c in drift.changes],
        "new_findings": [issue.to_json() for issue in drift.new],
        "resolved_findings": drift.resolved,
        "persisting_findings": [issue.to_json() for issue in drift.persisting],
    }


def _public(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if entry is None else {k: v for k, v in entry.items() if k not in ("text", "mac")}


def render_text(drift: Drift) -> str:
    base = drift.baseline
    host = base.get("host") or {}
    out = [f"Baseline {drift.baseline_file}: taken {base.get('created')} on {host.get('hostname') or '?'} "
           f"({host.get('os') or 'unknown OS'}); now: {drift.host.get('os') or 'unknown OS'}"]
    counts = {kind: sum(1 for c in drift.changes if c.change == kind) for kind in ("deleted", "added", "changed")}
    out.append(", ".join(f"{n} {kind}" for kind, n in counts.items()) if drift.changes else "No drift.")
    tied = {id(issue) for change in drift.changes for issue in change.causes}
    for change in drift.changes:
        out.append(f"\n{change.change.upper():8} {change.path}  ({'; '.join(change.details)})")
        for issue in change.causes:
            out.append(f"         -> {issue.finding.code} {issue.finding.severity.value}: {issue.finding.message}")
            out.append(f"            fix: {drift.hint(issue)}")
        if change.diff:
            out.extend("         " + line for line in change.diff.rstrip("\n").split("\n"))
    loose = [issue for issue in drift.new if id(issue) not in tied]
    if loose:
        out.append("\nNew findings not tied to a recorded file:")
        out.extend(f"  {i.finding.code} {i.finding.severity.value}: {i.finding.message}" for i in loose)
    if drift.resolved:
        out.append("\nResolved since the baseline:")
        out.extend(f"  {f.get('code')} {f.get('severity')}: {f.get('message')}" for f in drift.resolved)
    if drift.persisting:
        out.append("\nAlready in the baseline:")
        out.extend(f"  {i.finding.code} {i.finding.severity.value}: {i.finding.message}" for i in drift.persisting)
    out.append(f"\n{drift.status.value.upper()}: {len(drift.changes)} change(s), "
               f"{len(drift.new)} new finding(s)")
    return "\n".join(out)
