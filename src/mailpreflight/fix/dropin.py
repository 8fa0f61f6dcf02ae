"""`mailpreflight dropin`: one drop-in that makes a unit's network ExecStartPre warn instead of fail, bounded
in time. Written the careful way: atomic, idempotent, backed up, reversible, only under /etc, never through
a symlink, and generated text that systemd parses back to exactly the same argv."""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import stat
import sys
from dataclasses import dataclass

from mailpreflight import __version__
from mailpreflight.access.bounded import describe
from mailpreflight.access.rootfs import RootFS
from mailpreflight.access.safewrite import (
    diff,
    directory,
    guest_directory,
    guest_parts,
    host_path,
    lstat_in,
    read_in,
    write_in,
)
from mailpreflight.deps.base import RuleContext
from mailpreflight.deps.discover import discover_command
from mailpreflight.deps.guardline import DIAGNOSE_BUDGET
from mailpreflight.deps.registry import command_rules, rule_for
from mailpreflight.deps.risks import NETWORK_ONLINE
from mailpreflight.deps.startup import spamd_rules
from mailpreflight.errors import MailpreflightError
from mailpreflight.fix import inguest
from mailpreflight.fix.guard import named
from mailpreflight.model import Role
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.loader import Unit, UnitLoader, exec_environment
from mailpreflight.units.syntax import LONG_LINE_MAX
from mailpreflight.units.timeouts import start_timeout
from mailpreflight.units.unit import service_type, service_user

DROPIN_NAME = "zz-mailpreflight.conf"  # sorts after override.conf and numbered drop-ins
MARKER = "# Installed by mailpreflight"
BACKUP_SUFFIX = ".mailpreflight-backup"
ETC_UNITS = "/etc/systemd/system"
DEFAULT_GUARD_TIMEOUT = 60.0
GUARD_GRACE = 5.0
START_MARGIN = 10.0  # on top of the guarded commands' bounds: the unit's other start steps


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
        elif 0x80 <= ord(char) <= 0x9F or char in "\u2028\u2029":  # C1 controls, line/paragraph separators
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    text = "".join(escaped)
    plain = text and not any(c in text for c in " '\"\\;") and text == word.replace("%", "%%")
    return text if plain else f'"{text}"'


def exec_line(prefixes: str, argv: list[str]) -> str:
    return prefixes + " ".join(quote_word(word) for word in argv)


# What must not reach a comment raw: anything that ends a line for systemd (\n, \r, NUL) or for a reader
# (other C0/C1 controls, DEL, Unicode line and paragraph separators), and the backslash that escapes them.
_COMMENT_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
COMMENT_MAX = 400  # characters of quoted text per comment line (systemd fails a file on a 1 MiB line)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    if char == "\n":
        return "\\n"
    return f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


