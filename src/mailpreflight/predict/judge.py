"""`check`: probe every dependency of the units' start paths (concurrently, one deadline), predict what each
command and each unit will do, and say why."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import TextIO

from mailpreflight.auth.check import AuthReport, auth_view
from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.deps.base import command_role
from mailpreflight.deps.risks import CommandDeps
from mailpreflight.deps.startup import SaUpdateLocal
from mailpreflight.model import (
    CommandVerdict,
    DepKind,
    Fate,
    Finding,
    FoundCommand,
    Prediction,
    ProbeError,
    ProbeResult,
    Report,
    Role,
    Severity,
    Status,
    UnitVerdict,
)
from mailpreflight.predict import startup
from mailpreflight.predict.saupdate_live import SaUpdateProbe, chain_key
from mailpreflight.probes import dns as dnsprobe
from mailpreflight.probes.runner import ProbeRunner
from mailpreflight.probes.tasks import probe_task
from mailpreflight.units.unit import service_type


@dataclass(frozen=True)
class CheckOptions:
    timeout: float = 5.0  # per probe
    deadline: float = 60.0  # for the whole check
    progress: TextIO | None = None


def check(results: Iterable[UnitDeps], options: CheckOptions, resolver: dnsprobe.ResolverConfig,
          auth: AuthReport | None = None) -> Report:
    """`results` may be a generator: each unit's probes start as soon as it is analysed, while the next units
    are (docs/design.md, "Performance"). `auth`: the static mail-authentication analysis, whose findings join the
    report's."""
    started = time.monotonic()
    runner = ProbeRunner(options.deadline, options.progress, probe_timeout=options.timeout)
    analysed: list[UnitDeps] = []
    try:
        # Everything static at once: the sa-update chains add what depends on earlier answers.
        sa_probes: dict[int, SaUpdateProbe] = {}
        chains: dict[Hashable, SaUpdateProbe] = {}  # one per distinct sa-update chain, however many units run it
        bodies: dict[str, bytes | None] = {}  # MIRRORED.BY and .asc files fetched, shared by every chain
        for result in results:
            analysed.append(result)
            tasks: dict[tuple[DepKind, str], Callable[[], ProbeResult]] = {}
            for index, entry in enumerate(result.commands):
                if entry.plan is not None:
                    local = result.startup.sa_update_for(index) if result.startup else None
                    trust = local.trust if local else None
                    key = chain_key(entry.plan, trust)
                    probe = chains.get(key)
                    if probe is None:
                        probe = chains[key] = SaUpdateProbe(entry.plan, runner, resolver, options.timeout, trust,
                                                            bodies)
                        tasks.update(probe.prefetch())
                    sa_probes[id(entry)] = probe
                    continue
                for dep in entry.dependencies:
                    if not dep.any_host:  # `*:25`: any host, nothing to probe
                        tasks[(dep.kind, dep.target)] = probe_task(dep, resolver, options.timeout)
            runner.start(tasks)
        runner.run({})  # one timeout for everything known before the first answer
        # Then every sa-update chain's next steps, all chains in one round (docs/design.md, "Performance"): as
        # many rounds as steps in a chain, whatever the number of units and mirrors.
        while wanted := {key: task for probe in chains.values() for key, task in probe.pending().items()}:
            runner.run(wanted)
        units = tuple(_unit(result, runner, sa_probes) for result in analysed)
    finally:
        runner.close()
    probes = tuple(runner.results.values())
    findings = (*_findings(analysed, units, runner), *_gpg_findings(analysed, sa_probes),
                *(auth.findings() if auth else ()))
    return Report(_status(units, findings), units, probes, findings, round(time.monotonic() - started, 2),
                  auth_view(auth) if auth else None)


def _within_bound(verdict: CommandVerdict) -> CommandVerdict:
    """A command a wrapper stops (timeout N, the guard) runs at most that long: past it, it is killed (timeout's
    124; the guard itself exits 0 unless --strict, which `tolerated` already says)."""
    bound = verdict.command.bound
    if bound is None or verdict.predicted_seconds <= bound:
        return verdict
    return replace(verdict, predicted=Prediction.FAIL, predicted_exit="124", predicted_seconds=bound,
                   reason=f"stopped by {verdict.command.bound_by} after {bound:g} s: {verdict.reason}")


