"""Every program a unit's start path runs, found statically: Exec lines, wrappers, `sh -c` scripts and shell
scripts the Exec line points to (read from the tree, one level deep). Nothing is ever executed."""

from __future__ import annotations

import posixpath
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import SYSTEMD_PATH, chased, kept, remembered
from mailpreflight.deps.guardline import UsageError, ok_statuses, parse_args
from mailpreflight.deps.shell import ShellReading, read_shell
from mailpreflight.deps.shell.status import compose, merge
from mailpreflight.model import Fate, FoundCommand, Source, StatusFate
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.loader import Unit, exec_environment, expand_command
from mailpreflight.units.unit import service_user

START_PATH_KEYS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost")  # in the order they run
SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox-sh"})
MAX_DEPTH = 4
# Shell builtins and helpers that never use the network: reporting them would only bury what matters.
QUIET = frozenset({"true", ":", "[", "test", "echo", "printf", "exit", "return", "shift", "set", "unset", "local",
                   "export", "readonly", "read", "cd", "umask", "trap", "wait", "sleep", "logger", "mkdir", "chown",
                   "chmod", "rm", "touch", "cat"})
SCRIPT_MAX_BYTES = 256 * 1024


@fast_init
@dataclass(frozen=True)
class _Context:
    """Where we are while unwrapping one Exec command."""

    key: str
    source: Source
    tolerated: bool
    why: tuple[str, ...]
    via: tuple[str, ...]
    user: str | None
    env: Mapping[str, str]  # never changed once in a context: the commands found share it
    depth: int = 0
    read_script: bool = True  # scripts are read one level deep only
    fates: tuple[StatusFate, ...] = ()  # what the script(s) around it do with its exit status, when they look
    bound: float | None = None  # seconds after which a wrapper kills it (timeout N, mailpreflight guard)
    bound_by: str = ""

def _with(context: _Context, **changes: Any) -> _Context:
    """dataclasses.replace() of a _Context without its introspection of the fields on every call (several per
    command; a fleet's units are thousands of commands): the same fields, some of them changed."""
    new = object.__new__(_Context)
    new.__dict__.update(context.__dict__, **changes)
    return new


def discover(unit: Unit, fs: RootFS) -> list[FoundCommand]:
    """The commands of ExecCondition/ExecStartPre/ExecStart/ExecStartPost, in the order they run."""
    environment = exec_environment(unit, fs)
    env = dict(environment.variables)
    env.setdefault("PATH", ":".join(SYSTEMD_PATH))  # systemd gives every service a PATH (systemd.exec(5))
    user = service_user(unit)
    found: list[FoundCommand] = []
    for key in START_PATH_KEYS:
        for command in unit.exec.get(key, ()):
            found.extend(discover_command(command, fs, env, user))
    return found


def discover_command(command: ExecCommand, fs: RootFS, env: Mapping[str, str],
                     user: str | None) -> list[FoundCommand]:
    """What one Exec command runs, through wrappers, shells and scripts."""
    why: tuple[str, ...] = ("'-' prefix",) if command.ignore_failure else ()
    if command.key == "ExecCondition":
        why += ("ExecCondition: exit 1-254 skips the unit rather than failing it",)
    context = _Context(command.key, command.source, bool(why), why, (), user, env)
    return _unwrap(list(expand_command(command, env.items())), context, fs)


def discover_argv(argv: Sequence[str], fs: RootFS, env: Mapping[str, str], key: str = "ExecStartPre",
                  source: Source | None = None) -> list[FoundCommand]:
    """What a command line runs, through wrappers, shells and scripts, when no unit is known (the guard: it has
    only its own argv, e.g. `/bin/bash -c "sa-update || true"`, and the environment systemd gave it)."""
    return _unwrap(list(argv), _Context(key, source or Source("guard", 0), False, (), (), None, env), fs)


