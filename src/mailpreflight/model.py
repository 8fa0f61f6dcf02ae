"""What the pipeline passes between its stages (docs/design.md, "Data model"): where a value came from,
commands found in a unit, their network dependencies, probe results, verdicts, findings, and the views the
renderers print. Frozen dataclasses and StrEnums only; no I/O, and no import from any other layer."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


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

    def fate_of(self, status: int) -> StatusFate | None:
        return next((f for f in self.status_fates if f.low <= status <= f.high), None)


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


@dataclass(frozen=True)
class ScenarioView:
    """One worst case of sa-update's run: how long, which exit status, why."""

    name: str
    seconds: float
    exit_status: int
    detail: str


@dataclass(frozen=True)
class SaChannelView:
    channel: str
    mirrored_by: str
    mirrors: int
    mirrored_by_age_s: float | None
    installed_revision: int | None


@dataclass(frozen=True)
class SaUpdateView:
    version: str | None
    version_source: str
    updatedir: str
    downloader: str
    channels: tuple[SaChannelView, ...]
    worst_cases: tuple[ScenarioView, ...]


@dataclass(frozen=True)
class CommandDepsView:
    command: FoundCommand
    dependencies: tuple[Dependency, ...]
    sa_update: SaUpdateView | None = None
    mentions: tuple[Dependency, ...] = ()  # URLs/host:port seen in its text that nothing says it contacts


@dataclass(frozen=True)
class UnitDepsView:
    """What `deps` prints for one unit."""

    name: str
    fragment_path: str | None
    start_timeout_s: float | None  # None: no start timeout
    start_timeout_from: str
    commands: tuple[CommandDepsView, ...]
    findings: tuple[Finding, ...]
    generated_by: str | None = None  # the generator that made the unit at boot (sysv, postfix instances)

    @property
    def status(self) -> Status:
        return Status.worst(f.severity.status for f in self.findings)


@dataclass(frozen=True)
class ExecView:
    """One Exec command as systemd holds it (and, with --expand-env, as it would run)."""

    key: str  # ExecStartPre, ExecStart, ...
    path: str
    argv: tuple[str, ...]
    ignore_failure: bool
    prefixes: tuple[str, ...]
    source: Source
    argv_expanded: tuple[str, ...] | None = None  # only with --expand-env; None for `:` commands too


@dataclass(frozen=True)
class ShowView:
    """What `show` prints of one loaded unit."""

    name: str
    requested: str
    names: tuple[str, ...]
    load_state: str
    fragment_path: str | None
    dropin_paths: tuple[str, ...]
    masked: bool
    load_error: str | None
    exec_keys: tuple[str, ...]  # Exec keys the unit sets, in systemd's order (a reset key has no command)
    exec: tuple[ExecView, ...]  # in that order
    environment: tuple[tuple[str, str, Source], ...]  # (name, value, where)
    environment_files: tuple[tuple[str, bool, Source], ...]  # (path, optional, where)
    warnings: tuple[str, ...]  # every diagnostic but the load error
    diagnostics: tuple[str, ...]  # "warning: file:line: message", the load error included, then env problems
    systemd_version: int
    files: tuple[tuple[str, str], ...] = ()  # (guest path, text) of the fragment and drop-ins, for the text form
    exec_environment: tuple[tuple[str, str], ...] | None = None  # with --expand-env
    exec_environment_problems: tuple[str, ...] = ()
    generated_by: str | None = None  # the generator that made the unit at boot (sysv, postfix instances)


@dataclass(frozen=True)
class FirewallRule:
    """One outgoing allow rule and who needs it."""

    protocol: str  # tcp or udp
    host: str  # a name or an address, or ANY_HOST
    port: int
    users: tuple[str, ...] = ()  # "spamd.service sa-update"
    why: str = ""  # said beside the rule when the list alone does not explain it (e.g. any host)

    @property
    def any_host(self) -> bool:
        return self.host == ANY_HOST

    @property
    def family(self) -> str | None:
        """4 or 6 for an address literal, None for a name (resolved by the firewall at load time) or any host."""
        try:
            return str(ipaddress.ip_address(self.host).version)
        except ValueError:
            return None

    @property
    def comment(self) -> str:
        """Who needs it; nft keeps at most 128 bytes of comment."""
        text = ", ".join(dict.fromkeys(self.users)).replace('"', "'")
        return text if len(text.encode()) <= 120 else text.encode()[:116].decode("utf-8", "ignore") + " ..."


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

    machine_id: str | None
    hostname: str | None
    os_name: str | None  # os-release's PRETTY_NAME


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
