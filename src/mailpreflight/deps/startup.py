"""What in the root decides a start besides the network (docs/design.md, "Predictions a booted guest
confirms"): the unit's sandbox, what sa-update needs to write before it asks the network, the state of the
SpamAssassin rules spamd will load, and Exec programs that are missing.

Facts from sa-update 4.0.1 (Debian 12's /usr/bin/sa-update) and SpamAssassin 4.0.1:
- with GPG on (the default), sa-update looks for `gpg` in PATH and dies at once without it (l.360-378:
  "gpg required but not found"; gnupg is only a Recommends of Debian's spamassassin);
- with no `<gpghomedir>/trustdb.gpg` it imports its default key first, creating the home dir (l.388,
  l.1862-1867: mkpath or die) — default `<LOCAL_RULES_DIR>/sa-update-keys` = /etc/spamassassin/sa-update-keys;
- per channel it creates `<updatedir>/<channel>/` (l.492) BEFORE any DNS query, and a failed run leaves it
  empty;
- spamd loads its rules from the first directory of its default rules path that exists:
  `<LOCAL_STATE_DIR>/<version>` (= sa-update's default updatedir) before /usr/share/spamassassin
  (Mail::SpamAssassin::default_rules_path); an existing one without rules makes it die "no rules were found".
- systemd 252 logs "Executable ... missing, skipping" for a `-`-prefixed command whose program is missing and
  records it as exited 0; without `-` the start fails with 203/EXEC.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import SYSTEMD_PATH, chased, kept
from mailpreflight.deps.freshclam import ConfigError, config_error
from mailpreflight.deps.risks import OUR_DROPIN, CommandDeps
from mailpreflight.deps.satrust import SaTrust, read_trust
from mailpreflight.deps.saupdate import SaUpdatePlan
from mailpreflight.model import Finding, Severity, Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.distro import distribution
from mailpreflight.units.loader import Unit
from mailpreflight.units.sandbox import Sandbox, sandbox_of

LOCAL_RULES_DIR = "/etc/spamassassin"


@fast_init
@dataclass(frozen=True)
class SaUpdateLocal:
    """What one sa-update command needs from the root before it uses the network."""

    installed: bool  # the real sa-update is in the root (its install-time paths could be read): only then does
    #                  the rest say anything — a sketch root without it tells nothing about gpg or keyrings
    gpg: bool  # GPG verification on (no --nogpg)
    gpg_program: str | None  # gpg in the command's PATH in the root, None when not installed
    gpghomedir: str
    keyring: bool  # <gpghomedir>/trustdb.gpg exists: nothing to create
    updatedir: str
    channel_dirs: tuple[str, ...]  # <updatedir>/<channel>, created first thing per channel
    missing_dirs: tuple[str, ...]  # of those, the ones that do not exist yet
    trust: SaTrust | None = None  # what its GPG check accepts (GPG on and the real sa-update in the root)


@dataclass(frozen=True)
class SpamdRules:
    """Which rules spamd will load, read from the root as SpamAssassin's default rules path finds them."""

    directory: str  # the first existing directory of the rules path (or the updatedir, if sa-update makes it)
    updatedir: str
    updatedir_exists: bool
    updatedir_has_rules: bool  # a *.cf file in it


@fast_init
@dataclass(frozen=True)
class Skipped:
    """An Exec command whose program does not exist in the root."""

    key: str
    path: str
    source: Source
    ignored: bool  # `-` prefix: systemd 252 skips it and records exit 0; else the start fails (203/EXEC)


@fast_init
@dataclass(frozen=True)
class StartupFacts:
    """What in the root decides a unit's start besides the network: its sandbox, what each sa-update needs first,
    spamd's rules, missing Exec programs and tools that stop on their config."""

    sandbox: Sandbox
    sa_update: tuple[tuple[int, SaUpdateLocal], ...] = ()  # (index in UnitDeps.commands, facts)
    spamd: SpamdRules | None = None  # set when the unit's ExecStart is spamd
    missing_programs: tuple[Skipped, ...] = ()
    config_errors: tuple[tuple[int, ConfigError], ...] = ()  # (index, why the tool stops on its config at once)
    install_gpg: str = "apt-get install gpg (or zypper install gpg2)"  # the root's package manager's, when known
    # (index, (directory sa-update must create, its nearest existing parent)) where the sandbox forbids it
    blocked: tuple[tuple[int, tuple[str, str]], ...] = ()
    # the unit's last ExecStartPre removes spamd's update dir when it holds no rules (our drop-in's clean-up)
    rules_cleaned: bool = False

    def config_error_for(self, index: int) -> ConfigError | None:
        return next((error for i, error in self.config_errors if i == index), None)

    def sa_update_for(self, index: int) -> SaUpdateLocal | None:
        return next((facts for i, facts in self.sa_update if i == index), None)