def _unwrap(argv: list[str], context: _Context, fs: RootFS) -> list[FoundCommand]:
    if not argv or context.depth > MAX_DEPTH:
        return []
    tool = argv[0].rpartition("/")[2]  # posixpath.basename()
    if tool in QUIET and context.via:
        return []
    handler = _WRAPPERS.get(tool)
    if tool == "mailpreflight" and argv[0].startswith("/") and fs.chase(argv[0]) is None:
        handler = None  # a drop-in naming a guard the root does not have: its command never runs (MP114)
    if handler is not None:
        inner = handler(argv, context)
        if inner is not None:
            inner_argv, inner_context = inner
            return _unwrap(inner_argv, _with(inner_context, depth=context.depth + 1), fs)
    if tool in SHELLS:
        return _shell(argv, context, fs)
    script = _script_path(argv[0], fs, context.env) if context.read_script else None
    own = FoundCommand(tool, tuple(argv), context.key, context.source, context.tolerated, context.why,
                       context.via, context.user, context.env, status_fates=context.fates,
                       bound=context.bound, bound_by=context.bound_by)
    if script is None:
        return [own]
    # A shell script: report the script itself, then what it runs.
    text = _read_script(fs, script)
    if text is None:
        return [own]
    inner_context = _with(context, via=(*context.via, script), read_script=False)
    ends: list[str] = []
    runs = _script_commands(text, script, argv[1:], inner_context, fs, first_line_offset=0, ends=ends)
    return [replace(own, script=script, ends=ends[0] if ends else ""), *runs]


def _shell(argv: list[str], context: _Context, fs: RootFS) -> list[FoundCommand]:
    """`sh -c SCRIPT [NAME ARGS...]`, or `sh FILE ARGS...` (a script file read from the tree)."""
    words = argv[1:]
    script: str | None = None
    args: list[str] = []
    errexit = False
    while words:
        word = words.pop(0)
        short = word.startswith("-") and not word.startswith("--")
        errexit = errexit or (short and "e" in word[1:]) or (word == "-o" and words[:1] == ["errexit"])
        if word == "-c" or (short and "c" in word[1:]):
            if words:
                script = words.pop(0)
                args = words[1:]  # $0 is the first word after the script
            break
        if word.startswith("-") and word != "-":
            continue  # -x, -l, --login, ...
        path = _script_path(word, fs, context.env)
        text = _read_script(fs, path) if path and context.read_script else None
        if path is None or text is None:
            return [_plain(argv, context)]
        inner = _with(context, via=(*context.via, path), read_script=False)
        return _script_commands(text, path, words, inner, fs, first_line_offset=0)
    if script is None:
        return [_plain(argv, context)]
    inner = _with(context, via=(*context.via, f"{posixpath.basename(argv[0])} -c"))
    # `sh -e -c ...`: the same as a script starting with `set -e` (and the line numbers stay).
    return _script_commands(("set -e; " if errexit else "") + script, None, args, inner, fs, first_line_offset=0)


def _script_commands(text: str, path: str | None, args: Sequence[str], context: _Context, fs: RootFS,
                     first_line_offset: int, ends: list[str] | None = None) -> list[FoundCommand]:
    """The commands the script runs; `ends` gets where a guard the tree decides ends it, if one does."""
    # the script's own positional parameters ($1.., $#: "$@" expands to them), never its caller's
    env = {k: v for k, v in context.env.items() if not (k.isdigit() or k == "#")}
    env.update({str(i): a for i, a in enumerate(args, 1)})
    env["#"] = str(len(args))
    reading = _plain_reading(text) or read_shell(text, env, tree_test(fs, env))
    stop = reading.stop
    if stop is not None and ends is not None:
        where = f"{path}:{stop.line + first_line_offset}" if path else str(context.source)
        ends.append(f"exits {stop.status} at {where}: `{stop.condition}` {'holds' if stop.holds else 'fails'} in "
                    "this tree — nothing after it runs")
    found: list[FoundCommand] = []
    for command in reading.commands:
        source = Source(path, command.line + first_line_offset) if path else context.source
        # The script names the line that looks at the status; where that is, as the guest sees it.
        fates = tuple(replace(f, where=f"{path}:{int(f.where) + first_line_offset}" if path else str(context.source))
                      for f in command.status_fates) if command.status_fates else ()
        inner = _with(
            context, source=source, tolerated=context.tolerated or command.tolerated,
            why=context.why + tuple(command.why), env={**env, **command.assignments} if command.assignments else env,
            fates=compose(context.fates, fates), depth=context.depth + 1)
        found.extend(_unwrap(list(command.argv), inner, fs))
    return found


