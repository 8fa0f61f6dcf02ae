"""Start-up risks a unit's own text creates, found statically. Codes are stable: scripts and docs use them
(docs/findings.md)."""

from __future__ import annotations

import shlex
import stat
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.saupdate import SaUpdatePlan, worst_cases
from mailpreflight.model import Dependency, Fate, Finding, FoundCommand, Role, Severity
from mailpreflight.units.loader import Unit
from mailpreflight.units.timeouts import StartTimeout

NETWORK_ONLINE = "network-online.target"
SLOW_BOOT_SECONDS = 300.0
# Users distributions run sa-update as (their cron jobs and timers do).
SA_USERS = ("debian-spamd", "spamd", "sa-update")


@dataclass(frozen=True)
class CommandDeps:
    command: FoundCommand
    dependencies: tuple[Dependency, ...]
    plan: SaUpdatePlan | None = None  # set for sa-update
    mentions: tuple[Dependency, ...] = ()  # seen in its text, not known to be contacted: never probed nor allowed


def findings_for(unit: Unit, fs: RootFS, commands: list[CommandDeps], timeout: StartTimeout) -> list[Finding]:
    found: list[Finding] = []
    for entry in commands:
        found += _untolerated(unit, entry)
        if entry.plan is not None:
            found += _sa_update(unit, fs, entry, timeout)
    found += _network_online(unit, commands)
    return found


def _untolerated(unit: Unit, entry: CommandDeps) -> list[Finding]:
    command = entry.command
    start = [d for d in entry.dependencies if d.role is Role.START]
    script_checked = command.tolerated and all("status checked" in why for why in command.tolerated_why)
    if not start or (command.tolerated and not script_checked):
        return []
    network_failure = (4,) if command.tool == "sa-update" else tuple(range(1, 256))  # sa-update: 4, DNS/HTTP
    outcomes = [command.fate_of(status) for status in network_failure] if script_checked else []
    exits = [fate.script_exit(status) if fate else None for fate, status in zip(outcomes, network_failure,
                                                                                strict=bool(outcomes))]
    if outcomes and all(fate is not None and fate.fate is not Fate.UNKNOWN for fate in outcomes) and not any(exits):
        return []  # the script accepts the network failure: it goes on or exits 0
    if outcomes and all(exits):
        fate = outcomes[0]
        assert fate is not None
        return [Finding(
            "MP101", Severity.CRITICAL, unit.id,
            f"{command.tool} needs the network to start {unit.id}, and when it fails (exit "
            f"{'4' if command.tool == 'sa-update' else 'non-zero'}) the script exits {exits[0]} ({fate.where}): "
            "the start fails",
            f"systemctl edit {unit.id} (add `ExecStart=` and `ExecStart=-{_exec_path(unit, command)}`: the '-' "
            "accepts the script's failure), or change the script's check at " + fate.where,
            (f"{command.source}: {' '.join(command.argv)}", f"{len(start)} network endpoints, e.g. {start[0].target}",
             "the script: " + ", ".join(map(str, command.status_fates))),
        )]
    if script_checked:
        return [Finding(
            "MP101", Severity.WARNING, unit.id,
            f"{command.tool} needs the network to start {unit.id}; the script checks its exit status itself, "
            "so a network failure may still fail the start",
            "make sure the check accepts the tool's network-failure status, or use the mailpreflight guard",
            (f"{command.source}: {' '.join(command.argv)}", f"{len(start)} network endpoints, e.g. {start[0].target}"),
        )]
    return [Finding(
        "MP101", Severity.CRITICAL, unit.id,
        f"{command.tool} needs the network to start {unit.id}, and its failure fails the start",
        f"prefix the line with '-' or let `mailpreflight dropin install {unit.id}` wrap it in a bounded guard",
        (f"{command.source}: {' '.join(command.argv)}", f"{len(start)} network endpoints, e.g. {start[0].target}"),
    )]


def _exec_path(unit: Unit, command: FoundCommand) -> str:
    """The program of the Exec line the command was found under (the script's path)."""
    for exec_command in unit.exec.get(command.key, ()):
        if str(exec_command.source) == str(command.source) or command.via[:1] == (exec_command.path,):
            return exec_command.path
    return command.via[0] if command.via else command.argv[0]