def _unit(result: UnitDeps, runner: ProbeRunner, sa_probes: dict[int, SaUpdateProbe]) -> UnitVerdict:
    verdicts = []
    facts, kind = result.startup, service_type(result.unit).name
    sa_runs: list[tuple[SaUpdateLocal, CommandVerdict]] = []  # sa-update runs of the start path
    stops: dict[int, str] = {}  # verdicts of commands that stop on their configuration at once -> the fix
    for index, entry in enumerate(result.commands):
        config_error = facts.config_error_for(index) if facts else None
        if config_error is not None:  # it stops on its configuration, whatever the network
            verdicts.append(CommandVerdict(entry.command, Prediction.FAIL, str(config_error.status), 0.0,
                                           f"{config_error.why}: it prints '{config_error.message}' and exits "
                                           f"{config_error.status}"))
            stops[id(verdicts[-1])] = config_error.hint
            continue
        if not entry.dependencies and id(entry) not in sa_probes:
            continue  # needs no network: nothing to predict here
        probe = sa_probes.get(id(entry))
        verdict = probe.evaluate(entry.command) if probe else _generic(entry, runner)
        local = facts.sa_update_for(index) if facts else None
        if facts and local:
            verdict = startup.before_network(verdict, local, facts)
        verdict = _within_bound(verdict)
        if facts and local and command_role(entry.command, kind) is Role.START and entry.command.key != "ExecStart":
            sa_runs.append((local, verdict))
        verdicts.append(verdict)
    timeout = result.timeout
    unknown: str | None = None  # the first start-path command whose effect the script decides in a way not read
    for verdict in verdicts:
        command = verdict.command
        if command_role(command, kind) is not Role.START:
            if id(verdict) in stops and not command.tolerated:
                return UnitVerdict(result.unit.id, Prediction.FAIL,  # the daemon itself dies at once
                                   f"{command.tool} ({command.source}) exits {verdict.predicted_exit} right after "
                                   f"it starts: {verdict.reason}", tuple(verdicts), stops[id(verdict)])
            continue
        if timeout.limited and verdict.predicted_seconds > timeout.seconds:
            return UnitVerdict(result.unit.id, Prediction.FAIL,
                               f"{command.tool} ({command.source}) needs about {verdict.predicted_seconds:.0f} s, "
                               f"more than TimeoutStartSec={timeout.seconds:.0f} s: the start fails with "
                               f"Result=timeout" + (" — '|| true' or '-' do not help" if command.tolerated else ""),
                               tuple(verdicts))
        if verdict.predicted is Prediction.FAIL and not command.tolerated:
            if command.key == "ExecCondition":
                return UnitVerdict(result.unit.id, Prediction.FAIL,
                                   f"ExecCondition {command.tool} fails: the unit is skipped", tuple(verdicts))
            return UnitVerdict(result.unit.id, Prediction.FAIL,
                               f"{command.tool} ({command.source}) is expected to exit {verdict.predicted_exit}: "
                               f"{verdict.reason}", tuple(verdicts), stops.get(id(verdict), ""))
        if command.tool == "sa-update" and "1" in verdict.predicted_exit.split("|") and not command.tolerated \
                and not any("status checked" in w for w in command.tolerated_why):
            return UnitVerdict(result.unit.id, Prediction.FAIL,
                               f"sa-update ({command.source}) will exit 1 (no new rules), which fails the start",
                               tuple(verdicts))
        decided = script_decides(verdict)
        if decided is not None and decided[0] is Prediction.FAIL:
            return UnitVerdict(result.unit.id, Prediction.FAIL, decided[1], tuple(verdicts),
                               _script_fix(result, command))
        if decided is not None and unknown is None:
            unknown = decided[1]
    unit = result.unit
    restart_setting = unit.last("Service", "Restart")
    restart = restart_setting.value.strip() if restart_setting else "no"
    dns_dropped = any(r.kind is DepKind.DNS and r.error is ProbeError.DNS_TIMEOUT for r in runner.results.values())
    wait = startup.spamd_start_wait(facts, kind, dns_dropped) if facts else 0.0
    if timeout.limited and wait > timeout.seconds:
        return UnitVerdict(result.unit.id, Prediction.FAIL,
                           f"spamd waits about {wait:.0f} s for DNS while it starts (rbl_timeout; DNS does not "
                           f"answer), more than TimeoutStartSec={timeout.seconds:.0f} s: the start fails with "
                           "Result=timeout",
                           tuple(verdicts))
    no_rules = startup.spamd_fails(facts, sa_runs, kind, restart) if facts else None
    if no_rules:
        return UnitVerdict(result.unit.id, Prediction.FAIL, no_rules, tuple(verdicts),
                           startup.spamd_fix(facts) if facts else "")
    if unknown:
        return UnitVerdict(result.unit.id, Prediction.UNKNOWN, unknown, tuple(verdicts))
    return UnitVerdict(result.unit.id, Prediction.OK, "every start-path command is expected to succeed in time",
                       tuple(verdicts))


