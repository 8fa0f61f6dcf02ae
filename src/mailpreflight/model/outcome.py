"""A verb's outcome and the one exit-code table; findings and their severity (docs/design.md, "Data model")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mailpreflight.model.fastinit import fast_init


class Status(StrEnum):
    """The outcome of a verb, monitoring-plugin style. The one exit-code table is `exit_code`."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        """Worst state wins (nagiosplugin): UNKNOWN > CRITICAL > WARNING > OK; OK when there is none."""
        return max(statuses, key=lambda status: _EXIT_CODES[status], default=cls.OK)


_EXIT_CODES = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def status(self) -> Status:
        """What a finding of this severity makes of a verb's outcome (info changes nothing)."""
        return {Severity.INFO: Status.OK, Severity.WARNING: Status.WARNING, Severity.CRITICAL: Status.CRITICAL}[self]


@fast_init
@dataclass(frozen=True)
class Finding:
    """A risk with a stable code; `evidence` says what was seen and where."""

    code: str
    severity: Severity
    unit: str
    message: str
    hint: str
    evidence: tuple[str, ...] = ()
