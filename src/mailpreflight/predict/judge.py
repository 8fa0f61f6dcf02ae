"""`check`: probe every dependency of the units' start paths (concurrently, one deadline), predict what each
command and each unit will do, and say why."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TextIO

from mailpreflight.auth.check import AuthReport, auth_view
from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.deps.base import command_role
from mailpreflight.deps.risks import CommandDeps
from mailpreflight.deps.startup import SaUpdateLocal
from mailpreflight.model import (
    CommandVerdict,
    DepKind,
    Finding,
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
        bodies: dict[str, bytes | None] = {}  # MIRRORED.BY files fetched, shared by every chain
        for result in results:
            analysed.append(result)
            tasks: dict[tuple[DepKind, str], Callable[[], ProbeResult]] = {}
            for entry in result.commands:
                if entry.plan is not None:
                    key = chain_key(entry.plan)
                    probe = chains.get(key)
                    if probe is None:
                        probe = chains[key] = SaUpdateProbe(entry.plan, runner, resolver, options.timeout, bodies)
                        tasks.update(probe.prefetch())
                    sa_probes[id(entry)] = probe
                    continue
                for dep in entry.dependencies:
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
    findings = (*_findings(analysed, units, runner), *(auth.findings() if auth else ()))
    return Report(_status(units, findings), units, probes, findings, round(time.monotonic() - started, 2),
                  auth_view(auth) if auth else None)


def _unit(result: UnitDeps, runner: ProbeRunner, sa_probes: dict[int, SaUpdateProbe]) -> UnitVerdict:
    verdicts = []
    facts, kind = result.startup, service_type(result.unit).name
    sa_runs: list[tuple[SaUpdateLocal, CommandVerdict]] = []  # sa-update runs of the start path
    for index, entry in enumerate(result.commands):
        if not entry.dependencies and id(entry) not in sa_probes:
            continue  # needs no network: nothing to predict here
        probe = sa_probes.get(id(entry))
        verdict = probe.evaluate(entry.command) if probe else _generic(entry, runner)
        local = facts.sa_update_for(index) if facts else None
        if facts and local:
            verdict = startup.before_network(verdict, local, facts)
            if command_role(entry.command, kind) is Role.START and entry.command.key != "ExecStart":
                sa_runs.append((local, verdict))
        verdicts.append(verdict)
    timeout = result.timeout
    for verdict in verdicts:
        command = verdict.command
        if command_role(command, kind) is not Role.START:
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
                               f"{verdict.reason}", tuple(verdicts))
        if command.tool == "sa-update" and "1" in verdict.predicted_exit.split("|") and not command.tolerated \
                and not any("status checked" in w for w in command.tolerated_why):
            return UnitVerdict(result.unit.id, Prediction.FAIL,
                               f"sa-update ({command.source}) will exit 1 (no new rules), which fails the start",
                               tuple(verdicts))
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
        return UnitVerdict(result.unit.id, Prediction.FAIL, no_rules, tuple(verdicts))
    return UnitVerdict(result.unit.id, Prediction.OK, "every start-path command is expected to succeed in time",
                       tuple(verdicts))


def _generic(entry: CommandDeps, runner: ProbeRunner) -> CommandVerdict:
    command = entry.command
    pairs = [(d, runner.results[(d.kind.value, d.target)]) for d in entry.dependencies
             if (d.kind.value, d.target) in runner.results]
    seen = [r for _, r in pairs]
    start_failures = [r for d, r in pairs if d.role is Role.START and not r.ok]
    other_failures = [r for d, r in pairs if d.role is not Role.START and not r.ok]
    used = tuple(f"{d.kind.value} {d.target}" for d in entry.dependencies)
    if start_failures:
        worst = max(r.elapsed_s for r in start_failures)
        reason = "; ".join(f"{r.kind.value} {r.target}: {r.error}" for r in start_failures)
        return CommandVerdict(command, Prediction.FAIL, "non-zero", round(worst, 1), reason, used)
    if other_failures:
        reason = "runtime endpoints unreachable: " + "; ".join(f"{r.target}: {r.error}" for r in other_failures)
        return CommandVerdict(command, Prediction.DEGRADED, "0", 0.0, reason, used)
    reason = "all endpoints answered" if seen else "needs no network"
    return CommandVerdict(command, Prediction.OK, "0", round(max((r.elapsed_s for r in seen), default=0.0), 1),
                          reason, used)


def _findings(results: list[UnitDeps], units: tuple[UnitVerdict, ...], runner: ProbeRunner) -> list[Finding]:
    found: list[Finding] = []
    for result, verdict in zip(results, units, strict=True):
        if verdict.start_predicted is Prediction.FAIL:
            found.append(Finding("MP201", Severity.CRITICAL, verdict.name, f"{verdict.name} will fail to start: "
                                 f"{verdict.reason}", f"mailpreflight dropin install {verdict.name}; see the "
                                 "failed probes and `mailpreflight firewall` for what to allow",
                                 tuple(f"{c.command.source}: {c.reason}" for c in verdict.commands
                                       if c.predicted is not Prediction.OK)))
        for command in verdict.commands:
            if command.predicted is Prediction.DEGRADED:
                found.append(Finding("MP202", Severity.WARNING, verdict.name,
                                     f"{command.command.tool} works, but some of its endpoints are dead: "
                                     f"{command.reason}", "tell the endpoint's operator, or allow it in the firewall",
                                     (str(command.command.source),)))
        for finding in result.findings:  # static risks: what happens if the network fails
            severity = Severity.WARNING if finding.severity is Severity.CRITICAL else finding.severity
            found.append(Finding(finding.code, severity, finding.unit, f"risk: {finding.message}", finding.hint,
                                 finding.evidence))
    return found


def _status(units: tuple[UnitVerdict, ...], findings: tuple[Finding, ...]) -> Status:
    """A unit that will not start is critical; otherwise the worst finding decides."""
    failing = Status.CRITICAL if any(u.start_predicted is Prediction.FAIL for u in units) else Status.OK
    return Status.worst([failing, *(f.severity.status for f in findings)])