# A plain script: simple commands of literal words joined by `||`, `&&`, `;`, `|`, `&` (`sa-update || true`, what a
# fleet's units run). Nothing in it reads or sets a variable, decides a guard or defines a function, so reading it
# gives the same commands whatever the environment, each with the environment given: _script_commands() adds that
# to every command's (empty) assignments from a reading without one, remembered per text.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 ._/:,+@%|&;-]*")
_NOT_PLAIN = frozenset({
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "in", "function",
    "select", "time", "coproc", "set", "shift", "read", "unset", "export", "local", "readonly", "declare", "typeset",
    "getopts", "eval", "source", "exec", "exit", "return", "break", "continue", "alias", "unalias", "command", "type",
    "which", "test", "let", "trap", "cd", "wait", "mapfile", "readarray", "printf", "hash", "shopt", "enable",
    "builtin", "."})
_PLAIN_READINGS: dict[str, ShellReading] = {}
_PLAIN_TEXT_MAX = 1024


def _plain_reading(text: str) -> ShellReading | None:
    """The reading of a plain script (None for any other) without an environment, remembered."""
    found = _PLAIN_READINGS.get(text)
    if found is not None:
        return found
    if len(text) > _PLAIN_TEXT_MAX or not _PLAIN_TEXT.fullmatch(text) or \
            _NOT_PLAIN.intersection(re.split(r"[\s|&;]+", text)):
        return None
    return remembered(_PLAIN_READINGS, text, lambda: read_shell(text, {}, None))


_BUILTINS = frozenset({"cd", "command", "echo", "eval", "exec", "exit", "export", "printf", "pwd", "read", "set",
                       "shift", "test", "[", "trap", "true", "false", "type", "umask", "unset", "wait", ":", "."})
_FILE_TESTS = {"-e": "exists", "-f": "file", "-d": "dir", "-x": "executable", "-s": "non-empty", "-r": "exists",
               "-L": "link", "-h": "link"}


def tree_test(fs: RootFS, env: Mapping[str, str]) -> Callable[[Sequence[str]], bool | None]:
    """What a script's test gives in the tree: `test -x /usr/bin/sa-update`, `[ -f FILE ]`, `command -v gpg`,
    `which gpg`, `type gpg` (PATH from the environment). None for anything else, or a path not known here."""
    def program(name: str) -> bool | None:
        if "$" in name or "`" in name:
            return None
        path = env.get("PATH", ":".join(SYSTEMD_PATH))
        if "$" in path:
            return None
        candidates = [name] if "/" in name else [posixpath.join(d, name) for d in path.split(":") if d.startswith("/")]
        return any(_file_test(fs, "-x", c) and _file_test(fs, "-f", c) for c in candidates)

    def decide(argv: Sequence[str]) -> bool | None:
        words = list(argv)
        if words[:1] in (["command"], ["type"]) and words[1:2] in (["-v"], ["-V"], []) and len(words) >= 2:
            name = words[-1]
            return True if name in _BUILTINS else program(name) if len(words) <= 3 else None
        if words[:1] == ["which"] and len(words) == 2:
            return program(words[1])
        if words[:1] == ["test"]:
            words = words[1:]
        elif words[:1] in (["["], ["[["]) and words[-1:] in (["]"], ["]]"]):
            words = words[1:-1]
        else:
            return None
        negated = words[:1] == ["!"]
        words = words[1:] if negated else words
        if len(words) != 2 or words[0] not in _FILE_TESTS or not words[1].startswith("/") or "$" in words[1]:
            return None
        result = _file_test(fs, words[0], words[1])
        return None if result is None else result != negated
    return decide


