"""`deps`: a unit's commands, the network endpoints each needs, and the start-up risks — statically."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import RuleContext, by_identity, kept, unexpanded
from mailpreflight.deps.discover import discover
from mailpreflight.deps.registry import DAEMONS, FALLBACK, UNIT_RULES, command_rules, rule_for
from mailpreflight.deps.risks import CommandDeps, findings_for
from mailpreflight.deps.saupdate import SaUpdateRule, plan
from mailpreflight.deps.spamassassin_plugins import amavis_findings
from mailpreflight.deps.startup import StartupFacts, early_death, startup_facts, startup_findings
from mailpreflight.deps.urls import valid_host
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Confidence, Dependency, Finding, FoundCommand
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.loader import LoadState, Unit, UnitLoader
from mailpreflight.units.timeouts import StartTimeout, start_timeout

INIT_SCRIPT_DIRS = ("/etc/init.d/", "/etc/rc.d/init.d/")


@fast_init
@dataclass(frozen=True)
class UnitDeps:
    """What analyze() works out for one unit: each command with its endpoints, the findings, the start timeout and, for
    a loaded unit, the start-up facts."""

    unit: Unit
    commands: tuple[CommandDeps, ...]
    findings: tuple[Finding, ...]
    timeout: StartTimeout
    startup: StartupFacts | None = None  # sandbox, what sa-update must write, spamd's rules, missing programs

    @property
    def has_network(self) -> bool:
        """Is it a unit `deps`/`check` report without being named: a network dependency, or a network tool that
        stops on its configuration before it gets to one (freshclam without freshclam.conf)."""
        return any(entry.dependencies for entry in self.commands) or bool(self.startup and self.startup.config_errors)


def analyze(unit: Unit, fs: RootFS, sa_version: str | None = None) -> UnitDeps:
    context = RuleContext.of(unit, fs)
    commands = discover(unit, fs) if unit.load_state is LoadState.LOADED else []
    rules = command_rules(sa_version)
    entries: list[CommandDeps] = []
    for command in commands:
        rule = FALLBACK if _init_script(command) else rule_for(command.tool, rules)
        sa_plan = plan(command, fs, sa_version) if command.tool == "sa-update" else None
        found, mentioned = _endpoints_of(rule.plan_dependencies(sa_plan, command, context)
                                         if sa_plan is not None and isinstance(rule, SaUpdateRule)
                                         else rule.dependencies(command, context), fs)
        if rule is FALLBACK:
            mentioned = (*mentioned, *FALLBACK.mentions(command, context))
        entries.append(CommandDeps(command, found, sa_plan, tuple(_unique(list(mentioned))) if mentioned else ()))
    for unit_rule in UNIT_RULES:
        extra, also = _endpoints(unit_rule.dependencies(commands, context))
        if (extra or also) and entries:
            index = _daemon_index(entries)
            entry = entries[index]
            entries[index] = CommandDeps(entry.command, tuple(_unique([*entry.dependencies, *extra])), entry.plan,
                                         tuple(_unique([*entry.mentions, *also])))
    timeout = start_timeout(unit, fs)
    facts = startup_facts(unit, fs, entries) if unit.load_state is LoadState.LOADED else None
    findings = [*findings_for(unit, fs, entries, timeout, context.service_type),
                *(startup_findings(unit, facts, entries, context.service_type) if facts else []),
                *amavis_findings(unit.id, fs, commands)]
    # an sa-update that dies before the network cannot hang: its timeout risks do not apply
    doomed = {str(entries[i].command.source) for i, local in facts.sa_update if early_death(local, facts)} \
        if facts else set()
    if doomed:
        findings = [f for f in findings
                    if not (f.code in ("MP103", "MP104") and any(e.split(": ", 1)[0] in doomed for e in f.evidence))]
    return UnitDeps(unit, tuple(entries), tuple(findings), timeout, facts)


def analyze_names(loader: UnitLoader, names: list[str], sa_version: str | None = None) -> list[UnitDeps]:
    return [analyze(loader.load(name), loader.fs, sa_version) for name in names]


def analyze_tree(loader: UnitLoader, sa_version: str | None = None) -> list[UnitDeps]:
    """Every service in the tree that has a network dependency (templates and broken units are skipped)."""
    return list(iter_tree(loader, sa_version))


def iter_tree(loader: UnitLoader, sa_version: str | None = None,
              names: Iterable[str] | None = None) -> Iterator[UnitDeps]:
    """analyze_tree() one unit at a time, in name order (`names`: a part of loader.service_names()). A unit is
    reported once, under its own name, not again for each alias."""
    for name in loader.service_names() if names is None else names:
        try:
            unit = loader.load(name)
            if unit.id != name and loader.is_service_name(unit.id):
                continue  # an alias of a unit reported under its own name
            result = analyze(unit, loader.fs, sa_version)
        except MailpreflightError:
            continue
        if result.has_network:
            yield result


def _daemon_index(entries: list[CommandDeps]) -> int:
    """Where unit-level (runtime) dependencies belong: the daemon's ExecStart, else the last command."""
    for index, entry in enumerate(entries):
        if entry.command.key == "ExecStart" and entry.command.tool in DAEMONS and not _init_script(entry.command):
            return index
    starts = [i for i, e in enumerate(entries) if e.command.key == "ExecStart"]
    return starts[0] if starts else len(entries) - 1


