"""Where a value came from, the commands a unit's start path runs and the network endpoints they need
(docs/design.md, "Data model")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mailpreflight.model.fastinit import fast_init


@fast_init
@dataclass(frozen=True)
class Source:
    """Where a value came from, as the guest sees the path.

    `line` is where the assignment starts (what an admin looks for); for a continued line systemd's own
    messages name the last physical line instead, kept in `end_line`.
    """

    file: str
    line: int
    end_line: int | None = None

    @property
    def systemd_line(self) -> int:
        return self.end_line if self.end_line is not None else self.line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class DepKind(StrEnum):
    DNS = "dns"
    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    UDP = "udp"


class Role(StrEnum):
    START = "start"  # needed for the unit to start
    RUNTIME = "runtime"  # needed while it runs


class Confidence(StrEnum):
    HIGH = "high"  # a rule that knows the tool
    LOW = "low"  # a URL or host:port merely seen in an unknown command's arguments: mentioned, not contacted


ANY_HOST = "*"  # a Dependency's host when it can be any host: postfix delivering straight to each recipient's MX


@fast_init
@dataclass(frozen=True)
class Dependency:
    """One network endpoint. `target`: "TXT 1.0.4.updates.spamassassin.org", a URL, or "host:port"."""

    kind: DepKind
    target: str
    role: Role
    learned_from: str  # "file:line", "sa-update default", ...
    confidence: Confidence = Confidence.HIGH
    note: str = ""

    @property
    def any_host(self) -> bool:
        """Any host at all (e.g. `*:25`): allowed by port in a firewall, never probed."""
        return self.host == ANY_HOST

    @property
    def host(self) -> str:
        """The host name (or address) this dependency reaches."""
        if self.kind is DepKind.DNS:
            return self.target.split(" ", 1)[-1]
        if "://" in self.target:
            netloc = self.target.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
            if netloc.startswith("["):
                return netloc[1:].split("]", 1)[0]
            return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
        host, _, _ = self.target.rpartition(":")
        return host.strip("[]")


class Fate(StrEnum):
    """What the script (or `sh -c` line) that runs a command does when the command exits with some status."""

    GOES_ON = "goes on"  # the script carries on: what it runs next decides its exit
    EXITS = "exits"  # the script exits at once with `exit_status` (0: success)
    PASSES = "exits with it"  # the script exits at once with the command's own status (`exit $rc`)
    UNKNOWN = "unknown"  # the script looks at the status in a way not read statically


@dataclass(frozen=True)
class StatusFate:
    """For the exit statuses low..high of a command: the script's fate, and where the script decides it."""

    low: int
    high: int
    fate: Fate
    exit_status: int | None = None  # with EXITS
    where: str = ""  # "file:line" of the statement that looks at the status

    @property
    def fails_on_any(self) -> bool:
        """Does the script fail for some status of the range (`exit 1`, or `exit $rc` past 0)?"""
        return (self.fate is Fate.EXITS and self.exit_status != 0) or (self.fate is Fate.PASSES and self.high > 0)

    def script_exit(self, status: int) -> int | None:
        """The status the script exits with when the command exits `status`; None: it goes on, or unknown."""
        return self.exit_status if self.fate is Fate.EXITS else status if self.fate is Fate.PASSES else None

    def __str__(self) -> str:
        statuses = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        outcome = f"exits {self.exit_status}" if self.fate is Fate.EXITS else self.fate.value
        return f"{statuses}: {outcome}" + (f" ({self.where})" if self.where else "")


@fast_init
@dataclass(frozen=True)
class FoundCommand:
    """A program the unit's start path runs, wherever it was found (Exec line, `sh -c`, a script)."""

    tool: str  # the program's base name: "sa-update"
    argv: tuple[str, ...]  # as it will run, $VARS expanded where the environment says
    key: str  # ExecStartPre, ExecStart, ...
    source: Source  # the Exec line, or the script line it was found on
    tolerated: bool  # can it fail (exit status) without failing the unit?
    tolerated_why: tuple[str, ...] = ()  # "'-' prefix", "'|| true'", "if condition", ...
    via: tuple[str, ...] = ()  # how it was reached: "bash -c", "runuser", "/usr/sbin/spamassassin-maint:12"
    user: str | None = None  # who runs it when known (User=, runuser -u, su); None = the unit's default
    env: Mapping[str, str] = field(default_factory=dict)  # the environment it sees, as far as known
    script: str | None = None  # the guest path of the shell script this is, when it was read and followed
    # When the script looks at the command's exit status itself (`case $?`, `[ $? -le 1 ] || exit 1`, ...): what
    # it does for each status, 0-255 covered; () when it does not (then `tolerated` says it all).
    status_fates: tuple[StatusFate, ...] = ()
    # For a script that was read: where a guard the tree decides ends it, e.g. "exits 0 at
    # /usr/sbin/spamassassin-maint:83: `command -v gpg` fails in this tree" (what follows never runs).
    ends: str = ""
    # The longest it can run: a wrapper around it kills it then (`timeout 20`, `mailpreflight guard --timeout 20`),
    # in seconds; None when nothing bounds it. `bound_by` says which wrapper.
    bound: float | None = None
    bound_by: str = ""

    def fate_of(self, status: int) -> StatusFate | None:
        return next((f for f in self.status_fates if f.low <= status <= f.high), None)
