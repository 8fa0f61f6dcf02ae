"""Start-up risks a unit's own text creates, found statically. Codes are stable: scripts and docs use them
(docs/findings.md)."""

from __future__ import annotations

import shlex
import stat
from dataclasses import dataclass
from operator import attrgetter

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import kept
from mailpreflight.deps.saupdate import SaUpdatePlan
from mailpreflight.model import Dependency, Fate, Finding, FoundCommand, Role, Severity, Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.loader import Unit
from mailpreflight.units.timeouts import StartTimeout

NETWORK_ONLINE = "network-online.target"
SLOW_BOOT_SECONDS = 300.0
# Users distributions run sa-update as (their cron jobs and timers do).
SA_USERS = ("debian-spamd", "spamd", "sa-update")
RUNUSER = "/usr/sbin/runuser"  # util-linux (Essential on Debian; on every systemd distribution)
# Files an admin edits in place; a vendor's unit is changed with a drop-in instead (`systemctl edit`).
ADMIN_FILES = ("/etc/", "/usr/local/")


@fast_init
@dataclass(frozen=True)
class CommandDeps:
    """One command a unit may run and the endpoints it needs, with sa-update's plan when it is sa-update and what its
    text only mentions."""

    command: FoundCommand
    dependencies: tuple[Dependency, ...]
    plan: SaUpdatePlan | None = None  # set for sa-update
    mentions: tuple[Dependency, ...] = ()  # seen in its text, not known to be contacted: never probed nor allowed


def findings_for(unit: Unit, fs: RootFS, commands: list[CommandDeps], timeout: StartTimeout,
                 service_type: str) -> list[Finding]:
    """`service_type`: the unit's, units.unit.service_type()'s name (RuleContext.service_type)."""
    found: list[Finding] = []
    for entry in commands:
        found += _untolerated(unit, entry, service_type)
        if entry.plan is not None:
            found += _sa_update(unit, fs, entry, timeout, service_type)
    found += _network_online(unit, commands)
    return found


def _untolerated(unit: Unit, entry: CommandDeps, service_type: str) -> list[Finding]:
    command = entry.command
    start = [d for d in entry.dependencies if d.role is Role.START] if entry.dependencies else []
    if not start:
        return []
    script_checked = command.tolerated and all("status checked" in why for why in command.tolerated_why)
    if command.tolerated and not script_checked:
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
        where = next((f.where for f in command.status_fates if f.where), "")
        return [Finding(
            "MP101", Severity.WARNING, unit.id,
            f"{command.tool} needs the network to start {unit.id}; the script checks its exit status itself, "
            "so a network failure may still fail the start",
            (f"read the check (`sed -n '{where.rpartition(':')[2]},+20p' {where.rpartition(':')[0]}`) and make "
             "sure it accepts the tool's network-failure status"
             if where.rpartition(":")[2].isdigit() and where.startswith("/") else
             "make sure the script's check accepts the tool's network-failure status") + (
                f", or let `mailpreflight dropin install {unit.id}` wrap it in a bounded guard"
                if _guardable(command, service_type) else ""),
            (f"{command.source}: {' '.join(command.argv)}", f"{len(start)} network endpoints, e.g. {start[0].target}"),
        )]
    return [Finding(
        "MP101", Severity.CRITICAL, unit.id,
        f"{command.tool} needs the network to start {unit.id}, and its failure fails the start",
        f"prefix the line with '-' or let `mailpreflight dropin install {unit.id}` wrap it in a bounded guard",
        (f"{command.source}: {' '.join(command.argv)}", f"{len(start)} network endpoints, e.g. {start[0].target}"),
    )]


def _guardable(command: FoundCommand, service_type: str) -> bool:
    """Does `mailpreflight dropin install` wrap the command (an ExecStartPre, or a oneshot's ExecStart)?"""
    return command.key == "ExecStartPre" or (command.key == "ExecStart" and service_type == "oneshot")


def _exec_line(unit: Unit, command: FoundCommand) -> ExecCommand | None:
    """The Exec line the command is itself (not run by a script or a shell on it)."""
    return next((e for e in unit.exec.get(command.key, ()) if str(e.source) == str(command.source)), None)


def _exec_path(unit: Unit, command: FoundCommand) -> str:
    """The program of the Exec line the command was found under (the script's path)."""
    for exec_command in unit.exec.get(command.key, ()):
        if str(exec_command.source) == str(command.source) or command.via[:1] == (exec_command.path,):
            return exec_command.path
    return command.via[0] if command.via else command.argv[0]


