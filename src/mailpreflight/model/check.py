"""What `check` passes on: probe results, verdicts, the mail login paths, the report (docs/design.md, "Data
model")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailpreflight.model.analysis import DepKind, FoundCommand
from mailpreflight.model.outcome import Finding, Status


class ProbeStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"


class ProbeError(StrEnum):
    """Why a probe failed, in classes an admin can act on (docs/check.md lists what each means)."""

    NXDOMAIN = "nxdomain"
    NO_ANSWER = "no-answer"
    SERVFAIL = "servfail"
    DNS_REFUSED = "dns-refused"
    DNS_TIMEOUT = "dns-timeout"
    NAME_NOT_RESOLVED = "name-not-resolved"
    REFUSED = "refused"
    BLOCKED_LOCALLY = "blocked-locally"
    CONNECT_TIMEOUT = "connect-timeout"
    READ_TIMEOUT = "read-timeout"
    UNREACHABLE = "unreachable"
    TLS = "tls"
    HTTP_STATUS = "http-status"
    TOO_LARGE = "too-large"
    REDIRECT_LOOP = "redirect-loop"
    UDP_NO_REPLY = "udp-no-reply"
    DEADLINE = "deadline"
    ERROR = "error"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. Probes never raise: a network failure is a result with evidence (`error`)."""

    kind: DepKind
    target: str
    status: ProbeStatus
    error: ProbeError | None
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
    UNKNOWN = "unknown"  # cannot be known statically (e.g. a script's own check of the status); the reason says why


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
    start_predicted: Prediction  # ok, fail or unknown
    reason: str
    commands: tuple[CommandVerdict, ...]
    fix: str = ""  # a command that fixes this cause, when the cause has its own ("" = the general advice)


@dataclass(frozen=True)
class PamLineView:
    control: str
    module: str
    args: tuple[str, ...]
    source: str
    module_path: str | None
    via: tuple[str, ...]


@dataclass(frozen=True)
class PamView:
    """The PAM stack libpam will build for one service, as far as the root shows it."""

    file: str | None
    searched: tuple[str, ...]
    shadowed: tuple[str, ...]
    fallback_other: bool
    other_file: str | None
    types_from_other: tuple[str, ...]
    stacks: tuple[tuple[str, tuple[PamLineView, ...]], ...]  # (pam type, lines), in libpam's type order
    usable: bool
    auth_modules: str  # the auth stack's modules, one line ("pam_unix.so, pam_deny.so")


@dataclass(frozen=True)
class AuthPathView:
    """One mail login path (consumer -> method -> PAM service) and whether it has a critical finding."""

    unit: str
    consumer: str
    protocol: str
    method: str
    pam_service: str | None
    evidence: tuple[str, ...]
    problem: str | None
    pam: PamView | None
    ok: bool


@dataclass(frozen=True)
class Report:
    status: Status
    units: tuple[UnitVerdict, ...]
    probes: tuple[ProbeResult, ...]
    findings: tuple[Finding, ...]
    elapsed_s: float
    auth: tuple[AuthPathView, ...] | None = None  # the mail-authentication paths, when checked