def _option(argv: tuple[str, ...], name: str) -> str | None:
    """The last value of `--name X` / `--name=X` (sa-update's Getopt::Long also takes one dash)."""
    found = None
    for index, word in enumerate(argv):
        for dash in ("--", "-"):
            if word == f"{dash}{name}" and index + 1 < len(argv):
                found = argv[index + 1]
            elif word.startswith(f"{dash}{name}="):
                found = word.split("=", 1)[1]
    return found


def _in_path(fs: RootFS, program: str, path: str) -> str | None:
    return kept(fs, "_in_path", (program, path), lambda: _first_in_path(fs, program, path))


def _first_in_path(fs: RootFS, program: str, path: str) -> str | None:
    for directory in path.split(":"):
        if directory.startswith("/"):
            candidate = posixpath.join(directory, program)
            if fs.chase(candidate) is not None and not fs.is_dir(candidate):
                return candidate
    return None


def _baked_in(fs: RootFS, program: str, name: str) -> str | None:
    """A path sa-update got at install time (`my $LOCAL_RULES_DIR = '/etc/spamassassin';`, l.34), read from
    the root's own script; None when the file is not a SpamAssassin sa-update. Read once per RootFS."""
    def read() -> str | None:
        text = fs.read_text(program) or ""
        match = re.search(rf"^my \${name}\s*=\s*'([^']+)';", text, re.M)
        return match.group(1) if match else None

    return kept(fs, "_baked_in", (program, name), read)


def _exists(fs: RootFS, path: str) -> bool:
    """A keyring file, a channel's directory: the same few paths for every unit of a tree, looked up once."""
    return kept(fs, "_exists", path, lambda: fs.chase(path) is not None)


def _is_dir(fs: RootFS, path: str) -> bool:
    return kept(fs, "_is_dir", path, lambda: fs.is_dir(path))


def sa_update_local(entry: CommandDeps, fs: RootFS) -> SaUpdateLocal | None:
    plan = entry.plan
    if plan is None:
        return None
    argv = entry.command.argv
    path = entry.command.env.get("PATH", "")
    if not path or "$" in path:  # unset, or a variable the reading could not expand: systemd's default PATH
        path = ":".join(SYSTEMD_PATH)
    # all it reads of the command and its plan (the plan's args are the argv's): a fleet's units share a few
    key = (argv, path, plan.updatedir, tuple(channel.directory for channel in plan.channels))
    return kept(fs, "sa_update_local", key, lambda: _sa_update_local(plan, argv, path, fs))


def _sa_update_local(plan: SaUpdatePlan, argv: tuple[str, ...], path: str, fs: RootFS) -> SaUpdateLocal:
    program = argv[0] if argv and argv[0].startswith("/") else _in_path(fs, "sa-update", path)
    local_rules_dir = _baked_in(fs, program, "LOCAL_RULES_DIR") if program else None
    installed = local_rules_dir is not None
    homedir = _option(argv, "gpghomedir") or posixpath.join(local_rules_dir or LOCAL_RULES_DIR, "sa-update-keys")
    gpg_program = _in_path(fs, "gpg", path)
    channel_dirs = tuple(channel.directory for channel in plan.channels)
    trust = kept(  # the program, its keyring and key files: the same for every unit running this sa-update
        fs, "read_trust", (program, plan.args.gpg_keys, plan.args.gpgkeyfile, homedir),
        lambda: read_trust(fs, program, plan.args, homedir, _baked_in(fs, program, "DEF_RULES_DIR"))) \
        if program and installed and plan.args.gpg else None
    return SaUpdateLocal(
        installed=installed, gpg=plan.args.gpg, gpg_program=gpg_program, gpghomedir=homedir,
        keyring=_exists(fs, posixpath.join(homedir, "trustdb.gpg")), updatedir=plan.updatedir,
        channel_dirs=channel_dirs, missing_dirs=tuple(d for d in channel_dirs if not _is_dir(fs, d)), trust=trust)