_Endpoints = tuple[tuple[Dependency, ...], tuple[Dependency, ...]]
_SHARED: dict[int, tuple[object, _Endpoints]] = {}  # _endpoints_of() of the tuples a fleet's units share


def _endpoints_of(deps: Sequence[Dependency], fs: RootFS) -> _Endpoints:
    """_endpoints() as tuples, remembered: a fleet's units have the same few lists of dependencies, and share the
    tuples (render/deps.py encodes each once; issue 14). A tuple is one the analysis remembered (sa-update's
    plan_dependencies()), looked up by its identity: its dependencies are not hashed again for each unit."""
    if not deps:
        return (), ()
    if isinstance(deps, tuple):
        return by_identity(_SHARED, deps, lambda: _as_tuples(_endpoints(list(deps))))
    return kept(fs, "_endpoints", tuple(deps), lambda: _as_tuples(_endpoints(list(deps))))


def _as_tuples(pair: tuple[list[Dependency], list[Dependency]]) -> _Endpoints:
    return tuple(pair[0]), tuple(pair[1])


def _endpoints(deps: list[Dependency]) -> tuple[list[Dependency], list[Dependency]]:
    """(endpoints, mentions): what a command contacts, and what only looks like an endpoint — a low-confidence
    guess, or a target still holding a variable nobody could expand here (`$http_proxy:3128`) or that is no host
    name or address. Only endpoints are probed and allowed; mentions are listed by `deps`, nothing else."""
    endpoints: list[Dependency] = []
    mentions: list[Dependency] = []
    for dep in _unique(deps):
        problem = ("" if dep.confidence is Confidence.HIGH else "low confidence") or (
            f"not an endpoint: {dep.target} holds a variable whose value is not known here"
            if unexpanded(dep.target) else "" if dep.any_host or valid_host(dep.host)
            else f"not an endpoint: {dep.host!r} is no host name or address")
        if problem:
            note = problem if problem != "low confidence" else dep.note
            mentions.append(Dependency(dep.kind, dep.target, dep.role, dep.learned_from, Confidence.LOW, note))
        else:
            endpoints.append(dep)
    return endpoints, mentions


def _init_script(command: FoundCommand) -> bool:
    """/etc/init.d/fetchmail is not the fetchmail program: it takes an action ("start"), and what it runs (read
    and followed: the commands after it) is what is analysed. systemd-sysv-generator's units run them."""
    return (command.script or "").startswith(INIT_SCRIPT_DIRS)


def _unique(deps: list[Dependency]) -> list[Dependency]:
    seen: set[tuple[str, str, str]] = set()
    result = []
    for dep in deps:
        key = (dep.kind.value, dep.target, dep.role.value)
        if key not in seen:
            seen.add(key)
            result.append(dep)
    return result
