"""`mailpreflight dropin`: one drop-in that makes a unit's network ExecStartPre warn instead of fail, bounded
in time. Written the careful way: atomic, idempotent, backed up, reversible, only under /etc, never through
a symlink, and generated text that systemd parses back to exactly the same argv."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import sys
from dataclasses import dataclass

from mailpreflight import __version__
from mailpreflight.access.safewrite import diff, fsync_dir, host_path, write_atomically
from mailpreflight.deps.base import RuleContext
from mailpreflight.deps.discover import discover_command
from mailpreflight.deps.registry import command_rules, rule_for
from mailpreflight.deps.risks import NETWORK_ONLINE
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Role
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.loader import Unit, UnitLoader, exec_environment
from mailpreflight.units.timeouts import start_timeout
from mailpreflight.units.unit import service_user

DROPIN_NAME = "zz-mailpreflight.conf"  # sorts after override.conf and numbered drop-ins
MARKER = "# Installed by mailpreflight"
BACKUP_SUFFIX = ".mailpreflight-backup"
ETC_UNITS = "/etc/systemd/system"
DEFAULT_GUARD_TIMEOUT = 60.0
GUARD_GRACE = 5.0


def quote_word(word: str) -> str:
    """One argv word as Exec= text that systemd's parser turns back into exactly `word`.

    `%` is doubled (specifiers were already expanded at load); `$` stays, so exec-time expansion is the
    same as the original line's; quotes, backslashes, control characters and a lone `;` are escaped.
    """
    escaped = []
    for char in word.replace("%", "%%"):
        if char in '"\\':
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\t":
            escaped.append("\\t")
        elif ord(char) < 32 or ord(char) == 127:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    text = "".join(escaped)
    plain = text and not any(c in text for c in " '\"\\;") and text == word.replace("%", "%%")
    return text if plain else f'"{text}"'


def exec_line(prefixes: str, argv: list[str]) -> str:
    return prefixes + " ".join(quote_word(word) for word in argv)


@dataclass(frozen=True)
class Plan:
    unit: Unit
    path: str  # guest path of the drop-in
    text: str
    wrapped: tuple[str, ...]  # sources of the wrapped lines
    warnings: tuple[str, ...]


def guard_program() -> str:
    """The absolute path of the installed console script (the drop-in must not depend on PATH)."""
    found = shutil.which("mailpreflight", path=os.path.dirname(sys.executable)) or shutil.which("mailpreflight")
    if not found:
        raise MailpreflightError("cannot find the installed `mailpreflight` program to put into the drop-in",
                                 hint="install it (pip install .) so that its console script exists")
    return os.path.abspath(found)


def plan(loader: UnitLoader, name: str, timeout: float = DEFAULT_GUARD_TIMEOUT, program: str | None = None) -> Plan:
    """What `dropin install` would write: the unit as it is WITHOUT our drop-in, with its network
    ExecStartPre commands wrapped in the guard."""
    first = loader.load(name)
    if first.load_error is not None:
        raise MailpreflightError(f"{first.id} does not load: {first.load_error}")
    if first.masked:
        raise MailpreflightError(f"{first.id} is masked: nothing to guard")
    ours = f"{ETC_UNITS}/{first.id}.d/{DROPIN_NAME}"
    unit = loader.load(name, skip_dropins=frozenset({ours}))
    fs = loader.fs
    env = dict(exec_environment(unit, fs).variables)
    user = service_user(unit)
    rules = command_rules()
    context = RuleContext.of(unit, fs)
    program = program or guard_program()
    lines, wrapped = [], []
    for command in unit.exec.get("ExecStartPre", ()):
        found = discover_command(command, fs, env, user)
        network = any(d.role is Role.START for f in found for d in rule_for(f.tool, rules).dependencies(f, context))
        if network:
            lines.append(_wrapped(command, program, timeout))
            wrapped.append(f"{command.source}: {' '.join(command.argv)}")
        else:
            lines.append(exec_line("".join(command.prefixes), _argv_of(command)))
    if not wrapped:
        raise MailpreflightError(f"{unit.id}: no ExecStartPre needs the network; nothing to guard")
    header = [f"{MARKER} {__version__}; undo with `mailpreflight dropin remove {unit.id}`.",
              "# It keeps the unit's start from failing or hanging when the network is down or firewalled:"]
    header += [f"#  - wrapped in `mailpreflight guard --timeout {timeout:g}`: {w}" for w in wrapped]
    unit_section: list[str] = []
    wants = {v for a in unit.values("Unit", "Wants") for v in a.value.split()}
    after = {v for a in unit.values("Unit", "After") for v in a.value.split()}
    if NETWORK_ONLINE not in wants:
        unit_section.append(f"Wants={NETWORK_ONLINE}")
        header.append(f"#  - Wants={NETWORK_ONLINE} added (it was missing)")
    if NETWORK_ONLINE not in after:
        unit_section.append(f"After={NETWORK_ONLINE}")
        header.append(f"#  - After={NETWORK_ONLINE} added (it was missing)")
    service = ["ExecStartPre=", *(f"ExecStartPre={line}" for line in lines)]
    current = start_timeout(unit, fs)
    needed = timeout + GUARD_GRACE + 10
    if current.limited and current.seconds < needed:
        service.append(f"TimeoutStartSec={needed:g}")
        header.append(f"#  - TimeoutStartSec raised from {current.seconds:g} s ({current.learned_from}) to "
                      f"{needed:g} s: room for the guard's bound and grace")
    body = [*header, ""]
    if unit_section:
        body += ["[Unit]", *unit_section, ""]
    body += ["[Service]", *service]
    warnings = tuple(f"{p} sorts after {DROPIN_NAME} and is applied later: check that it does not undo it"
                     for p in unit.dropin_paths if posixpath.basename(p) > DROPIN_NAME)
    return Plan(unit, ours, "\n".join(body) + "\n", tuple(wrapped), warnings)


def _argv_of(command: ExecCommand) -> list[str]:
    """The words to write back after the prefixes; with '@' the program path precedes argv[0]."""
    return [command.path, *command.argv] if "@" in command.prefixes else list(command.argv)


def _wrapped(command: ExecCommand, program: str, timeout: float) -> str:
    """The guard runs the program by its path; an '@' argv[0] cannot be passed on and is dropped."""
    keep = "".join(p for p in command.prefixes if p in (":", "+", "!", "!!"))
    original = [command.path, *command.argv[1:]] if "@" in command.prefixes else list(command.argv)
    return exec_line("-" + keep, [program, "guard", "--timeout", f"{timeout:g}", "--", *original])


# -- writing --------------------------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Change:
    path: str
    changed: bool
    diff: str
    messages: tuple[str, ...]


def install(loader: UnitLoader, name: str, timeout: float, dry_run: bool, program: str | None = None) -> Change:
    planned = plan(loader, name, timeout, program)
    host = host_path(loader.fs, planned.path)
    old = _read(host)
    messages = list(planned.warnings)
    if old == planned.text:
        return Change(planned.path, False, "", (*messages, f"{planned.path} is already current"))
    change = diff(old, planned.text, planned.path)
    if dry_run:
        return Change(planned.path, False, change, tuple(messages))
    if old is not None and not old.startswith(MARKER):
        backup = host + BACKUP_SUFFIX
        if os.path.lexists(backup):
            raise MailpreflightError(f"{planned.path} is not ours and a backup already exists at {backup}",
                                     hint="move one of them away first")
        os.link(host, backup)  # keep the admin's file; removed again by `dropin remove`
        messages.append(f"your previous {planned.path} is kept as {planned.path}{BACKUP_SUFFIX}")
    write_atomically(host, planned.text, make_dirs=True)
    return Change(planned.path, True, change, tuple(messages))


def remove(loader: UnitLoader, name: str, dry_run: bool) -> Change:
    unit = loader.load(name)
    guest = f"{ETC_UNITS}/{unit.id}.d/{DROPIN_NAME}"
    host = host_path(loader.fs, guest)
    old = _read(host)
    if old is None:
        return Change(guest, False, "", (f"no mailpreflight drop-in for {unit.id}",))
    if not old.startswith(MARKER):
        raise MailpreflightError(f"{guest} was not written by mailpreflight; leaving it alone")
    backup = host + BACKUP_SUFFIX
    restored = _read(backup)
    change = diff(old, restored, guest)
    if dry_run:
        return Change(guest, False, change, ())
    directory = os.path.dirname(host)
    if restored is not None:
        os.replace(backup, host)
        message = f"restored your previous {guest}"
    else:
        os.unlink(host)
        message = f"removed {guest}"
    with contextlib.suppress(OSError):
        os.rmdir(directory)  # only succeeds if the directory is now empty
    if os.path.isdir(directory):
        fsync_dir(directory)
    return Change(guest, True, change, (message,))


def show(loader: UnitLoader, name: str, program: str | None = None) -> tuple[str, bool | None]:
    """The installed drop-in's text, and whether it still matches what install would write now."""
    unit = loader.load(name)
    guest = f"{ETC_UNITS}/{unit.id}.d/{DROPIN_NAME}"
    text = _read(host_path(loader.fs, guest))
    if text is None:
        return f"no mailpreflight drop-in for {unit.id}", None
    timeout = _installed_timeout(text)
    try:
        current = plan(loader, name, timeout, program).text == text
    except MailpreflightError:
        current = False
    return text, current


def _installed_timeout(text: str) -> float:
    for word_before, word in zip(text.split(), text.split()[1:], strict=False):
        if word_before == "--timeout":
            try:
                return float(word)
            except ValueError:
                break
    return DEFAULT_GUARD_TIMEOUT