def spamd_rules(unit: Unit, fs: RootFS, sa_version: str | None) -> SpamdRules | None:
    """spamd's own rules path: `<LOCAL_STATE_DIR>/<version>` whatever an sa-update's --updatedir says."""
    start = unit.exec.get("ExecStart", ())
    if not start or posixpath.basename(start[0].path) != "spamd":
        return None
    version = sa_version or _installed_version(fs)
    updatedir = f"/var/lib/spamassassin/{version}" if version else "/var/lib/spamassassin/VERSION"
    return kept(fs, "spamd_rules", updatedir, lambda: _rules_in(fs, updatedir))


def _rules_in(fs: RootFS, updatedir: str) -> SpamdRules:
    exists = fs.is_dir(updatedir)
    has_rules = exists and any(name.endswith(".cf") for name in fs.listdir(updatedir))
    return SpamdRules(updatedir if exists else "/usr/share/spamassassin", updatedir, exists, has_rules)


def _installed_version(fs: RootFS) -> str | None:
    from mailpreflight.deps.saupdate import installed_version

    version, _ = installed_version(fs)
    return version


START_KEYS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost")


# fix/inguest.py rules_cleanup()'s script and $0 (tests/unit/test_bounds.py keeps them the same)
RULES_CLEANUP = ('ls "$1"/*.cf >/dev/null 2>&1 || rm -rf -- "$1"', "mailpreflight-rules")


def cleans_rules(unit: Unit, rules: SpamdRules | None) -> bool:
    """Does the unit's last ExecStartPre, after every sa-update of its start path, remove spamd's update dir when
    it holds no rules (*.cf)? Our drop-in ends with that line: then spamd never meets an empty one."""
    pre = unit.exec.get("ExecStartPre", ())
    if rules is None or not pre:
        return False
    return list(pre[-1].argv[1:]) == ["-c", RULES_CLEANUP[0], RULES_CLEANUP[1], rules.updatedir]


def missing_programs(unit: Unit, fs: RootFS) -> tuple[Skipped, ...]:
    """Start-path commands whose program is not in the root (ExecReload=/ExecStop= do not decide a start)."""
    found = []
    for key in START_KEYS:
        for command in unit.exec.get(key, ()):
            if command.path.startswith("/") and chased(fs, command.path) is None:
                found.append(Skipped(key, command.path, command.source, command.ignore_failure))
    return tuple(found)


def blocked_dir(local: SaUpdateLocal, sandbox: Sandbox) -> str | None:
    """The directory this sa-update must create first where the unit's sandbox makes the tree read-only."""
    candidates = (*(() if not local.gpg or local.keyring else (local.gpghomedir,)), *local.missing_dirs)
    return next((d for d in candidates if not sandbox.writable(d)[0]), None)


def _existing_parent(fs: RootFS, path: str) -> str:
    while path not in ("", "/") and not fs.is_dir(path):
        path = posixpath.dirname(path)
    return path or "/"


def early_death(local: SaUpdateLocal, facts: StartupFacts) -> str | None:
    """Why this sa-update dies at once, before any network traffic (exit 255), or None."""
    if not local.installed:
        return None
    if local.gpg and local.gpg_program is None:
        return ("gpg is not installed in the root (gnupg is only recommended): sa-update dies at once with 'gpg "
                "required but not found' (sa-update l.378) — no rules are ever updated")
    if local.gpg and not local.keyring:
        writable, why = facts.sandbox.writable(local.gpghomedir)
        if not writable:
            return (f"sa-update must create its keyring {local.gpghomedir} first, but {why} makes it read-only for "
                    "this unit: it dies at once (sa-update l.1866, 'Read-only file system'), before any network "
                    "traffic — no rules are ever updated")
    for directory in local.missing_dirs:
        writable, why = facts.sandbox.writable(directory)
        if not writable:
            return (f"sa-update must create {directory}, but {why} makes it read-only for this unit: it dies at "
                    "once (sa-update l.492)")
    return None