def _file_test(fs: RootFS, test: str, path: str) -> bool | None:
    info = fs.lstat(path) if test in ("-L", "-h") else None
    if test in ("-L", "-h"):
        return info is not None and stat.S_ISLNK(info.st_mode)
    real = fs.chase(path)
    info = fs.lstat(real) if real else None
    if info is None:
        return False
    kind = _FILE_TESTS[test]
    if kind == "file":
        return stat.S_ISREG(info.st_mode)
    if kind == "dir":
        return stat.S_ISDIR(info.st_mode)
    if kind == "executable":
        return bool(info.st_mode & 0o111)
    if kind == "non-empty":
        return info.st_size > 0
    return True


def _plain(argv: list[str], context: _Context) -> FoundCommand:
    return FoundCommand(posixpath.basename(argv[0]), tuple(argv), context.key, context.source, context.tolerated,
                        context.why, context.via, context.user, context.env, status_fates=context.fates)


def _script_path(program: str, fs: RootFS, env: Mapping[str, str]) -> str | None:
    """The guest path of a shell script the program names, if it is one (remembered a while, kept(): every unit
    of a fleet runs the same few programs)."""
    search = None if program.startswith("/") else env.get("PATH")
    return kept(fs, "_script_path", (program, search), lambda: _find_script(program, fs, env))


def _find_script(program: str, fs: RootFS, env: Mapping[str, str]) -> str | None:
    candidates = [program] if program.startswith("/") else [
        f"{d}/{program}" for d in env.get("PATH", ":".join(SYSTEMD_PATH)).split(":") if d.startswith("/")]
    for candidate in candidates:
        resolved = chased(fs, candidate)
        if resolved is None:
            continue
        try:
            head = fs.read_head(resolved, 128)  # a binary of any size is no script, and no refusal either
        except OSError:
            return None
        if not head.startswith(b"#!"):
            return None
        interpreter = head[2:].split(b"\n", 1)[0].split()
        names = [posixpath.basename(w.decode("utf-8", "replace")) for w in interpreter[:2]]
        is_shell = bool(names) and (names[0] in SHELLS or (names[0] == "env" and len(names) > 1
                                                            and names[1] in SHELLS))
        return candidate if is_shell else None
    return None


