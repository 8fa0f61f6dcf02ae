"""What `explain` found: systemd's record of a start and the diagnosis (docs/design.md, "Data model")."""

from __future__ import annotations

from dataclasses import dataclass

from mailpreflight.model.check import Report


@dataclass(frozen=True)
class ExecRun:
    """One Exec command as systemd holds it, with what happened the last time it ran."""

    path: str
    argv: tuple[str, ...]
    ignore: bool
    flags: tuple[str, ...]
    start_us: int  # realtime, 0 = never started
    exit_us: int
    pid: int
    code: int  # CLD_EXITED, CLD_KILLED, CLD_DUMPED, 0 = still running or never ran
    status: int  # exit status or signal number


@dataclass(frozen=True)
class Failure:
    """The first start-path command that failed in the last start attempt, as systemd recorded it."""

    key: str
    index: int
    run: ExecRun
    cause: str  # exit-code, not-found, timeout, signal, core-dump
    seconds: float | None


@dataclass(frozen=True)
class Explanation:
    """What `explain` found: systemd's record, the journal, a fresh check, and the diagnosis."""

    unit: str
    failure: Failure | None
    cause: str
    exit_status: int | None
    signal: str | None
    meaning: str
    journal: tuple[str, ...]
    differences: tuple[str, ...]
    report: Report | None
    diagnosis: str