def startup_findings(unit: Unit, facts: StartupFacts, entries: list[CommandDeps],
                     service_type: str) -> list[Finding]:
    """`service_type`: the unit's, units.unit.service_type()'s name (RuleContext.service_type)."""
    found = []
    for skipped in facts.missing_programs:
        if skipped.ignored:
            found.append(Finding(
                "MP114", Severity.WARNING, unit.id,
                f"{skipped.key}={skipped.path} does not exist in this root: systemd 252 logs 'Executable "
                f"{skipped.path} missing, skipping' and records exit 0 — the command silently never runs",
                f"install what provides {skipped.path}, or fix the path in {skipped.source.file}" + (
                    f" (a mailpreflight drop-in made elsewhere: `mailpreflight dropin install {unit.id} --root ROOT` "
                    "makes it for this root)" if skipped.source.file.endswith(OUR_DROPIN) else ""),
                (str(skipped.source),)))
        else:
            found.append(Finding(
                "MP113", Severity.CRITICAL, unit.id,
                f"{skipped.key}={skipped.path} does not exist in this root: the start fails (203/EXEC)",
                f"install what provides {skipped.path}, or fix the path in {skipped.source.file}",
                (str(skipped.source),)))
    for index, local in facts.sa_update:
        reason = early_death(local, facts)
        if reason:
            command = entries[index].command
            found.append(Finding("MP115", Severity.WARNING, unit.id, f"sa-update ({command.source}) never reaches "
                                 f"the network here: {reason}",
                                 facts.install_gpg if local.gpg_program is None else
                                 _writable_hint(unit, facts, index, local),
                                 (str(command.source),)))
    for index, error in facts.config_errors:
        command = entries[index].command
        daemon = command.key == "ExecStart" and service_type != "oneshot"
        outcome = ("the service fails right after it starts" if daemon else
                   "the start fails" if not command.tolerated else f"tolerated ({', '.join(command.tolerated_why)})")
        found.append(Finding(
            "MP121", Severity.WARNING if command.tolerated else Severity.CRITICAL, unit.id,
            f"{command.tool} ({command.source}) stops on its configuration before any network use: "
            f"{error.why}, so it prints '{error.message}' and exits {error.status} — {outcome}",
            error.hint, (str(command.source), error.why)))
    rules = facts.spamd
    if rules and rules.updatedir_exists and not rules.updatedir_has_rules:
        found.append(Finding(
            "MP116", Severity.CRITICAL, unit.id,
            f"spamd loads its rules from {rules.updatedir}, which exists but holds no rules: it exits 255 ('no "
            "rules were found') — typically left behind, empty, by a failed sa-update",
            f"remove it, as it holds no rules (rm -r {shlex.quote(rules.updatedir)}), or run sa-update "
            "successfully once", (rules.updatedir,)))
    return found


def _writable_hint(unit: Unit, facts: StartupFacts, index: int, local: SaUpdateLocal) -> str:
    """ReadWritePaths= for the directory's nearest existing parent: systemd refuses to start a unit whose
    ReadWritePaths= names a path that does not exist (226/NAMESPACE), and sa-update has yet to create it."""
    directory, parent = next((b for i, b in facts.blocked if i == index), (local.gpghomedir, local.gpghomedir))
    hint = (f"add ReadWritePaths={parent} to the unit (systemctl edit {unit.id}; the missing {directory} itself "
            "cannot be named there, systemd would refuse to start the unit)" if parent != directory else
            f"add ReadWritePaths={directory} to the unit (systemctl edit {unit.id})")
    if directory == local.gpghomedir:
        hint += (", or give sa-update --gpghomedir under a writable directory (Debian's own runs use "
                 "/var/lib/spamassassin/sa-update-keys)")
    return hint


def startup_facts(unit: Unit, fs: RootFS, entries: list[CommandDeps]) -> StartupFacts:
    sa: list[tuple[int, SaUpdateLocal]] = []
    errors: list[tuple[int, ConfigError]] = []
    version = None  # the first sa-update's that knows it
    for index, entry in enumerate(entries):
        local = sa_update_local(entry, fs)
        if local is not None and entry.plan is not None:
            sa.append((index, local))
            version = version or entry.plan.sa_version or None
        if entry.command.tool == "freshclam" and (error := config_error(fs, entry.command.argv)) is not None:
            errors.append((index, error))
    install_gpg = StartupFacts.install_gpg
    if any(local.installed and local.gpg and local.gpg_program is None for _, local in sa):  # only for the hint
        family = distribution(fs)
        install_gpg = ("apt-get install gpg" if family.debian else "zypper install gpg2" if family.suse else
                       install_gpg)
    sandbox = sandbox_of(unit)
    blocked = tuple((index, (directory, _existing_parent(fs, directory))) for index, local in sa
                    if (directory := blocked_dir(local, sandbox)) is not None)
    rules = spamd_rules(unit, fs, version)
    return StartupFacts(sandbox, tuple(sa), rules, missing_programs(unit, fs), tuple(errors), install_gpg, blocked,
                        cleans_rules(unit, rules))
