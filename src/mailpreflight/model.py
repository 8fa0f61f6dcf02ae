"""What the pipeline passes between its stages: commands found in a unit, their network dependencies, and
findings. Frozen dataclasses and StrEnums only; no I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from mailpreflight.units.syntax import Source

if TYPE_CHECKING:
    from mailpreflight.auth.check import AuthReport


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
    LOW = "low"  # a URL or host:port merely seen in an unknown command's arguments


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


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Finding:
    """A risk with a stable code; `evidence` says what was seen and where."""

    code: str
    severity: Severity
    unit: str
    message: str
    hint: str
    evidence: tuple[str, ...] = ()


class ProbeStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. Probes never raise: a network failure is a result with evidence.

    `error` classes: nxdomain, no-answer, servfail, dns-refused, dns-timeout, name-not-resolved, refused,
    blocked-locally, connect-timeout, read-timeout, unreachable, tls, http-status, too-large, redirect-loop,
    udp-no-reply, deadline, error.
    """

    kind: DepKind
    target: str
    status: ProbeStatus
    error: str | None
    detail: str
    elapsed_s: float
    answers: tuple[str, ...] = ()  # TXT strings, addresses, or the final URL and status of an HTTP probe

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.OK


class Prediction(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # it succeeds, but some endpoints are dead
    FAIL = "fail"


@dataclass(frozen=True)
class CommandVerdict:
    command: FoundCommand
    predicted: Prediction
    predicted_exit: str  # the exit status class expected: "0", "1", "0|1", "4", "non-zero"
    predicted_seconds: float  # worst case under what the probes saw, modelled on the tool's own timeouts
    reason: str
    probes: tuple[str, ...] = ()  # "kind target" of the probes this verdict rests on


@dataclass(frozen=True)
class UnitVerdict:
    name: str
    start_predicted: Prediction  # ok or fail
    reason: str
    commands: tuple[CommandVerdict, ...]


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Report:
    status: Status
    units: tuple[UnitVerdict, ...]
    probes: tuple[ProbeResult, ...]
    findings: tuple[Finding, ...]
    elapsed_s: float
    auth: AuthReport | None = None  # the mail-authentication paths, when checked
