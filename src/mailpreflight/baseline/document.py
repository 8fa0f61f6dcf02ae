"""A `snapshot` baseline read back: parsed once into typed records, every field checked for type and range.

A baseline travels through tickets and mail; it may have been edited, damaged or made up. Whatever is not as
`snapshot` writes it (docs/schemas/snapshot.schema.json) is refused in one line naming the file, the line and
the entry, before drift or restore look at it.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mailpreflight.access.bounded import read_regular_file
from mailpreflight.baseline.digestkey import recorded_digest
from mailpreflight.baseline.snapshot import KIND, MAX_ENTRIES, SCHEMA_VERSION
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import EntryType, FileRecord, Finding, HostRecord, Severity, TrackedFindingView

BASELINE_LIMIT = 64 * 1024 * 1024  # real ones: a few MiB (texts only of small world-readable files)
ID_MAX = 2**32 - 2  # (uid_t)-1 is no user
SIZE_MAX = 2**63 - 1
PATH_MAX = 4095  # bytes, without the terminating NUL
HINT = "use an untouched copy of the baseline, or take a new one with `mailpreflight snapshot`"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_MODE = re.compile(r"[0-7]{4}")
_CODE = re.compile(r"MP[0-9]{3}")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}\Z")
_TOP = frozenset({"schema_version", "kind", "created", "mailpreflight_version", "root", "host", "truncated", "digest",
                  "salt", "files", "findings"})
_REQUIRED = _TOP - {"digest", "salt"}
_COMMON = ("type", "mode", "uid", "gid", "owner", "group")
_FIELDS = {  # what an entry of each type holds (mac besides, when the baseline has a digest key)
    EntryType.FILE: frozenset({*_COMMON, "size", "sha256", "text", "text_omitted"}),
    EntryType.SYMLINK: frozenset({*_COMMON, "target"}),
    EntryType.DIR: frozenset(_COMMON),
    EntryType.OTHER: frozenset(_COMMON),
}
_KEYED = {kind: fields | {"mac"} for kind, fields in _FIELDS.items()}
_TYPES = {kind.value: kind for kind in EntryType}
_SEVERITIES = {severity.value: severity for severity in Severity}
_FINDING = ("code", "severity", "unit", "subject", "message", "hint", "evidence", "paths")


@dataclass(frozen=True)
class Baseline:
    """A checked baseline document."""

    file: str  # where it was read from
    created: str
    mailpreflight_version: str
    root: str  # how it names the system it was taken of
    host: HostRecord
    truncated: bool
    key_id: str | None  # the digest key's id (digestkey.py); None in a baseline from before digest keys,
    salt: str | None  # whose digests are SHA-256 of this salt and the content
    files: Mapping[str, FileRecord]  # guest path -> what it was
    findings: tuple[TrackedFindingView, ...]


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_baseline(path: str) -> Baseline:
    try:
        text = read_regular_file(path, BASELINE_LIMIT).decode("utf-8")
        document = json.loads(text, parse_constant=_not_json)
    except OSError as exc:
        raise MailpreflightError(f"cannot read baseline {path}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, NaN/Infinity, nesting or numbers too big
        line = getattr(exc, "lineno", 1)
        raise MailpreflightError(f"{path}:{line}: not a mailpreflight snapshot (invalid JSON)") from exc
    return parse_baseline(path, document, text)


class _Invalid(Exception):
    """A part of the document that is not as `snapshot` writes it: where (keys from the top) and what."""

    def __init__(self, where: tuple[str | int, ...], what: str) -> None:
        super().__init__(what)
        self.where = where
        self.what = what


def parse_baseline(path: str, document: object, text: str = "") -> Baseline:
    """`document` as json.loads made it of `text` (the text only says on which line a bad part is)."""
    if not isinstance(document, dict) or document.get("kind") != KIND or not isinstance(document.get("files"),
                                                                                       dict):
        raise MailpreflightError(f"{path}:1: not a mailpreflight snapshot (take one with `mailpreflight snapshot`)")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise MailpreflightError(f"{path}:1: snapshot schema_version {document.get('schema_version')!r} is not "
                                 f"supported (this mailpreflight reads {SCHEMA_VERSION})")
    key_id, salt = recorded_digest(path, document)
    try:
        return _baseline(path, document, key_id, salt)
    except _Invalid as bad:
        raise MailpreflightError(f"{_name(bad.where)}: {bad.what}: not as `snapshot` writes it", file=path,
                                 line=_line(text, bad.where), hint=HINT) from None


def _name(where: tuple[str | int, ...]) -> str:
    """files["/etc/pam.d/imap"]["mode"], findings[3]["code"], truncated"""
    first, *rest = where
    return str(first) + "".join(f"[{json.dumps(key)[:200]}]" if isinstance(key, str) else f"[{key}]" for key in rest)


def _baseline(path: str, document: dict[str, object], key_id: str | None, salt: str | None) -> Baseline:
    unknown, missing = sorted(set(document) - _TOP), sorted(_REQUIRED - set(document))
    if unknown or missing:
        raise _Invalid(((unknown or missing)[0],), "unknown key" if unknown else "missing")
    created, version, root = (_string(document, key, ()) for key in ("created", "mailpreflight_version", "root"))
    truncated = document["truncated"]
    if not isinstance(truncated, bool):
        raise _Invalid(("truncated",), f"{_shown(truncated)}, not true or false")
    files, findings = document["files"], document["findings"]
    if not isinstance(files, dict):  # parse_baseline said so already
        raise _Invalid(("files",), "not an object")
    if len(files) > MAX_ENTRIES:
        raise _Invalid(("files",), f"{len(files)} paths, more than a snapshot records ({MAX_ENTRIES})")
    if not isinstance(findings, list):
        raise _Invalid(("findings",), f"{_shown(findings)}, not a list")
    return Baseline(path, created, version, root, _host(document["host"]), truncated, key_id, salt,
                    MappingProxyType({name: _entry(name, entry, key_id is not None) for name, entry in files.items()}),
                    tuple(_finding(index, finding) for index, finding in enumerate(findings)))


def _host(host: object) -> HostRecord:
    if not isinstance(host, dict) or host.keys() != {"machine_id", "hostname", "os"}:
        raise _Invalid(("host",), "not an object of machine_id, hostname and os")
    machine_id, hostname, os_name = (_optional(host, key, ("host",)) for key in ("machine_id", "hostname", "os"))
    # snapshot records a valid id or null (units/machineid.py); older versions recorded the file as it was
    # ("uninitialized", anything a guest wrote): unknown, never shown or compared raw
    return HostRecord(machine_id if machine_id and _MACHINE_ID.match(machine_id) else None, hostname, os_name)


def _entry(name: str, entry: object, keyed: bool) -> FileRecord:
    where: tuple[str | int, ...] = ("files", name)
    if not name.startswith("/") or name.startswith("//") or "\0" in name or posixpath.normpath(name) != name \
            or not _unicode(name) or len(name.encode()) > PATH_MAX:
        raise _Invalid(where, "not an absolute, normalized path")
    if not isinstance(entry, dict):
        raise _Invalid(where, f"{_shown(entry)}, not an object")
    kind = _TYPES.get(entry["type"]) if isinstance(entry.get("type"), str) else None
    if kind is None:
        raise _Invalid((*where, "type"), f"{_shown(entry.get('type'))}, not one of {', '.join(EntryType)}")
    fields = _KEYED[kind] if keyed else _FIELDS[kind]
    if entry.keys() != fields:
        extra, missing = sorted(set(entry) - fields), sorted(fields - set(entry))
        raise _Invalid(where, f"a {kind.value} record with {', '.join(extra)}" if extra else
                       f"a {kind.value} record without {', '.join(missing)}")
    mode = entry["mode"]
    if not isinstance(mode, str) or not _MODE.fullmatch(mode):
        raise _Invalid((*where, "mode"), f"{_shown(mode)}, not four octal digits")
    uid = _number(entry, "uid", where, ID_MAX, "a user or group id")
    gid = _number(entry, "gid", where, ID_MAX, "a user or group id")
    owner, group = _optional(entry, "owner", where), _optional(entry, "group", where)
    mac = _digest(entry, "mac", where) if keyed else None
    if kind is EntryType.SYMLINK:
        target = _optional(entry, "target", where)
        if target is not None and (not target or "\0" in target or len(target.encode()) > PATH_MAX):
            raise _Invalid((*where, "target"), f"{_shown(target)}, not a symlink's target")
        return FileRecord(kind, mode, uid, gid, owner, group, target=target, mac=mac)
    if kind is EntryType.FILE:
        return FileRecord(kind, mode, uid, gid, owner, group, size=_number(entry, "size", where, SIZE_MAX, "a size"),
                          sha256=_digest(entry, "sha256", where), text=_optional(entry, "text", where),
                          text_omitted=_optional(entry, "text_omitted", where), mac=mac)
    return FileRecord(kind, mode, uid, gid, owner, group, mac=mac)


def _finding(index: int, finding: object) -> TrackedFindingView:
    where: tuple[str | int, ...] = ("findings", index)
    if not isinstance(finding, dict) or finding.keys() != set(_FINDING):
        raise _Invalid(where, f"not an object of {', '.join(_FINDING)}")
    code, severity, unit, subject, message, hint = (_string(finding, key, where) for key in _FINDING[:6])
    if not _CODE.fullmatch(code):
        raise _Invalid((*where, "code"), f"{_shown(code)}, not a finding code (MPnnn)")
    if severity not in _SEVERITIES:
        raise _Invalid((*where, "severity"), f"{_shown(severity)}, not one of {', '.join(Severity)}")
    return TrackedFindingView(Finding(code, _SEVERITIES[severity], unit, message, hint,
                                      _strings(finding, "evidence", where)), subject, _strings(finding, "paths", where))


def _shown(value: object) -> str:
    """A value as JSON, cut short (control characters escaped)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:36] + " ..."