def _read_script(fs: RootFS, path: str) -> str | None:
    try:
        return fs.read_bytes(path, SCRIPT_MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


# -- wrappers: each returns the wrapped argv and the context it runs in, or None if it wraps nothing ----
def _after_options(words: list[str], with_value: frozenset[str], stop_at_double_dash: bool = True) -> list[str]:
    """Skip leading options (and the values of those that take one); returns the rest."""
    rest = list(words)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        if word == "--" and stop_at_double_dash:
            break
        name = word.split("=", 1)[0]
        if name in with_value and "=" not in word and rest:
            rest.pop(0)
    return rest


def _env(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    rest = list(argv[1:])
    env = dict(context.env)
    while rest:
        word = rest[0]
        if word in ("-i", "--ignore-environment", "-"):
            env = {}
        elif word in ("-u", "--unset") and len(rest) > 1:
            env.pop(rest.pop(1), None)
        elif word.startswith("--unset="):
            env.pop(word.split("=", 1)[1], None)
        elif word in ("-C", "--chdir", "-S", "--split-string") and len(rest) > 1:
            rest.pop(1)
        elif word == "--":
            rest.pop(0)
            break
        elif "=" in word and not word.startswith("-"):
            name, _, value = word.partition("=")
            env[name] = value
        elif not word.startswith("-"):
            break
        rest.pop(0)
    return (rest, _with(context, env=env, via=(*context.via, "env"))) if rest else None


Handler = Callable[[list[str], "_Context"], "tuple[list[str], _Context] | None"]


def _simple(with_value: frozenset[str], positional: int = 0) -> Handler:
    """A wrapper `tool [options] [N positional args] COMMAND...` (timeout, nice, ionice, setpriv, ...)."""
    def handler(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
        rest = _after_options(argv[1:], with_value)[positional:]
        name = posixpath.basename(argv[0])
        return (rest, _with(context, via=(*context.via, name))) if rest else None
    return handler


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float | None:
    """timeout(1)'s DURATION: a number with an optional s/m/h/d suffix; 0 means no limit (None)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    return seconds if seconds > 0 else None


def _bounded(context: _Context, seconds: float, by: str) -> _Context:
    """The context of a command a wrapper kills after `seconds` (the tighter of nested bounds wins)."""
    if context.bound is not None and context.bound <= seconds:
        return context
    return _with(context, bound=seconds, bound_by=by)


def _timeout(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    """coreutils `timeout [-k KILL] DURATION COMMAND...`: TERM at DURATION, KILL after KILL more (without -k,
    a command that ignores TERM is not stopped: the bound is DURATION, what sa-update and curl do on TERM)."""
    rest = list(argv[1:])
    kill_after = 0.0
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        if word == "--":
            break
        name, equals, value = word.partition("=")
        if name in ("-s", "--signal", "-k", "--kill-after") and not equals and rest:
            value = rest.pop(0)
        elif name.startswith("-k") and len(name) > 2:
            value = name[2:]
        if name.startswith(("-k", "--kill-after")):
            kill_after = _duration(value) or 0.0
    if len(rest) < 2:
        return None
    limit = _duration(rest[0])
    inner = _with(context, via=(*context.via, "timeout"))
    if limit is not None:
        inner = _bounded(inner, limit + kill_after, f"timeout {rest[0]}")
    return rest[1:], inner


def _mailpreflight(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    """`mailpreflight guard [OPTIONS] -- COMMAND...` (our drop-in), read with the guard's own parser: COMMAND is
    stopped after --timeout + --grace, the guard is done --diagnose-budget later; it exits 0 (with --strict: 0
    for the statuses it counts as success, else the command's). A line the guard refuses runs nothing."""
    if argv[1:2] != ["guard"]:
        return None
    words = argv[2:]
    head = words[:words.index("--")] if "--" in words else words
    if any(word == "-h" or word.startswith("--h") for word in head):
        return None  # the guard prints its help and runs nothing (and argparse's help must not print here)
    try:
        options = parse_args(words)
    except UsageError:
        return None
    inner = _with(context, via=(*context.via, "mailpreflight guard"))
    if options.strict:
        ok = ok_statuses(options.command[0], options.ok_status)
        where = str(context.source)
        fates = merge([(Fate.EXITS, 0, where) if status in ok else (Fate.PASSES, None, where)
                       for status in range(256)])
        inner = _with(inner, why=(*context.why, "status checked by mailpreflight guard --strict"),
                      fates=compose(context.fates, fates))
    else:
        inner = _with(inner, tolerated=True, why=(*context.why, "mailpreflight guard (exits 0)"))
    return options.command, _bounded(inner, options.timeout + options.grace + options.diagnose_budget,
                                     f"mailpreflight guard --timeout {options.timeout:g}")


def _runuser(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    """runuser -u USER -- CMD | runuser [-] USER -c SCRIPT (and su alike)."""
    name = posixpath.basename(argv[0])
    rest = list(argv[1:])
    user: str | None = None
    script: str | None = None
    shell = "/bin/sh"
    positional: list[str] = []
    while rest:
        word = rest.pop(0)
        if word in ("-u", "--user") and rest:
            user = rest.pop(0)
        elif word.startswith("--user="):
            user = word.split("=", 1)[1]
        elif word in ("-c", "--command") and rest:
            script = rest.pop(0)
        elif word.startswith("--command="):
            script = word.split("=", 1)[1]
        elif word in ("-s", "--shell", "-g", "--group", "-G", "--supp-group", "-w",
                      "--whitelist-environment") and rest:
            value = rest.pop(0)
            shell = value if word in ("-s", "--shell") else shell
        elif word == "--":
            positional += rest
            break
        elif word in ("-", "-l", "--login", "-m", "-p", "--preserve-environment", "-f", "-P", "--pty"):
            continue
        else:
            positional.append(word)
    via = (*context.via, name)
    if script is not None:
        who = user or (positional[0] if positional else "root")
        return [shell, "-c", script], _with(context, user=who, via=via)
    if user is not None and positional:
        return positional, _with(context, user=user, via=via)
    return None


def _sudo(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    rest = list(argv[1:])
    user = "root"
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if word == "--":
            break
        if word in ("-u", "--user") and rest:
            user = rest.pop(0)
        elif word in ("-g", "--group", "-C", "--close-from", "-h", "--host", "-p", "--prompt", "-r", "--role",
                      "-t", "--type", "-D", "--chdir") and rest:
            rest.pop(0)
    return (rest, _with(context, user=user, via=(*context.via, "sudo"))) if rest else None


def _chpst(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    rest = list(argv[1:])
    user = context.user
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if word in ("-u", "-U", "-e", "-/", "-n", "-l", "-L", "-m", "-d", "-o", "-p", "-f", "-c", "-r", "-t") \
                and rest:
            value = rest.pop(0)
            if word in ("-u", "-U"):
                user = value.lstrip(":").split(":", 1)[0]
    return (rest, _with(context, user=user, via=(*context.via, "chpst"))) if rest else None


def _start_stop_daemon(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    rest = list(argv[1:])
    executable: str | None = None
    user = context.user
    args: list[str] = []
    while rest:
        word = rest.pop(0)
        if word == "--":
            args = rest
            break
        name, equals, value = word.partition("=")
        takes = name in ("-x", "--exec", "-a", "--startas", "-c", "--chuid", "-u", "--user", "-p", "--pidfile",
                         "-n", "--name", "-d", "--chdir", "-r", "--chroot", "-N", "--nicelevel", "-g", "--group",
                         "-k", "--umask", "-P", "--procsched", "-I", "--iosched", "-R", "--retry", "-s",
                         "--signal", "--remove-pidfile", "--notify-timeout", "--output")
        if takes and not equals and rest:
            value = rest.pop(0)
        if name in ("-x", "--exec", "-a", "--startas"):
            executable = value
        elif name in ("-c", "--chuid"):
            user = value.split(":", 1)[0]
    if executable is None:
        return None
    return [executable, *args], _with(context, user=user, via=(*context.via, "start-stop-daemon"))


def _flock(argv: list[str], context: _Context) -> tuple[list[str], _Context] | None:
    rest = _after_options(argv[1:], frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}))
    if len(rest) >= 3 and rest[1] in ("-c", "--command"):
        return ["/bin/sh", "-c", rest[2]], _with(context, via=(*context.via, "flock"))
    return (rest[1:], _with(context, via=(*context.via, "flock"))) if len(rest) > 1 else None


_WRAPPERS: dict[str, Handler] = {
    "env": _env,
    "timeout": _timeout,
    "mailpreflight": _mailpreflight,
    "nice": _simple(frozenset({"-n", "--adjustment"})),
    "ionice": _simple(frozenset({"-c", "--class", "-n", "--classdata", "-p", "--pid", "-P", "--pgid", "-u",
                                 "--uid"})),
    "setpriv": _simple(frozenset({"--reuid", "--regid", "--groups", "--inh-caps", "--ambient-caps",
                                  "--bounding-set", "--securebits", "--pdeathsig", "--selinux-label",
                                  "--apparmor-profile", "--ruid", "--euid", "--rgid", "--egid"})),
    "nohup": _simple(frozenset()),
    "stdbuf": _simple(frozenset({"-i", "-o", "-e", "--input", "--output", "--error"})),
    "chrt": _simple(frozenset(), positional=1),
    "taskset": _simple(frozenset(), positional=1),
    "systemd-cat": _simple(frozenset({"-t", "--identifier", "-p", "--priority", "--stderr-priority"})),
    "runuser": _runuser,
    "su": _runuser,
    "sudo": _sudo,
    "chpst": _chpst,
    "start-stop-daemon": _start_stop_daemon,
    "flock": _flock,
}
