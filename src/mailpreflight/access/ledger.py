"""What one run may read and list of a root, all reads together, and what the gate refused (docs/design.md,
"Layers and their rules"): a `Ledger` is shared by a `RootFS` and its views (`GeneratedFS`), and split between
cli/fanout.py's workers."""

from __future__ import annotations

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