def _unicode(text: str) -> bool:
    """No lone surrogates (a \\ud800 escape): `snapshot` writes UTF-8 only."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(record: dict[str, object], key: str, where: tuple[str | int, ...]) -> str:
    """`record[key]`, a string; an error names it as `where` + key."""
    value = record[key]
    if not isinstance(value, str) or not _unicode(value):
        raise _Invalid((*where, key), _not_text(value))
    return value


def _not_text(value: object) -> str:
    return "not UTF-8 text" if isinstance(value, str) else f"{_shown(value)}, not a string"


def _optional(record: dict[str, object], key: str, where: tuple[str | int, ...]) -> str | None:
    return None if record[key] is None else _string(record, key, where)


def _strings(record: dict[str, object], key: str, where: tuple[str | int, ...]) -> tuple[str, ...]:
    value = record[key]
    if not isinstance(value, list):
        raise _Invalid((*where, key), f"{_shown(value)}, not a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _unicode(item):
            raise _Invalid((*where, key, index), _not_text(item))
    return tuple(value)


def _number(record: dict[str, object], key: str, where: tuple[str | int, ...], most: int, what: str) -> int:
    value = record[key]
    if type(value) is not int or not 0 <= value <= most:
        raise _Invalid((*where, key), f"{_shown(value)}, not {what}")
    return value


def _digest(record: dict[str, object], key: str, where: tuple[str | int, ...]) -> str | None:
    """sha256 and mac: 64 hex digits (restore compares them with hmac.compare_digest, which takes ASCII only)."""
    value = record[key]
    if value is not None and (not isinstance(value, str) or not _HEX_DIGEST.fullmatch(value)):
        raise _Invalid((*where, key), f"{_shown(value)}, not a hex digest")
    return value


def _line(text: str, where: tuple[str | int, ...]) -> int | None:
    """The line of the part `where` names in the document's text, or None when it cannot be found. A key is found
    as the first `"key":` after its parent's start (inside a string a quote is escaped, so no value matches); an
    index by stepping over the list's items."""
    position = 0
    decoder = json.JSONDecoder()
    for key in where:
        if isinstance(key, str):
            found = [at for escaped in (False, True)  # as snapshot writes it, or with \u escapes
                     if (at := text.find(json.dumps(key, ensure_ascii=escaped) + ":", position)) >= 0]
            if not found:
                return None
            position = min(found)
            continue
        start = text.find("[", position)
        if start < 0:
            return None
        position = start + 1
        try:
            for _ in range(key + 1):
                while text[position] in " \t\r\n,":
                    position += 1
                item = position
                _, position = decoder.raw_decode(text, position)
        except (ValueError, IndexError):
            return None
        position = item
    return text.count("\n", 0, position) + 1
