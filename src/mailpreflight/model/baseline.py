"""Baselines and drift: a path as `snapshot` records it, a host, and what `drift` found (docs/design.md, "Data
model")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailpreflight.model.outcome import Finding, Status


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class FileRecord:
    """One path as `snapshot` records it (docs/schemas/snapshot.schema.json): a baseline's entry, or the path
    now. `target` is a symlink's; `size`, `sha256`, `text`, `text_omitted` a file's."""

    kind: EntryType
    mode: str  # four octal digits: "0644"
    uid: int
    gid: int
    owner: str | None  # names from the root's own passwd and group
    group: str | None
    target: str | None = None
    size: int | None = None
    sha256: str | None = None  # the content's digest, keyed (baseline/digestkey.py)
    text: str | None = None  # small world-readable text files, secrets redacted
    text_omitted: str | None = None  # why the text is not recorded
    mac: str | None = None  # of the path and the fields; None in a baseline from before digest keys

    def fields(self) -> dict[str, object]:
        """The entry as `snapshot` writes it, in its order, without the MAC (what the MAC covers)."""
        fields: dict[str, object] = {"type": self.kind.value, "mode": self.mode, "uid": self.uid, "gid": self.gid,
                                     "owner": self.owner, "group": self.group}
        if self.kind is EntryType.SYMLINK:
            fields["target"] = self.target
        elif self.kind is EntryType.FILE:
            fields.update(size=self.size, sha256=self.sha256, text=self.text, text_omitted=self.text_omitted)
        return fields


@dataclass(frozen=True)
class HostRecord:
    """Which host a root is (or a baseline was taken on)."""

    machine_id: str | None  # 32 lowercase hex digits (units/machineid.py), or None: unknown
    hostname: str | None
    os_name: str | None  # os-release's PRETTY_NAME

    def fields(self) -> dict[str, str | None]:
        """The host as `snapshot` writes it (and drift's JSON shows it)."""
        return {"machine_id": self.machine_id, "hostname": self.hostname, "os": self.os_name}


@dataclass(frozen=True)
class TrackedFindingView:
    """A finding as drift tracks it: `code` and `subject` are its stable key, `paths` the files that decide it."""

    finding: Finding
    subject: str
    paths: tuple[str, ...]


class ChangeKind(StrEnum):
    DELETED = "deleted"
    ADDED = "added"
    CHANGED = "changed"


@dataclass(frozen=True)
class ChangeView:
    """One path that changed since the baseline, and the new findings it helps cause."""

    path: str
    change: ChangeKind
    details: tuple[str, ...]  # "mode 0644 -> 0600", "content", or what an added/deleted path is
    diff: str | None  # unified, when both texts are known
    before: FileRecord | None
    after: FileRecord | None
    causes: tuple[TrackedFindingView, ...]


@dataclass(frozen=True)
class DriftView:
    """What `drift` found (built by baseline/drift.py)."""

    status: Status
    baseline_file: str
    baseline_created: str
    baseline_host: HostRecord
    baseline_root: str  # how the baseline names the system it was taken of
    host: HostRecord
    root: str  # the tree compared: "/" or --root DIR (restore's fix names it)
    changes: tuple[ChangeView, ...]
    new: tuple[TrackedFindingView, ...]
    loose: tuple[TrackedFindingView, ...]  # the new findings no change causes
    resolved: tuple[TrackedFindingView, ...]  # the baseline's, gone now
    persisting: tuple[TrackedFindingView, ...]
