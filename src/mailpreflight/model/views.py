"""The views `deps`, `show` and `firewall` print (docs/design.md, "Data model")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailpreflight.model.analysis import ANY_HOST, Dependency, FoundCommand, Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.model.outcome import Finding, Status


@fast_init
@dataclass(frozen=True)
class ScenarioView:
    """One worst case of sa-update's run: how long, which exit status, why."""

    name: str
    seconds: float
    exit_status: int
    detail: str


@fast_init
@dataclass(frozen=True)
class SaChannelView:
    """One channel of an sa-update command as `deps` shows it: its MIRRORED.BY path, how many mirrors are known, the
    list's age in seconds (None: no usable cached file) and the installed rule revision."""

    channel: str
    mirrored_by: str
    mirrors: int
    mirrored_by_age_s: float | None
    installed_revision: int | None


@fast_init
@dataclass(frozen=True)
class SaUpdateView:
    """What `deps` shows of an sa-update command's plan: the SpamAssassin version and where it was read, the update
    directory, the downloader, each channel, and the worst cases of its run."""

    version: str | None
    version_source: str
    updatedir: str
    downloader: str
    channels: tuple[SaChannelView, ...]
    worst_cases: tuple[ScenarioView, ...]


@fast_init
@dataclass(frozen=True)
class CommandDepsView:
    """One command of a unit as `deps` shows it: the endpoints it needs, the sa-update plan when it is sa-update, and
    the endpoints its text only mentions."""

    command: FoundCommand
    dependencies: tuple[Dependency, ...]
    sa_update: SaUpdateView | None = None
    mentions: tuple[Dependency, ...] = ()  # URLs/host:port seen in its text that nothing says it contacts


@fast_init
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