def _sa_update(unit: Unit, fs: RootFS, entry: CommandDeps, timeout: StartTimeout,
               service_type: str) -> list[Finding]:
    command, plan = entry.command, entry.plan
    assert plan is not None
    found: list[Finding] = []
    checked = any("status checked" in why for why in command.tolerated_why)
    if not command.tolerated and not checked and plan.args.install is None:
        found.append(Finding(
            "MP102", Severity.CRITICAL, unit.id,
            "sa-update exits 1 when no new rules are published (most days), and that fails the start",
            (f"let `mailpreflight dropin install {unit.id}` wrap it in a bounded guard that accepts its failure, or "
             if _guardable(command, service_type) else "") + "treat exit 1 as success where it runs (a '-' prefix on "
            "the Exec line, || [ $? -eq 1 ] after it in a script)",
            (f"{command.source}: {' '.join(command.argv)}", "sa-update exit codes: sa-update.raw l.1257-1271"),
        ))
    never = _never_updates(plan)
    if never:
        severity = Severity.WARNING if command.tolerated else Severity.CRITICAL
        fails = "the rules are never updated" if command.tolerated else "the start fails every time"
        found.append(Finding(
            "MP108", severity, unit.id, f"{never}: {fails}",
            _command_line_hint(unit, command, plan),
            (f"{command.source}: {' '.join(command.argv)}",),
        ))
    worst = max(plan.worst, key=attrgetter("seconds"))
    seconds, name = worst.seconds, worst.name
    if command.bound is not None and command.bound < seconds:  # a wrapper stops it (timeout N, the guard)
        seconds, name = command.bound, f"{worst.name}, stopped by {command.bound_by}"
    if timeout.limited and seconds > timeout.seconds:
        covered = " although its exit status is tolerated" if command.tolerated else ""
        found.append(Finding(
            "MP103", Severity.CRITICAL, unit.id,
            f"sa-update can run {seconds:.0f} s ({name}), longer than the {timeout.seconds:.0f} s "
            f"TimeoutStartSec: the start fails with Result=timeout{covered}",
            "'|| true' and '-' cover exit codes, never a timeout: " + (
                f"`mailpreflight dropin install {unit.id}` bounds its run time (the guard's --timeout) and makes "
                "TimeoutStartSec long enough for it" if _guardable(command, service_type) else
                "bound sa-update's run time (the guard's --timeout) below TimeoutStartSec") +
            ", or move updates to a timer",
            (f"{command.source}: {' '.join(command.argv)}", worst.detail,
             f"TimeoutStartSec from {timeout.learned_from}"),
        ))
    elif not timeout.limited and seconds > SLOW_BOOT_SECONDS:
        found.append(Finding(
            "MP104", Severity.WARNING, unit.id,
            f"sa-update can block the start for {seconds:.0f} s ({name}); there is no start timeout",
            (f"bound it: `mailpreflight dropin install {unit.id}` wraps it in the guard (--timeout)"
             if _guardable(command, service_type) else "bound it with the guard's --timeout") +
            ", or run updates from a timer instead of the start path",
            (f"{command.source}", worst.detail, timeout.learned_from),
        ))
    found += _sa_user(unit, fs, command, plan)
    found += _sa_rule_dirs(unit, fs, plan, command)
    return found


def _as_unit_runs(command: FoundCommand) -> str:
    """The command line to run by hand, as the user the start path runs it as."""
    as_user = f"runuser -u {command.user} -- " if command.user not in (None, "root", "0") else ""
    return as_user + shlex.join(command.argv)


def _refused_words(plan: SaUpdatePlan) -> list[str]:
    if plan.args.allowplugins and not plan.args.reallyallowplugins:
        return ["--allowplugins"]
    return list(plan.args.unknown)


OUR_DROPIN = "/zz-mailpreflight.conf"  # fix/dropin.py's DROPIN_NAME (deps does not import fix)


def _in_place(source: Source) -> bool:
    """A line the admin edits where it is: in a file of theirs (not our drop-in, which `dropin install` writes
    anew), on one line."""
    return source.file.startswith(ADMIN_FILES) and source.end_line in (None, source.line) \
        and not source.file.endswith(OUR_DROPIN)


def _through_our_dropin(unit: Unit, command: FoundCommand) -> str | None:
    """For a line our drop-in wrote (its copy of the unit's own, guarded): fix the unit's own line, with the
    drop-in out of the way, then write the drop-in again — an edit of the drop-in would be undone by the next
    `dropin install`, and a `systemctl edit` override sorts before it."""
    if not command.source.file.endswith(OUR_DROPIN):
        return None
    return (f"`mailpreflight dropin remove {unit.id}`, then fix the unit's own line (`mailpreflight deps {unit.id}` "
            f"then names the fix there), then `mailpreflight dropin install {unit.id}`")