def _statuses(predicted_exit: str) -> list[int]:
    """The exit statuses a verdict expects: "0|1" -> [0, 1], "4" -> [4], "non-zero" -> 1..255."""
    if predicted_exit == "non-zero":
        return list(range(1, 256))
    return [int(p) % 256 for p in predicted_exit.split("|") if p.isdigit()]


def script_decides(verdict: CommandVerdict) -> tuple[Prediction, str] | None:
    """When the only thing between the command's failure and the start is the script's own look at its status
    (`case $?`, `[ $? -le 1 ] || exit 1`): FAIL or UNKNOWN with the reason, None when the start survives."""
    command = verdict.command
    if not command.status_fates or not command.tolerated_why or \
            any("status checked" not in why for why in command.tolerated_why):
        return None
    statuses = _statuses(verdict.predicted_exit)
    failing: dict[int, tuple[int, str]] = {}  # status -> (the script's exit, where it decides)
    unknown: dict[int, str] = {}
    for status in statuses:
        fate = command.fate_of(status)
        code = fate.script_exit(status) if fate else None
        if fate is None or fate.fate is Fate.UNKNOWN:
            unknown[status] = fate.where if fate else str(command.source)
        elif code:
            failing[status] = (code, fate.where)
    expected = f"{command.tool} ({command.source}) is expected to exit {verdict.predicted_exit}"
    # sa-update's "0|1": 1 (no new rules) is what most days bring, so a script failing on 1 fails the start.
    usual = 1 if command.tool == "sa-update" and 1 in failing and len(statuses) > 1 else None
    if failing and (len(failing) == len(statuses) or usual is not None):
        status = usual if usual is not None else next(iter(failing))
        code, where = failing[status]
        why = ("sa-update exits 1 whenever no new rules are published (most days)" if usual is not None
               else verdict.reason)
        return Prediction.FAIL, (f"{expected}" + (f" ({why})" if why else "") + f"; on exit {status} the script "
                                 f"exits {code} ({where}), which fails the start")
    if unknown:
        status, where = next(iter(unknown.items()))
        return Prediction.UNKNOWN, (f"{expected}; what the script then does on exit {status} is not read "
                                    f"statically ({where}): whether the start fails cannot be known")
    if failing:
        status, (code, where) = next(iter(failing.items()))
        return Prediction.UNKNOWN, (f"{expected}; the script exits {code} on exit {status} ({where}) but goes on "
                                    "on the others: whether the start fails cannot be known")
    return None


def _generic(entry: CommandDeps, runner: ProbeRunner) -> CommandVerdict:
    command = entry.command
    pairs = [(d, runner.results[(d.kind.value, d.target)]) for d in entry.dependencies
             if (d.kind.value, d.target) in runner.results]
    seen = [r for _, r in pairs]
    start_failures = [r for d, r in pairs if d.role is Role.START and not r.ok]
    other_failures = [r for d, r in pairs if d.role is not Role.START and not r.ok]
    used = tuple(f"{d.kind.value} {d.target}" for d in entry.dependencies if not d.any_host)
    if start_failures:
        worst = max(r.elapsed_s for r in start_failures)
        reason = "; ".join(f"{r.kind.value} {r.target}: {r.error}" for r in start_failures)
        return CommandVerdict(command, Prediction.FAIL, "non-zero", round(worst, 1), reason, used)
    if other_failures:
        reason = "runtime endpoints unreachable: " + "; ".join(f"{r.target}: {r.error}" for r in other_failures)
        return CommandVerdict(command, Prediction.DEGRADED, "0", 0.0, reason, used)
    anywhere = [d.target for d in entry.dependencies if d.any_host]
    reason = "all endpoints answered" if seen else "needs no network" if not anywhere else ""
    if anywhere:
        reason += ("; " if reason else "") + f"{', '.join(anywhere)}: any host, not probed"
    return CommandVerdict(command, Prediction.OK, "0", round(max((r.elapsed_s for r in seen), default=0.0), 1),
                          reason, used)


