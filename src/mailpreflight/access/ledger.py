"""What one run may read and list of a root, all reads together, and what the gate refused (docs/design.md,
"Layers and their rules"): a `Ledger` is shared by a `RootFS` and its views (`GeneratedFS`); cli/fanout.py's
workers each draw into theirs from the run's budget as they read (`draw`, `want`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

READ_TOTAL_LIMIT = 64 * 1024 * 1024  # bytes read from one root in one run, all together (a Debian mail root: 7 MiB)
LISTDIR_TOTAL_LIMIT = 500_000  # directory entries listed in one run, all together (a Debian mail root: 4,000)


@dataclass(frozen=True)
class Refusal:
    """One refused read, as `refusals` lists them."""

    path: str  # guest path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Ledger:
    """What one run has read from a root: the budgets no guest may exhaust, and what was refused."""

    bytes_left: int = READ_TOTAL_LIMIT  # file bytes all reads together may still return
    entries_left: int = LISTDIR_TOTAL_LIMIT  # directory entries all listings together may still return
    refused: dict[str, str] = field(default_factory=dict)  # guest path -> why, in order
    # In a worker of cli/fanout.py: more of the run's budgets (bytes, entries wanted -> granted) from what the
    # workers share; None in one process, where this ledger holds the whole run's.
    draw: Callable[[int, int], tuple[int, int]] | None = None

    def want(self, nbytes: int = 0, entries: int = 0) -> None:
        """At least this much left here, if the run still has it (a worker draws it; one process has it all)."""
        if self.draw is None:
            return
        more_bytes, more_entries = max(0, nbytes - self.bytes_left), max(0, entries - self.entries_left)
        if more_bytes or more_entries:
            granted_bytes, granted_entries = self.draw(more_bytes, more_entries)
            self.bytes_left += granted_bytes
            self.entries_left += granted_entries