def _sa_update(unit: Unit, fs: RootFS, entry: CommandDeps, timeout: StartTimeout) -> list[Finding]:
    command, plan = entry.command, entry.plan
    assert plan is not None
    found: list[Finding] = []
    checked = any("status checked" in why for why in command.tolerated_why)
    if not command.tolerated and not checked and plan.args.install is None:
        found.append(Finding(
            "MP102", Severity.CRITICAL, unit.id,
            "sa-update exits 1 when no new rules are published (most days), and that fails the start",
            "treat exit 1 as success: '-' prefix, `sa-update || [ $? -eq 1 ]`, or the mailpreflight guard",
            (f"{command.source}: {' '.join(command.argv)}", "sa-update exit codes: sa-update.raw l.1257-1271"),
        ))
    never = _never_updates(plan)
    if never:
        severity = Severity.WARNING if command.tolerated else Severity.CRITICAL
        fails = "the rules are never updated" if command.tolerated else "the start fails every time"
        found.append(Finding(
            "MP108", severity, unit.id, f"{never}: {fails}",
            "fix the sa-update command line (see sa-update(1))",
            (f"{command.source}: {' '.join(command.argv)}",),
        ))
    scenarios = worst_cases(plan)
    worst = max(scenarios, key=lambda s: s.seconds)
    if timeout.limited and worst.seconds > timeout.seconds:
        covered = " although its exit status is tolerated" if command.tolerated else ""
        found.append(Finding(
            "MP103", Severity.CRITICAL, unit.id,
            f"sa-update can run {worst.seconds:.0f} s ({worst.name}), longer than the {timeout.seconds:.0f} s "
            f"TimeoutStartSec: the start fails with Result=timeout{covered}",
            "'|| true' and '-' cover exit codes, never a timeout: bound sa-update's run time (the guard's "
            "--timeout) below TimeoutStartSec, or move updates to a timer",
            (f"{command.source}: {' '.join(command.argv)}", worst.detail,
             f"TimeoutStartSec from {timeout.learned_from}"),
        ))
    elif not timeout.limited and worst.seconds > SLOW_BOOT_SECONDS:
        found.append(Finding(
            "MP104", Severity.WARNING, unit.id,
            f"sa-update can block the start for {worst.seconds:.0f} s ({worst.name}); there is no start timeout",
            "bound it with the guard's --timeout, or run updates from a timer instead of the start path",
            (f"{command.source}", worst.detail, timeout.learned_from),
        ))
    found += _sa_user(unit, fs, command, plan)
    found += _sa_rule_dirs(unit, fs, plan, command)
    return found


def _as_unit_runs(command: FoundCommand) -> str:
    """The command line to run by hand, as the user the start path runs it as."""
    as_user = f"runuser -u {command.user} -- " if command.user not in (None, "root", "0") else ""
    return as_user + shlex.join(command.argv)


def _never_updates(plan: SaUpdatePlan) -> str | None:
    """Command lines sa-update refuses before doing anything."""
    if plan.args.allowplugins and not plan.args.reallyallowplugins:
        return "sa-update refuses --allowplugins without --reallyallowplugins and exits 2 (sa-update.raw l.226-231)"
    if plan.args.unknown:
        return f"sa-update does not accept {' '.join(plan.args.unknown)} and exits 64 (l.182-216, 1820-1822)"
    return None


def _sa_user(unit: Unit, fs: RootFS, command: FoundCommand, plan: SaUpdatePlan) -> list[Finding]:
    if command.user not in (None, "root", "0"):
        return []
    expected, owner = fs.memo(("_sa_user", plan.updatedir), lambda: _sa_owner(fs, plan.updatedir))
    if expected is None and owner is None:
        return []
    evidence = [f"{command.source}: runs as root"]
    if expected:
        evidence.append(f"/etc/passwd has user {expected}")
    if owner:
        evidence.append(f"{plan.updatedir.rsplit('/', 1)[0]} is owned by uid {owner}")
    return [Finding(
        "MP105", Severity.WARNING, unit.id,
        "sa-update runs as root, but this system keeps its rules as a dedicated user: files written as root "
        "break the distribution's own updates later",
        f"run it as {expected or 'the owner of the update dir'} (User=, or runuser -u ... --)",
        tuple(evidence),
    )]