def _findings(results: list[UnitDeps], units: tuple[UnitVerdict, ...], runner: ProbeRunner) -> list[Finding]:
    found: list[Finding] = []
    for result, verdict in zip(results, units, strict=True):
        if verdict.start_predicted is Prediction.FAIL:
            found.append(Finding("MP201", Severity.CRITICAL, verdict.name, f"{verdict.name} will fail to start: "
                                 f"{verdict.reason}", verdict.fix or f"mailpreflight dropin install {verdict.name}; "
                                 "see the failed probes and `mailpreflight firewall` for what to allow",
                                 tuple(f"{c.command.source}: {c.reason}" for c in verdict.commands
                                       if c.predicted is not Prediction.OK)))
        if verdict.start_predicted is Prediction.UNKNOWN:
            found.append(Finding("MP204", Severity.WARNING, verdict.name, f"whether {verdict.name} starts cannot "
                                 f"be predicted: {verdict.reason}", _read_hint(verdict),
                                 tuple(f"{c.command.source}: {c.reason}" for c in verdict.commands
                                       if c.predicted is not Prediction.OK)))
        for command in verdict.commands:
            if command.predicted is Prediction.DEGRADED:
                found.append(Finding("MP202", Severity.WARNING, verdict.name,
                                     f"{command.command.tool} works, but some of its endpoints are dead: "
                                     f"{command.reason}", "allow what it needs in the outgoing firewall "
                                     f"(`mailpreflight firewall {verdict.name}` lists it); if it is allowed, tell "
                                     "the endpoint's operator",
                                     (str(command.command.source),)))
        for finding in result.findings:  # static risks: what happens if the network fails
            severity = Severity.WARNING if finding.severity is Severity.CRITICAL else finding.severity
            found.append(Finding(finding.code, severity, finding.unit, f"risk: {finding.message}", finding.hint,
                                 finding.evidence))
    return found


def _script_fix(result: UnitDeps, command: FoundCommand) -> str:
    """For a start the script fails on the command's status: accept the script's failure with a '-' prefix."""
    paths = [c.path for c in result.unit.exec.get(command.key, ()) if c.path in command.via[:1]]
    if not paths:
        return ""
    where = next((f.where for f in command.status_fates if f.fails_on_any), "")
    return (f"systemctl edit {result.unit.id} (add `{command.key}=` and `{command.key}=-{paths[0]}`: the '-' "
            "accepts the script's failure)" + (f", or change the script's check at {where}" if where else ""))


def _read_hint(verdict: UnitVerdict) -> str:
    """A command that shows the lines of the script that decide (the `where` of the first status fate)."""
    for command in verdict.commands:
        for fate in command.command.status_fates:
            path, _, line = fate.where.rpartition(":")
            if path.startswith("/") and line.isdigit():
                return f"read what the script does with the status: sed -n '{line},+20p' {path}"
    return f"read the unit's start path: mailpreflight deps {verdict.name}"


def _gpg_findings(results: list[UnitDeps], sa_probes: dict[int, SaUpdateProbe]) -> list[Finding]:
    """sa-update accepts rules signed by an expired or revoked key it trusts (deps/satrust.py)."""
    found = []
    for result in results:
        for entry in result.commands:
            probe = sa_probes.get(id(entry))
            for signer, warning in probe.gpg_warnings if probe and probe.trust else ():
                homedir = probe.trust.homedir if probe and probe.trust else ""
                found.append(Finding("MP203", Severity.WARNING, result.unit.id, f"sa-update ({entry.command.source}): "
                                     f"{warning}", f"gpg --homedir {homedir} --list-keys {signer} (then take the key "
                                     "out of sa-update's --gpgkey/--gpgkeyfile, or ask the channel for its new one)",
                                     (str(entry.command.source), f"{homedir}: {signer}")))
    return found


def _status(units: tuple[UnitVerdict, ...], findings: tuple[Finding, ...]) -> Status:
    """A unit that will not start is critical; one whose start cannot be predicted a warning (not UNKNOWN: that
    is for a check that could not run); otherwise the worst finding decides."""
    starts = [Status.CRITICAL if u.start_predicted is Prediction.FAIL else
              Status.WARNING if u.start_predicted is Prediction.UNKNOWN else Status.OK for u in units]
    return Status.worst([*starts, *(f.severity.status for f in findings)])