REPLACEMENT_SPECIAL = "\\|&"


def _sed_bre(text: str, special: str = "\\|.[]*^$") -> str:
    """`text` as a sed basic regular expression of a `|`-delimited `s` command (as its replacement: special
    REPLACEMENT_SPECIAL)."""
    return "".join("\\" + c if c in special else c for c in text)


def _command_line_hint(unit: Unit, command: FoundCommand, plan: SaUpdatePlan) -> str:
    """Remove the words sa-update refuses, in the file that holds its line when that is the admin's own."""
    words = _refused_words(plan)
    what = "--allowplugins (or add --reallyallowplugins, if the channel's plugin code is meant to run)" \
        if words == ["--allowplugins"] and plan.args.allowplugins else " ".join(words)
    source = command.source
    text = " ".join(command.argv)
    ours = _through_our_dropin(unit, command)
    if ours:
        return f"remove {what}: {ours}"
    if _in_place(source) and all(text.count(f" {w}") == 1 for w in words):
        script = ";".join(f"{source.line}s| {_sed_bre(w)}||" for w in words)
        return f"remove {what}: `sed -i {shlex.quote(script)} {shlex.quote(source.file)}` (see sa-update(1))"
    return f"remove {what} from the command line ({source}; see sa-update(1))"


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
    expected, owner = kept(fs, "_sa_user", plan.updatedir, lambda: _sa_owner(fs, plan.updatedir))
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
        _as_user_hint(unit, command, expected) if expected else
        f"run it as the owner of {plan.updatedir.rsplit('/', 1)[0]} (uid {owner}): User=, or runuser -u",
        tuple(evidence),
    )]


def _as_user_hint(unit: Unit, command: FoundCommand, user: str) -> str:
    """Run sa-update as `user`: the whole unit (User=) when sa-update is all it runs, else sa-update alone
    through runuser, in the Exec line (the key's lines written again) or in the script."""
    line = _exec_line(unit, command)
    others = [e for key, lines in unit.exec.items() if key.startswith("ExecStart") for e in lines if e is not line]
    if line is not None and not others:
        return f"run it as {user}: systemctl edit {unit.id} (add `User={user}`)"
    ours = _through_our_dropin(unit, command)
    if ours:
        return f"run it as {user}: {ours}"
    if line is not None and _in_place(line.source) and "@" not in line.prefixes:
        # the admin's own line: changed where it is (a drop-in's `KEY=` reset would not reach a later drop-in)
        wrapped = _sed_bre(f"{RUNUSER} -u {user} -- {line.path}", REPLACEMENT_SPECIAL)
        script = f"{line.source.line}s|{_sed_bre(line.path)}|{wrapped}|"
        return f"run it as {user}: `sed -i {shlex.quote(script)} {shlex.quote(line.source.file)}`"
    if line is not None:
        settings = [f"`{command.key}=`"] + [
            f"`{command.key}={''.join(p for p in e.prefixes if p != '@')}{shlex.join(_words(e, user, e is line))}`"
            for e in unit.exec.get(command.key, ())]
        return f"run it as {user}: systemctl edit {unit.id} (add {' and '.join(settings)})"
    return f"run it as {user}: at {command.source}, run `runuser -u {user} -- {shlex.join(command.argv)}`"


def _words(line: ExecCommand, user: str, as_user: bool) -> list[str]:
    """An Exec line's words to write again (an '@' line's argv[0] dropped), through runuser when `as_user`."""
    words = [line.path, *line.argv[1:]] if "@" not in line.prefixes else [line.path, *line.argv]
    return [RUNUSER, "-u", user, "--", *words] if as_user else words


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
    versions = kept(fs, "_sa_rule_dirs", base, lambda: [
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
    if ordered and not wanted:
        return [Finding("MP110", Severity.WARNING, unit.id,
                        f"After={NETWORK_ONLINE} without Wants=: the unit waits for the network only if "
                        "something else pulls the target in",
                        f"add Wants={NETWORK_ONLINE} next to the After=", ())]
    if wanted and not ordered:
        return [Finding("MP111", Severity.WARNING, unit.id,
                        f"Wants={NETWORK_ONLINE} without After=: the target is started but not waited for",
                        f"add After={NETWORK_ONLINE}", ())]
    if not wanted and not ordered and any(d.role is Role.START for e in commands for d in e.dependencies):
        return [Finding("MP112", Severity.WARNING, unit.id,
                        "commands in the start path need the network, but the unit neither wants nor waits "
                        f"for {NETWORK_ONLINE}: at boot they may run before the network is up",
                        f"add Wants={NETWORK_ONLINE} and After={NETWORK_ONLINE}", ())]
    return []