def comment_text(text: str) -> str:
    """Guest text quoted in a comment of the generated drop-in, as one inert line: C-style escapes for
    backslashes and control characters (nothing a unit contains can end the comment and become a directive),
    cut at COMMENT_MAX characters."""
    escaped = _COMMENT_UNSAFE.sub(_escape_one, text)
    return escaped if len(escaped) <= COMMENT_MAX else escaped[:COMMENT_MAX] + "..."


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
    ExecStartPre commands (and a oneshot's network ExecStart) bounded and tolerated — by the guard, or inside a
    guest by what the guest has (fix/inguest.py)."""
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
    if program is not None:
        wrapper = inguest.Wrapper("guard", program, why=f"the guard at {program}")
    elif fs.is_offline:
        wrapper = inguest.guest_wrapper(fs)
    else:
        found_program = guard_program()
        wrapper = inguest.Wrapper("guard", found_program, why=f"the guard at {found_program}")
    keys = ["ExecStartPre", *(["ExecStart"] if service_type(unit).name == "oneshot" else [])]
    lines: dict[str, list[str]] = {key: [] for key in keys}
    wrapped, tools = [], set()
    for key in keys:
        for command in unit.exec.get(key, ()):
            found = discover_command(command, fs, env, user)
            # a line the admin already runs through the guard is not wrapped again
            needs = [f.tool for f in found if "mailpreflight guard" not in f.via
                     and any(d.role is Role.START for d in rule_for(f.tool, rules).dependencies(f, context))]
            if needs:
                lines[key].append(_wrapped(command, wrapper, timeout, unit.id, needs))
                wrapped.append(f"{command.source}: {' '.join(command.argv)}")
                tools.update(needs)
            else:
                lines[key].append(exec_line("".join(command.prefixes), _argv_of(command)))
            if len(f"{key}={lines[key][-1]}".encode("utf-8", "surrogateescape")) >= LONG_LINE_MAX:
                raise MailpreflightError(f"{command.source}: written back into the drop-in, this command would be "
                                         "a line of 1 MiB or more, which makes systemd refuse the whole drop-in",
                                         hint="shorten the command (e.g. move it into a script)")
    if not wrapped:
        raise MailpreflightError(f"{unit.id}: no ExecStartPre (nor a oneshot's ExecStart) needs the network; "
                                 "nothing to guard")
    how = {"guard": f"`{wrapper.program} guard --timeout {timeout:g}`",
           "timeout+logger": f"`{wrapper.program} --kill-after={inguest.KILL_AFTER:g} {timeout:g}` (warning via "
                             f"{wrapper.logger})",
           "timeout": f"`{wrapper.program} --kill-after={inguest.KILL_AFTER:g} {timeout:g}`"}[wrapper.form]
    header = [f"{MARKER} {__version__}; undo with `mailpreflight dropin remove {unit.id}`.",
              "# It keeps the unit's start from failing or hanging when the network is down or firewalled:",
              f"#  - form: {comment_text(wrapper.why)}", f"#  - bound: {timeout:g} s per command"]
    header += [f"#  - wrapped in {comment_text(how)}: {comment_text(w)}" for w in wrapped]
    cleanup = _rules_cleanup(unit, fs, tools)
    if cleanup:
        lines["ExecStartPre"].append(exec_line("-", cleanup[0]))
        header.append(f"#  - then {comment_text(cleanup[1])}")
    unit_section: list[str] = []
    wants = {v for a in unit.values("Unit", "Wants") for v in a.value.split()}
    after = {v for a in unit.values("Unit", "After") for v in a.value.split()}
    if NETWORK_ONLINE not in wants:
        unit_section.append(f"Wants={NETWORK_ONLINE}")
        header.append(f"#  - Wants={NETWORK_ONLINE} added (it was missing)")
    if NETWORK_ONLINE not in after:
        unit_section.append(f"After={NETWORK_ONLINE}")
        header.append(f"#  - After={NETWORK_ONLINE} added (it was missing)")
    service = []
    for key in keys:
        if key == "ExecStartPre" or any(line.startswith("-") for line in lines[key]):
            service += [f"{key}=", *(f"{key}={line}" for line in lines[key])]
    current = start_timeout(unit, fs)
    # the guarded commands run one after another; the guard probes for its warning line after a failure
    diagnosis = DIAGNOSE_BUDGET if wrapper.form == "guard" else 0.0
    needed = len(wrapped) * (timeout + GUARD_GRACE + diagnosis) + START_MARGIN
    if current.limited and current.seconds < needed:
        service.append(f"TimeoutStartSec={needed:g}")
        header.append(f"#  - TimeoutStartSec raised from {current.seconds:g} s ({comment_text(current.learned_from)})"
                      f" to {needed:g} s: room for {len(wrapped)} guarded command(s), each bounded by "
                      f"{timeout:g} s + {GUARD_GRACE:g} s grace" +
                      (f" + {diagnosis:g} s of diagnosis" if diagnosis else "") +
                      f", and {START_MARGIN:g} s for the rest")
    body = [*header, ""]
    if unit_section:
        body += ["[Unit]", *unit_section, ""]
    body += ["[Service]", *service]
    warnings = tuple(f"{p} sorts after {DROPIN_NAME} and is applied later: check that it does not undo it"
                     for p in unit.dropin_paths if posixpath.basename(p) > DROPIN_NAME)
    notes = (f"written form: {wrapper.why}",) if fs.is_offline else ()
    return Plan(unit, ours, "\n".join(body) + "\n", tuple(wrapped), (*notes, *warnings))


def _rules_cleanup(unit: Unit, fs: RootFS, tools: set[str]) -> tuple[list[str], str] | None:
    """After a bounded sa-update, the command that removes the update dir a failed run left without rules —
    which spamd (this unit's ExecStart) would otherwise load, exiting 'no rules were found' (tests/vm/)."""
    if "sa-update" not in tools:
        return None
    rules = spamd_rules(unit, fs, None)
    shell = inguest.first_executable(fs, inguest.SHELLS)
    if rules is None or "VERSION" in rules.updatedir or shell is None:
        return None
    return (inguest.rules_cleanup(rules.updatedir, shell),
            f"{rules.updatedir} is removed when it holds no rules (*.cf), so that spamd falls back to the packaged "
            "rules instead of exiting 'no rules were found'")


def _argv_of(command: ExecCommand) -> list[str]:
    """The words to write back after the prefixes; with '@' the program path precedes argv[0]."""
    return [command.path, *command.argv] if "@" in command.prefixes else list(command.argv)


def _wrapped(command: ExecCommand, wrapper: inguest.Wrapper, timeout: float, unit: str,
             needs: list[str]) -> str:
    """The wrapper runs the program by its path; an '@' argv[0] cannot be passed on and is dropped. `needs`: the
    network programs it runs, which the in-guest form's warning names as the guard does."""
    keep = "".join(p for p in command.prefixes if p in (":", "+", "!", "!!"))
    original = [command.path, *command.argv[1:]] if "@" in command.prefixes else list(command.argv)
    tools = list(dict.fromkeys(needs))
    return exec_line("-" + keep, wrapper.argv(original, timeout, named(original, tools), unit))


# -- writing --------------------------------------------------------------------------------------------------
def _current(fs: RootFS, guest: str) -> str | None:
    """The text of the drop-in now (None if absent), read without following a link; anything but a regular
    file there is refused."""
    try:
        with guest_directory(fs, guest) as fd:
            return read_in(fd, posixpath.basename(guest), guest)
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
    host_path(loader.fs, planned.path)  # refuses early, with the guest path: links, /usr, a FIFO there
    old = _current(loader.fs, planned.path)
    messages = list(planned.warnings)
    if old == planned.text:
        return Change(planned.path, False, "", (*messages, f"{planned.path} is already current"))
    change = diff(old, planned.text, planned.path)
    if dry_run:
        return Change(planned.path, False, change, tuple(messages))
    base = posixpath.basename(planned.path)
    with guest_directory(loader.fs, planned.path, create=True) as fd:
        now = read_in(fd, base, planned.path)
        if now is not None and not now.startswith(MARKER):
            if lstat_in(fd, base + BACKUP_SUFFIX) is not None:
                raise MailpreflightError(f"{planned.path} is not ours and a backup already exists at "
                                         f"{planned.path}{BACKUP_SUFFIX}", hint="move one of them away first")
            # keep the admin's file (a hard link: the very file, never a copy); `dropin remove` puts it back
            os.link(base, base + BACKUP_SUFFIX, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            messages.append(f"your previous {planned.path} is kept as {planned.path}{BACKUP_SUFFIX}")
        write_in(fd, base, planned.text)
    return Change(planned.path, True, change, tuple(messages))


def remove(loader: UnitLoader, name: str, dry_run: bool) -> Change:
    """Remove our drop-in, putting back the admin's file it replaced. The backup is as hostile as the rest of
    the guest: only a regular file owned by us is read and moved back; a link (to a host file, say) or
    anything else is refused untouched."""
    unit = loader.load(name)
    guest = f"{ETC_UNITS}/{unit.id}.d/{DROPIN_NAME}"
    host_path(loader.fs, guest)
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(guest_directory(loader.fs, guest))
        except FileNotFoundError:
            return Change(guest, False, "", (f"no mailpreflight drop-in for {unit.id}",))
        old = read_in(fd, DROPIN_NAME, guest)
        if old is None:
            return Change(guest, False, "", (f"no mailpreflight drop-in for {unit.id}",))
        if not old.startswith(MARKER):
            raise MailpreflightError(f"{guest} was not written by mailpreflight; leaving it alone")
        backup = DROPIN_NAME + BACKUP_SUFFIX
        info = lstat_in(fd, backup)
        if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()):
            what = (describe(info.st_mode, info.st_rdev) if not stat.S_ISREG(info.st_mode)
                    else f"a file owned by uid {info.st_uid}")
            raise MailpreflightError(
                f"{guest}{BACKUP_SUFFIX} is {what}, not a backup mailpreflight made: it was neither read nor "
                "moved", hint=f"look at it, remove it, then run `mailpreflight dropin remove {unit.id}` again")
        restored = read_in(fd, backup, guest + BACKUP_SUFFIX) if info is not None else None
        change = diff(old, restored, guest)
        if dry_run:
            return Change(guest, False, change, ())
        if restored is not None:
            os.replace(backup, DROPIN_NAME, src_dir_fd=fd, dst_dir_fd=fd)
            message = f"restored your previous {guest}"
        else:
            os.unlink(DROPIN_NAME, dir_fd=fd)
            message = f"removed {guest}"
        os.fsync(fd)
    parts = guest_parts(guest)
    with directory(loader.fs.root, parts[:-2]) as parent:
        with contextlib.suppress(OSError):
            os.rmdir(parts[-2], dir_fd=parent)  # only succeeds if the directory is now empty
        os.fsync(parent)
    return Change(guest, True, change, (message,))


def show(loader: UnitLoader, name: str, program: str | None = None) -> tuple[str, bool | None]:
    """The installed drop-in's text, and whether it still matches what install would write now."""
    unit = loader.load(name)
    guest = f"{ETC_UNITS}/{unit.id}.d/{DROPIN_NAME}"
    text = _current(loader.fs, guest)
    if text is None:
        return f"no mailpreflight drop-in for {unit.id}", None
    timeout = _installed_timeout(text)
    try:
        current = plan(loader, name, timeout, program).text == text
    except MailpreflightError:
        current = False
    missing = _missing_programs(loader.fs, text)
    if missing:
        text += "".join(f"# MISSING in this root: {comment_text(path)} — systemd 252 logs 'Executable "
                        f"{comment_text(path)} missing, skipping' and records exit 0: the command never runs; run "
                        "`mailpreflight dropin "
                        f"install {unit.id}{' --root ROOT' if loader.fs.is_offline else ''}` again\n"
                        for path in missing)
        current = False
    return text, current


def _missing_programs(fs: RootFS, text: str) -> list[str]:
    """Programs of the drop-in's Exec lines that do not exist in the root it runs in."""
    found = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key not in ("ExecStartPre", "ExecStart") or not value.startswith("-"):
            continue  # only the lines this drop-in wraps (always `-`): the unit's own commands are check's business
        word = value.lstrip("-@:+!").split(" ", 1)[0].strip('"')
        if word.startswith("/") and fs.chase(word) is None:
            found.append(word)
    return list(dict.fromkeys(found))


def _installed_timeout(text: str) -> float:
    match = re.search(r"^#  - bound: ([0-9.]+) s per command$", text, re.M)
    if match:
        try:
            return float(match.group(1))
        except ValueError:
            pass
    for word_before, word in zip(text.split(), text.split()[1:], strict=False):
        if word_before == "--timeout":
            try:
                return float(word)
            except ValueError:
                break
    return DEFAULT_GUARD_TIMEOUT
