"""Reading a shell script's syntax tree: every simple command it may run, in order, and whether its failure
becomes the script's exit status (`set -e`, `||`, `if`, pipelines, subshells, functions, `exit`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailpreflight.deps.shell.expand import ASSIGN, VARIABLE, Expansion, small_count, split_fields
from mailpreflight.deps.shell.lexer import Tok
from mailpreflight.deps.shell.memo import parsed
from mailpreflight.deps.shell.status import MAX_CHECKS, StatusReader, mentions, reads, status_name
from mailpreflight.deps.shell.syntax import (
    AndOr,
    Case,
    Group,
    If,
    List,
    Loop,
    Node,
    Pipe,
    Simple,
    leading_words,
)
from mailpreflight.model import Fate, StatusFate
from mailpreflight.model.fastinit import fast_init


@fast_init
@dataclass(frozen=True)
class ShellCommand:
    """One simple command the script may run."""

    argv: tuple[str, ...]  # after quote removal; known $VARs expanded, unknown ones left as written
    line: int  # 1-based line of the script where the command starts
    tolerated: bool  # its failure does not make the script exit non-zero
    why: tuple[str, ...]  # why it is tolerated ("'|| true'", "if condition", …); () when it is not
    assignments: Mapping[str, str]  # variables in effect for it: the env given, script assignments, NAME=v prefixes
    background: bool  # run with '&'
    # "status checked by the script": what the script does for each exit status (`where` is the line that looks)
    status_fates: tuple[StatusFate, ...] = ()

    def fate_of(self, status: int) -> StatusFate | None:
        return next((f for f in self.status_fates if f.low <= status <= f.high), None)


@dataclass(frozen=True)
class Stop:
    """Where a guard such as `command -v gpg >/dev/null || exit 0` ends the script, as the tree decides it."""

    line: int
    status: int  # the script's exit status there
    condition: str  # the test, as it runs: "command -v gpg"
    holds: bool  # what the test gives in the tree


@fast_init
@dataclass(frozen=True)
class ShellReading:
    """What read_shell() makes of a script: the simple commands it may run, in order, what could not be read, and
    whether an `exit` or a guard ends it early."""

    commands: tuple[ShellCommand, ...]
    warnings: tuple[str, ...]  # what could not be read or followed, "line N: …"
    exits_early: bool  # an unconditional `exit` (or `exec`) ends the script; nothing after it is reported
    stop: Stop | None = None  # a guard the tree decides ends the script there: nothing after it runs


Decide = Callable[[Sequence[str]], "bool | None"]  # a test's outcome in the tree (`test -x F`, `command -v P`)


_OR, _IF = "'|| <fallback>'", "if condition"
CHECKED = "status checked by the script"
PIPE = "pipeline (only the last command's status counts)"
SUBSTITUTION = "command substitution (status ignored)"
_TRUE = {"true": "'|| true'", "/bin/true": "'|| true'", "/usr/bin/true": "'|| true'", ":": "'|| :'"}
_DECLARE = frozenset({"export", "local", "readonly", "declare", "typeset"})
_CONTROL = frozenset({"exit", "return", "break", "continue"})


# --- Reading ---------------------------------------------------------------------------------------------------

@fast_init
@dataclass(frozen=True)
class _Ctx:
    """Where a command stands, i.e. what its failure amounts to."""

    why: tuple[str, ...] = ()  # why its status does not become the script's; () = it does
    guarded: bool = False  # `set -e` does not act here (condition, left of && / ||, '!', pipeline part)
    exit_why: tuple[str, ...] = ()  # what a failing `exit` here amounts to: () in the script's shell
    return_why: tuple[str, ...] = ()  # what a failing `return` here amounts to: the function call's
    negated_why: tuple[str, ...] | None = None  # `why` for `! cmd` here, when not simply "'!' negation"
    main: bool = True  # runs unconditionally in the script's own shell: an `exit` here ends the script
    background: bool = False
    fates: tuple[StatusFate, ...] = ()  # with CHECKED in `why`: what the script does with each status
    fallback: tuple[str, tuple[StatusFate, ...]] | None = None  # `cmd || rc=$?`: (rc, what reading rc does)

    def absorb(self, reason: str) -> _Ctx:
        return self if reason in self.why else _with(self, why=(*self.why, reason))

    def guard(self) -> _Ctx:
        return _with(self, guarded=True, main=False)


def _with(ctx: _Ctx, **changes: Any) -> _Ctx:
    """dataclasses.replace() of a _Ctx without its introspection of the fields on every call (the reader makes a
    few per command; a fleet's units are thousands of commands): the same fields, some of them changed."""
    new = object.__new__(_Ctx)
    new.__dict__.update(ctx.__dict__, **changes)
    return new


class _Reader(Expansion):
    def __init__(self, env: Mapping[str, str], decide: Decide | None = None) -> None:
        self.decide = decide
        self.stop: Stop | None = None
        self.checks = 0  # statements that look at a status, read so far
        self.vars: dict[str, str] = dict(env)
        self.functions: dict[str, Node] = {}
        self.errexit = self.pipefail = False
        self.depth = 0  # function calls being followed
        self.commands: list[ShellCommand] = []
        self.warnings: list[str] = []
        self.exits_early = False

    def script(self, text: str, line: int, ctx: _Ctx) -> None:
        tree, warnings = parsed(text, line, self.warnings)
        self.warnings.extend(warnings)
        self._list(tree, ctx)

    @contextmanager
    def _subshell(self) -> Iterator[None]:
        """Assignments, `set` options and functions made in a subshell stay there."""
        saved = dict(self.vars), dict(self.functions), self.errexit, self.pipefail
        try:
            yield
        finally:
            self.vars, self.functions, self.errexit, self.pipefail = saved

    def _effective(self, ctx: _Ctx) -> tuple[str, ...]:
        """`set -e` turns any unguarded failure into an exit of the current shell."""
        return ctx.exit_why if self.errexit and not ctx.guarded else ctx.why

    def _sub_ctx(self, ctx: _Ctx) -> _Ctx:
        """Inside a subshell: its exit status stands where the subshell stands."""
        why = self._effective(ctx)
        return _with(ctx, why=why, exit_why=why, main=False)

    def _list(self, statements: List, ctx: _Ctx) -> None:
        items = statements.items
        for index, (statement, background) in enumerate(items):
            if self.stop is not None:
                return
            if ctx.main and not background and self.decide is not None:
                self.stop = self._gate(statement)
                if self.stop is not None:
                    self.exits_early = True
                    return
            end = None if background else self._flow_end(statement)
            ends = end is not None and (end[0] in ("exit", "exec") or (end[0] == "return" and self.depth > 0))
            following = items[index + 1][0] if index + 1 < len(items) else None
            passes = self._flow_end(following) if following is not None else None
            if background:
                sub = _with(self._sub_ctx(ctx.guard()).absorb("background"), background=True)
                sub = _with(sub, exit_why=sub.why)
            elif ends or following is None or (passes is not None and passes[0] in ("exit", "return")
                                                  and passes[1] in ("", "$?")):
                sub = ctx  # the last statement, or followed by a plain `exit` that passes its status on
            elif any("$?" in w or "${?}" in w for w in leading_words(following)):
                sub = _with(ctx.absorb(CHECKED), fates=self._checked(items, index + 1, ctx))
            elif (kept := self._kept_status(statement, items, index + 1, ctx)) is not None:
                sub = _with(ctx, fallback=kept)  # `cmd || rc=$?`, then a look at $rc
            else:
                sub = ctx.absorb("not the last command")
            self._and_or(statement, sub if sub is ctx else _with(sub, negated_why=None))
            if ends:
                break

    def _gate(self, statement: AndOr) -> Stop | None:
        """`TEST || exit N`, `TEST && exit N`, `if [!] TEST; then exit N; fi` with a TEST the tree decides (a file's
        presence, a program in PATH): the Stop when the script ends there."""
        test: Pipe | None = None
        exits_when = False
        end: tuple[str, str] | None = None
        if len(statement.pipes) == 2 and len(statement.pipes[0].cmds) == 1:
            test, exits_when = statement.pipes[0], statement.ops[0] == "&&"
            end = self._flow_end(AndOr([statement.pipes[1]], []))
        elif len(statement.pipes) == 1 and len(statement.pipes[0].cmds) == 1 and not statement.pipes[0].negated:
            node = statement.pipes[0].cmds[0]
            if isinstance(node, If) and len(node.clauses) == 1 and node.orelse is None:
                condition, body = node.clauses[0]
                if len(condition.items) == 1 and len(condition.items[0][0].pipes) == 1:
                    test, exits_when = condition.items[0][0].pipes[0], True
                    end = self._flow_end(Group(body, False))
        if test is None or end is None or end[0] != "exit" or not end[1].isdigit() or \
                len(test.cmds) != 1 or not isinstance(test.cmds[0], Simple):
            return None
        words = test.cmds[0].words
        argv = [f for tok in words for f in split_fields(self._pieces(tok.text, tok.line, []))]
        holds = self.decide(argv) if self.decide is not None and argv else None
        if holds is None or (holds != test.negated) != exits_when:
            return None
        return Stop(words[0].line, int(end[1]) % 256, " ".join(argv), holds)

    def _checked(self, items: list[tuple[AndOr, bool]], start: int, ctx: _Ctx) -> tuple[StatusFate, ...]:
        """The fates of a status the statement items[start] looks at (`case $?`, `rc=$?` then a test of $rc)."""
        statement, background = items[start]
        if background:  # `case $? … &`: an exit there leaves the background job only
            return (StatusFate(0, 255, Fate.GOES_ON, None, str(self._line(statement))),)
        name = status_name(statement)
        if name is None:
            return self._fates(statement, start == len(items) - 1, ctx, lambda s: {"?": s}, statement)
        return self._kept_fates(name, items, start + 1, ctx, lambda s: {name: s, "?": 0}, self._line(statement))

    def _kept_status(self, statement: AndOr, items: list[tuple[AndOr, bool]], start: int,
                     ctx: _Ctx) -> tuple[str, tuple[StatusFate, ...]] | None:
        """`cmd || NAME=$?` where a later statement looks at $NAME: (NAME, its fates). NAME keeps its value
        when cmd succeeds: only a value known here (`rc=0` before) says what that is."""
        if len(statement.pipes) < 2 or statement.ops[-1] != "||":
            return None
        name = status_name(AndOr([statement.pipes[-1]], []))
        if name is None or not any(mentions(leading_words(item), name) for item, _ in items[start:]):
            return None
        # On success NAME keeps the value it had: known (`rc=0` before) or not, the reader's variables say.
        return name, self._kept_fates(name, items, start, ctx, lambda s: {name: s, "?": 0} if s else {"?": 0},
                                      self._line(statement))

    def _kept_fates(self, name: str, items: list[tuple[AndOr, bool]], start: int, ctx: _Ctx,
                    values: Callable[[int], dict[str, int]], line: int) -> tuple[StatusFate, ...]:
        """The status kept in NAME (at `line`): what the statement after looks at, when it does at once."""
        following = items[start][0] if start < len(items) else None
        if following is not None and reads(following, name):
            return self._fates(following, start == len(items) - 1, ctx, values, following)
        later = any(mentions(leading_words(item), name) for item, _ in items[start:])
        fate = Fate.UNKNOWN if later else Fate.GOES_ON  # looked at later, after other commands: not read here
        return (StatusFate(0, 255, fate, None, str(line)),)

    def _fates(self, statement: AndOr, last: bool, ctx: _Ctx, values: Callable[[int], dict[str, int]],
               where: AndOr) -> tuple[StatusFate, ...]:
        self.checks += 1
        if self.checks > MAX_CHECKS:  # bounded work on any input: the rest is not read
            return (StatusFate(0, 255, Fate.UNKNOWN, None, str(self._line(where))),)
        reader = StatusReader(self._flow_end, self.errexit, ctx.exit_why, ctx.return_why, self.vars)
        return reader.fates(statement, last, values, self._line(where))

    @staticmethod
    def _line(statement: AndOr) -> int:
        node = statement.pipes[0].cmds[0] if statement.pipes and statement.pipes[0].cmds else None
        while node is not None and not isinstance(node, Simple):
            if isinstance(node, Group) and node.body.items:
                node = node.body.items[0][0].pipes[0].cmds[0] if node.body.items[0][0].pipes[0].cmds else None
            elif isinstance(node, If) and node.clauses[0][0].items:
                first = node.clauses[0][0].items[0][0]
                node = first.pipes[0].cmds[0] if first.pipes[0].cmds else None
            elif isinstance(node, Case) and node.subject is not None:
                return node.subject.line
            else:
                return 0
        return node.line if node is not None else 0

    def _flow_end(self, node: AndOr | Node, depth: int = 0) -> tuple[str, str] | None:
        """("exit" | "return" | "exec" | "status", argument) when `node` always ends the flow, else None;
        "status" is a function call that returns: its status passes on, the caller goes on."""
        if isinstance(node, AndOr):
            lone = len(node.pipes) == 1 and not node.pipes[0].negated and len(node.pipes[0].cmds) == 1
            return self._flow_end(node.pipes[0].cmds[0], depth) if lone else None
        if isinstance(node, Group) and not node.subshell:
            for statement, background in node.body.items:
                end = None if background else self._flow_end(statement, depth)
                if end is not None:
                    return end
        if not isinstance(node, Simple):
            return None
        words = [w.text for w in node.words]
        while words and ASSIGN.match(words[0]):
            words.pop(0)
        if words and words[0] in ("exit", "return"):
            return words[0], words[1].strip("\"'") if len(words) > 1 else ""
        if words and words[0] == "exec" and len(words) > 1:
            return "exec", ""
        body = self.functions.get(words[0]) if words else None
        if body is None or depth >= 3:
            return None
        end = self._flow_end(body, depth + 1)
        return ("status", end[1]) if end is not None and end[0] == "return" else end

    def _on_failure(self, then: AndOr | Node | None, ctx: _Ctx, reason: str) -> _Ctx:
        """Context of a command whose failure runs `then` next (what follows `||`, the branch an `if` takes):
        tolerated for `reason`, unless `then` always exits non-zero."""
        if reason == _OR and isinstance(then, AndOr) and ctx.fallback and status_name(then) == ctx.fallback[0]:
            return _with(ctx.absorb(CHECKED), fates=ctx.fallback[1], fallback=None).guard()
        if reason == _OR and isinstance(then, AndOr) and len(then.pipes[0].cmds) == 1:
            cmd = then.pipes[0].cmds[0]
            if isinstance(cmd, Simple) and cmd.words[0].text in _TRUE and not then.pipes[0].negated:
                return ctx.absorb(_TRUE[cmd.words[0].text]).guard()
        end = self._flow_end(then) if then is not None else None
        if end is not None and end[0] in ("exit", "return", "status"):
            if end[1] != "0":
                return _with(ctx, why={"exit": ctx.exit_why, "return": ctx.return_why}.get(end[0], ctx.why)).guard()
            if reason == _OR and end[0] != "status":
                reason = f"'|| {end[0]} 0'"
        return ctx.absorb(reason).guard()

    def _and_or(self, node: AndOr, ctx: _Ctx) -> None:
        pipes, ops = node.pipes, node.ops
        for index, pipe in enumerate(pipes):
            sub = ctx
            if index < len(ops):
                # A failure skips the `&&`s up to the next `||` (whose command then runs), or ends the list.
                rescue = next((k for k in range(index, len(ops)) if ops[k] == "||"), None)
                sub = ctx.guard() if rescue is None else self._on_failure(AndOr([pipes[rescue + 1]], []), ctx, _OR)
                # `! cmd` succeeding ends the list with status 0 unless an `&&` follows.
                ends_ok = "&&" not in ops[index:]
                sub = _with(sub, negated_why=ctx.negated_why if ends_ok else None)
            self._pipeline(pipe, sub if index == 0 else _with(sub, main=False))

    def _pipeline(self, pipe: Pipe, ctx: _Ctx) -> None:
        if pipe.negated and ctx.negated_why is not None:  # `if ! cmd; then exit 1; fi`: cmd failing exits
            ctx = _with(ctx, why=ctx.negated_why, negated_why=None).guard()
        elif pipe.negated:
            ctx = ctx.absorb("'!' negation").guard()
        for index, cmd in enumerate(pipe.cmds):
            sub = ctx
            if index < len(pipe.cmds) - 1 and not self.pipefail:
                sub = ctx.absorb(PIPE).guard()
            if len(pipe.cmds) == 1:
                self._command(cmd, sub)
                continue
            with self._subshell():  # bash runs each part of a pipeline in a subshell
                self._command(cmd, self._sub_ctx(sub))

    def _command(self, node: Node, ctx: _Ctx) -> None:
        if isinstance(node, Simple):
            self._simple(node, ctx)
        elif isinstance(node, Group) and node.subshell:
            with self._subshell():
                self._list(node.body, self._sub_ctx(ctx))
        elif isinstance(node, Group):
            self._list(node.body, ctx)
        elif isinstance(node, If):
            for index, (cond, body) in enumerate(node.clauses):
                # A failing condition runs the else branch (after the last elif), a failing `! cond` the body.
                last = index == len(node.clauses) - 1 and node.orelse is not None
                otherwise = self._on_failure(Group(node.orelse, False) if last and node.orelse else None, ctx, _IF)
                negated = self._on_failure(Group(body, False), ctx, _IF)
                self._list(cond, _with(otherwise, negated_why=negated.why))
                self._list(body, _with(ctx, main=False))
            if node.orelse is not None:
                self._list(node.orelse, _with(ctx, main=False))
        elif isinstance(node, Loop):
            if node.cond is not None:
                self._list(node.cond, ctx.absorb("while/until condition").guard())
            elif VARIABLE.fullmatch(node.var):
                values = self._expand(node.words, ctx)
                single = len(values) == 1 and not any(c in values[0] for c in "*?[")  # a glob may be many
                self._assign({node.var: values[0] if single else None})
            # Simplification: a body is read once; it stands where the loop stands.
            self._list(node.body, _with(ctx.absorb("loop body") if ctx.why else ctx, main=False))
        elif isinstance(node, Case):
            self._expand([node.subject] if node.subject else [], ctx)
            for branch in node.branches:
                self._list(branch, _with(ctx, main=False))
        else:
            self.functions[node.name] = node.body

    def _expand(self, words: list[Tok], ctx: _Ctx) -> list[str]:
        """Words of a `for` or `case`: their command substitutions run, their status is lost."""
        subs: list[tuple[str, int]] = []
        fields = [f for tok in words for f in self.fields(tok.text, tok.line, subs)]
        self._substitutions(subs, self._subst_ctx(ctx))
        return fields

    def _subst_ctx(self, ctx: _Ctx) -> _Ctx:
        why = (SUBSTITUTION,)
        return _Ctx(why, guarded=True, exit_why=why, return_why=why, main=False, background=ctx.background)

    def _substitutions(self, subs: list[tuple[str, int]], ctx: _Ctx) -> None:
        for text, line in subs:
            with self._subshell():
                self.script(text, line, ctx)

    def _assign_word(self, tok: Tok, subs: list[tuple[str, int]]) -> None:
        """NAME=value (or NAME+=value, which appends); anything else is ignored."""
        match = ASSIGN.match(tok.text)
        if match is None:
            return
        pieces = self._pieces(tok.text[match.end():], tok.line, subs)
        old = self.vars.get(match[1]) if match[2] else ""
        known = old is not None and all(kind != "raw" for _, kind in pieces)
        self._assign({match[1]: f"{old}{''.join(text for text, _ in pieces)}" if known else None})

    def _simple(self, node: Simple, ctx: _Ctx) -> None:
        subs: list[tuple[str, int]] = []
        if node.words[0].text in _DECLARE:  # export NAME=v: the builtin's own status hides its substitutions'
            for tok in node.words[1:]:
                self._assign_word(tok, subs)
            self._substitutions(subs, self._subst_ctx(ctx))
            return
        count = next((i for i, tok in enumerate(node.words) if not ASSIGN.match(tok.text)), len(node.words))
        # The words expand first, then the NAME=v prefixes, left to right: `NAME=v cmd "$NAME"` does not see v.
        argv = [f for tok in node.words[count:] for f in self.fields(tok.text, tok.line, subs)]
        saved = dict(self.vars)
        for tok in node.words[:count]:
            self._assign_word(tok, subs)
        if not argv:
            # A bare assignment's status is its last command substitution's: `out=$(sa-update)` fails with it.
            self._substitutions(subs, self._sub_ctx(ctx).guard())
            return
        env, self.vars = self.vars, saved  # prefixes are for this command only
        self._substitutions(subs, self._subst_ctx(ctx))
        self._run(argv, node.line, ctx, env)

    def _run(self, argv: list[str], line: int, ctx: _Ctx, env: dict[str, str]) -> None:
        name = argv[0]
        if name in _CONTROL:
            self.exits_early |= name == "exit" and ctx.main
            return
        if name == "set":
            self._set(argv[1:])
            return
        if name == "shift":  # $2.. become $1..; a count not known here: the parameters are no longer known
            values, count = self.positional(), argv[1] if len(argv) > 1 else "1"
            self.set_positional(values[int(count):] if values is not None and small_count(count)
                                and int(count) <= len(values) else None)
            return
        if name == "read":  # the variables it sets are not known here
            self._assign({arg: None for arg in argv[1:] if VARIABLE.fullmatch(arg)})
        if name == "exec":  # replaces the shell: the command's status is the script's, nothing runs after
            argv = argv[1:]
            while argv and argv[0] in ("-c", "-l", "-a", "--"):
                argv = argv[2:] if argv[0] == "-a" else argv[1:]
            if not argv:
                return  # `exec >log 2>&1` only redirects
            self.exits_early |= ctx.main
            name = argv[0]
        elif name in self.functions:
            self._call(name, argv[1:], line, ctx)
            return
        if name in (".", "source"):
            argv = ["source", *argv[1:]]
            self.warnings.append(f"line {line}: sourced file {' '.join(argv[1:2])} not read")
        elif name == "eval":
            self.warnings.append(f"line {line}: eval not followed")
        elif "$" in name or "`" in name:
            self.warnings.append(f"line {line}: dynamic command name {name}")
        why = self._effective(ctx)
        fates = ctx.fates if CHECKED in why else ()
        self.commands.append(ShellCommand(tuple(argv), line, bool(why), why, env, ctx.background, fates))

    def _call(self, name: str, args: list[str], line: int, ctx: _Ctx) -> None:
        """A function's body runs where it is called (its commands keep the lines they are written on), with its
        arguments as $1.. ("$@"), and the script's back afterwards."""
        if self.depth >= 3:
            self.warnings.append(f"line {line}: call to {name} nested more than 3 deep, not followed")
            return
        self.depth += 1
        outer = self.positional()
        self.set_positional(args)
        try:
            self._command(self.functions[name], _with(ctx, return_why=self._effective(ctx)))
        finally:
            self.depth -= 1
            self.set_positional(outer)

    def _set(self, args: list[str]) -> None:
        index = 0
        while index < len(args):
            arg = args[index]
            if arg in ("-", "--") or arg[:1] not in ("-", "+"):  # `set -- a b`, `set a b`: the new $1..
                self.set_positional(args[index + 1:] if arg in ("-", "--") else args[index:])
                return
            index += 1
            for letter in arg[1:]:
                option = ""
                if letter == "e":
                    option = "errexit"
                elif letter == "o":
                    option, index = (args[index], index + 1) if index < len(args) else ("", index)
                if option == "errexit":
                    self.errexit = arg[0] == "-"
                elif option == "pipefail":
                    self.pipefail = arg[0] == "-"

def read_shell(script: str, env: Mapping[str, str] | None = None, decide: Decide | None = None) -> ShellReading:
    """Read `script` (sh -c text or a script file's content) with the environment `env`; never raises.
    `decide`: what a test gives in the tree the script runs in (None: not known), for guards such as
    `command -v gpg >/dev/null || exit 0` that end the script before the rest runs."""
    reader = _Reader(env or {}, decide)
    first = script.split("\n", 1)[0]
    if first.startswith("#!"):  # `#!/bin/sh -e`: systemd runs scripts directly, so the kernel passes -e
        reader.errexit = any(w[:1] == "-" and w[:2] != "--" and "e" in w for w in first[2:].split()[1:])
    try:
        reader.script(script, 1, _Ctx())
    except RecursionError:
        reader.warnings.append("nesting too deep: the rest is not read")
    return ShellReading(tuple(reader.commands), tuple(reader.warnings), reader.exits_early, reader.stop)