def _sa_owner(fs: RootFS, updatedir: str) -> tuple[str | None, str | None]:
    """The dedicated SpamAssassin user /etc/passwd has, and the owner of the update dir's parent when not root:
    the same for every sa-update of the tree, read once per RootFS."""
    passwd = fs.read_text("/etc/passwd") or ""
    users = {line.split(":", 1)[0]: line for line in passwd.splitlines() if ":" in line}
    expected = next((u for u in SA_USERS if u in users), None)
    owner = None
    info = fs.lstat(fs.chase(updatedir.rsplit("/", 1)[0]) or "/nonexistent")
    if info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid != 0:
        owner = str(info.st_uid)
    return expected, owner


def _sa_rule_dirs(unit: Unit, fs: RootFS, plan: SaUpdatePlan, command: FoundCommand) -> list[Finding]:
    base = plan.updatedir.rsplit("/", 1)[0]
    versions = fs.memo(("_sa_rule_dirs", base), lambda: [
        d for d in fs.listdir(base) if d[:1].isdigit() and fs.is_dir(f"{base}/{d}")])
    found: list[Finding] = []
    if plan.sa_version and plan.sa_version not in versions and plan.args.updatedir is None:
        found.append(Finding(
            "MP106", Severity.WARNING, unit.id,
            f"no downloaded rules for the installed SpamAssassin {plan.sa_version} in {base}: spamd uses the "
            "rules shipped with the package only while that directory does not exist — an sa-update that fails "
            "after creating its channel directory leaves it empty, and spamd then exits 255 ('no rules were found')",
            # the directory does not exist yet: its rmdir is MP116's hint, once a failed run has left it empty
            "run it once by hand as the unit does and check its exit status (0: rules installed, 1: none "
            f"published yet; anything else leaves no rules): {_as_unit_runs(command)}",
            (f"installed version from {plan.version_source}", f"{base} holds: {', '.join(versions) or 'nothing'}"),
        ))
    stale = [v for v in versions if v != plan.sa_version]
    if stale and plan.sa_version:
        found.append(Finding(
            "MP107", Severity.INFO, unit.id,
            f"rule directories of other SpamAssassin versions remain in {base}: {', '.join(stale)}",
            "leftovers of an upgrade, not used; remove them: rm -r " + " ".join(f"{base}/{v}" for v in stale),
            tuple(f"{base}/{v}" for v in stale),
        ))
    return found


def _network_online(unit: Unit, commands: list[CommandDeps]) -> list[Finding]:
    wants = {a.value for key in ("Wants", "Requires", "BindsTo") for a in unit.values("Unit", key)}
    after = {a.value for a in unit.values("Unit", "After")}
    wanted = any(NETWORK_ONLINE in v.split() for v in wants)
    ordered = any(NETWORK_ONLINE in v.split() for v in after)
    needs_network = any(d.role is Role.START for e in commands for d in e.dependencies)
    if ordered and not wanted:
        return [Finding("MP110", Severity.WARNING, unit.id,
                        f"After={NETWORK_ONLINE} without Wants=: the unit waits for the network only if "
                        "something else pulls the target in",
                        f"add Wants={NETWORK_ONLINE} next to the After=", ())]
    if wanted and not ordered:
        return [Finding("MP111", Severity.WARNING, unit.id,
                        f"Wants={NETWORK_ONLINE} without After=: the target is started but not waited for",
                        f"add After={NETWORK_ONLINE}", ())]
    if needs_network and not wanted and not ordered:
        return [Finding("MP112", Severity.WARNING, unit.id,
                        "commands in the start path need the network, but the unit neither wants nor waits "
                        f"for {NETWORK_ONLINE}: at boot they may run before the network is up",
                        f"add Wants={NETWORK_ONLINE} and After={NETWORK_ONLINE}", ())]
    return []
