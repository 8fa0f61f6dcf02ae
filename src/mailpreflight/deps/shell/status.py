"""What a script does with a command's exit status when it looks at it itself: `case $? in …`, `if [ $? -ne 0 ]`,
`[ $? -le 1 ] || exit 1`, `rc=$?` followed by one of those, `cmd || rc=$?` with rc preset to 0. For every status
0-255 the statement is evaluated statically: the branch that runs either always ends the script (`exit N`, a
function that exits or returns), or the script goes on; anything not read here (a status compared with a value
not known, a command whose own status decides, `;&` fall-through, `exit` without a number after other commands)
makes that status's fate unknown. Nothing is executed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fnmatch import translate

from mailpreflight.deps.shell.expand import ASSIGN
from mailpreflight.deps.shell.syntax import AndOr, Case, Group, If, List, Node, Pipe, Simple
from mailpreflight.model import Fate, StatusFate

_PARAM = re.compile(r'^"?\$(?:\{(\?|[A-Za-z_]\w*)\}|(\?|[A-Za-z_]\w*))"?$')  # $?, "$rc", ${rc}, "${?}"
_NUMBER = re.compile(r"""^(["']?)(-?\d+)\1$""")
_PLAIN_PATTERN = re.compile(r"""^(["']?)([^"'$`\\]*)\1$""")
_COMPARE = {"-eq": int.__eq__, "-ne": int.__ne__, "-gt": int.__gt__, "-ge": int.__ge__, "-lt": int.__lt__,
            "-le": int.__le__}
_STRING = {"=": True, "==": True, "!=": False}
_HARMLESS = frozenset({"echo", "printf", "logger", "true", ":"})  # their status is 0: what follows them decides

_TESTED = "?tested"  # in the values: $? now holds a test's status, no longer the command's
Outcome = tuple[Fate, int | None]  # (fate, exit status with EXITS)
FlowEnd = Callable[[Node | AndOr], "tuple[str, str] | None"]
GOES_ON: Outcome = (Fate.GOES_ON, None)
UNKNOWN: Outcome = (Fate.UNKNOWN, None)


def status_name(statement: AndOr | None) -> str | None:
    """NAME when the statement is the lone assignment `NAME=$?` (keeping a status for later)."""
    if statement is None or len(statement.pipes) != 1 or statement.pipes[0].negated:
        return None
    cmds = statement.pipes[0].cmds
    if len(cmds) != 1 or not isinstance(cmds[0], Simple) or len(cmds[0].words) != 1:
        return None
    match = ASSIGN.match(cmds[0].words[0].text)
    value = cmds[0].words[0].text[match.end():] if match and not match[2] else None
    return match[1] if value in ("$?", '"$?"', "${?}", '"${?}"') and match else None


def mentions(words: list[str], name: str) -> bool:
    """Does one of the words hold $NAME or ${NAME}?"""
    pattern = re.compile(rf"\$(?:{re.escape(name)}\b|\{{{re.escape(name)}\}})")
    return any(pattern.search(word) for word in words)


def reads(statement: AndOr | None, name: str) -> bool:
    """Does the statement look at $NAME first thing: a case on it, a test of it (also as an if condition), an
    `exit $NAME`? (`logger "status $rc"` only prints it.)"""
    return statement is not None and mentions(_leading(statement), name)


def _leading(statement: AndOr) -> list[str]:
    node: Node | None = statement.pipes[0].cmds[0] if statement.pipes[0].cmds else None
    if isinstance(node, Case) and node.subject is not None:
        return [node.subject.text]
    if isinstance(node, If) and node.clauses[0][0].items:
        return _leading(node.clauses[0][0].items[0][0])
    words = [w.text for w in node.words] if isinstance(node, Simple) else []
    return words if words[:1] in (["test"], ["["], ["[["], ["exit"], ["return"]) else []


def merge(outcomes: list[tuple[Fate, int | None, str]]) -> tuple[StatusFate, ...]:
    """One (fate, exit status, where) per status 0-255 -> ranges of equal outcome."""
    merged: list[StatusFate] = []
    for status, (fate, code, where) in enumerate(outcomes):
        previous = merged[-1] if merged else None
        if previous is not None and (previous.fate, previous.exit_status, previous.where) == (fate, code, where):
            merged[-1] = StatusFate(previous.low, status, fate, code, where)
        else:
            merged.append(StatusFate(status, status, fate, code, where))
    return tuple(merged)


def compose(outer: tuple[StatusFate, ...], inner: tuple[StatusFate, ...]) -> tuple[StatusFate, ...]:
    """A script that looks at a command's status (`inner`), run by a script that looks at ITS status (`outer`):
    what the outer script does for each status of the command."""
    if not outer or not inner:
        return inner or outer
    outcomes: list[tuple[Fate, int | None, str]] = []
    for status in range(256):
        fate = next(f for f in inner if f.low <= status <= f.high)
        code = fate.script_exit(status)
        if code is None:  # goes on, or unknown: the inner script's own exit is not this command's doing
            outcomes.append((fate.fate, None, fate.where))
            continue
        then = next(f for f in outer if f.low <= code <= f.high)
        final = then.script_exit(code)
        outcomes.append((then.fate, None, then.where) if final is None else (Fate.EXITS, final, then.where))
    return merge(outcomes)


MAX_BRANCHES = 64  # case patterns and if/elif clauses of one statement that looks at a status
MAX_CHECKS = 8  # statements that look at a status, per script; past that, their fates are unknown


def _branches(statement: AndOr) -> int:
    node = statement.pipes[0].cmds[0] if len(statement.pipes) == 1 and len(statement.pipes[0].cmds) == 1 else None
    if isinstance(node, Case):
        return sum(len(p) for p in node.patterns)
    if isinstance(node, If):
        return len(node.clauses)
    return len(statement.pipes)


class StatusReader:
    """Evaluates the statement after a command for each status it may exit with (used by the shell reader)."""

    def __init__(self, flow_end: FlowEnd, errexit: bool, exit_why: tuple[str, ...], return_why: tuple[str, ...],
                 known: Mapping[str, str]) -> None:
        self.flow_end, self.errexit = flow_end, errexit
        self.exit_why, self.return_why = exit_why, return_why  # () = an exit/return there fails the script
        self.known = known  # the script's variables known at that point
        self.status = 0  # the status being evaluated
        self.own: set[str] = set()
        self.compiled: dict[int, list[re.Pattern[str] | None]] = {}

    def fates(self, statement: AndOr | None, last: bool, values: Callable[[int], dict[str, int]],
              line: int) -> tuple[StatusFate, ...]:
        """Fates for statuses 0-255, merged into ranges; `values(s)`: what $?, $rc… hold when the status is s.
        A statement of more than MAX_BRANCHES branches is not evaluated (unknown): 256 evaluations each."""
        if statement is not None and _branches(statement) > MAX_BRANCHES:
            return (StatusFate(0, 255, Fate.UNKNOWN, None, str(line)),)
        # the names that hold the command's own status ($?, or $rc after `rc=$?`)
        self.own = {k for k, v in values(1).items() if v == 1} & {k for k, v in values(2).items() if v == 2}
        outcomes = []
        for status in range(256):
            self.status = status
            outcomes.append(self._statement(statement, values(status), last) if statement is not None else GOES_ON)
        return merge([(fate, code, str(line)) for fate, code in outcomes])

    # -- statements ------------------------------------------------------------------------------------------
    def _statement(self, statement: AndOr, values: dict[str, int], last: bool) -> Outcome:
        pipes = statement.pipes
        if len(pipes) == 1 and len(pipes[0].cmds) == 1 and not pipes[0].negated:
            node = pipes[0].cmds[0]
            if isinstance(node, Case):
                return self._case(node, values)
            if isinstance(node, If):
                return self._if(node, values)
            end = self.flow_end(statement)
            if end is not None:
                return self._end(end, values)
        result = self._chain(statement, values)
        if isinstance(result, tuple):
            return result
        if result is None:
            return UNKNOWN if (last or self.errexit) else GOES_ON
        return (Fate.EXITS, 1) if not result and (last or self.errexit) and not self.exit_why else GOES_ON

    def _chain(self, statement: AndOr, values: dict[str, int]) -> bool | Outcome | None:
        """An and-or list of tests: its truth, or the outcome of the `exit` it runs, or None when not known.
        After each test `$?` is that test's status (0 or 1), as `[ $? -le 1 ] || exit $?` exits 1."""
        current = self._test_pipe(statement.pipes[0], values)
        for op, pipe in zip(statement.ops, statement.pipes[1:], strict=True):
            if current is None:
                return None
            values = {**values, "?": 0 if current else 1, _TESTED: 1}
            if (op == "&&") != current:
                continue  # skipped: the status stays
            lone = len(pipe.cmds) == 1 and not pipe.negated
            end = self.flow_end(AndOr([pipe], [])) if lone else None
            if end is not None:
                return self._end(end, values)
            current = self._test_pipe(pipe, values)
        return current

    def _case(self, node: Case, values: dict[str, int]) -> Outcome:
        subject = self._value(node.subject.text if node.subject else "", values)
        if subject is None:
            return UNKNOWN
        for matcher, branch, falls in zip(self._patterns(node), node.branches, node.falls_through, strict=True):
            if matcher is None:
                return UNKNOWN  # a pattern holding $VAR, `…` or escapes
            if matcher.fullmatch(str(subject)):
                return UNKNOWN if falls else self._body(branch, values)
        return GOES_ON

    def _patterns(self, node: Case) -> list[re.Pattern[str] | None]:
        """Each branch's patterns as one regex (the shell's glob), compiled once per statement."""
        key = id(node)
        if key not in self.compiled:
            matchers: list[re.Pattern[str] | None] = []
            for patterns in node.patterns:
                texts = [_PLAIN_PATTERN.match(p.text) for p in patterns]
                matchers.append(None if any(t is None for t in texts) else re.compile(
                    "|".join(f"(?:{translate(t[2])})" for t in texts if t is not None), re.S))
            self.compiled[key] = matchers
        return self.compiled[key]

    def _if(self, node: If, values: dict[str, int]) -> Outcome:
        for condition, body in node.clauses:
            if len(condition.items) != 1:
                return UNKNOWN
            truth = self._chain(condition.items[0][0], values)
            if truth is None or isinstance(truth, tuple):
                return UNKNOWN
            values = {**values, "?": 0 if truth else 1, _TESTED: 1}  # `elif [ $? … ]` sees the condition's
            if truth:
                return self._body(body, values)
        return self._body(node.orelse, values) if node.orelse is not None else GOES_ON

    def _body(self, body: List, values: dict[str, int]) -> Outcome:
        """A branch: if it always ends the flow, how; else the script goes on."""
        if not body.items:
            return GOES_ON
        end = self.flow_end(Group(body, False))
        if end is None:
            return GOES_ON
        first = body.items[0][0]
        if end[1] == "" and self.flow_end(first) is None:
            return UNKNOWN  # a bare `exit` after other commands: their status, not read here
        return self._end(end, values)

    def _end(self, end: tuple[str, str], values: dict[str, int]) -> Outcome:
        kind, argument = end
        if kind == "exec":
            return UNKNOWN  # the command exec'd decides
        code = self._value(argument or "$?", values)
        if code is None:
            return UNKNOWN
        why = self.exit_why if kind == "exit" else self.return_why
        if why:  # the exit leaves a subshell, or the function's status is tolerated where it is called
            return GOES_ON
        param = _PARAM.match(argument or "$?")
        name = (param[1] or param[2]) if param else ""
        if name in self.own and not (name == "?" and _TESTED in values):
            return Fate.PASSES, None  # `exit $rc`: the command's own status
        return Fate.EXITS, code % 256

    # -- tests -----------------------------------------------------------------------------------------------
    def _test_pipe(self, pipe: Pipe, values: dict[str, int]) -> bool | None:
        if len(pipe.cmds) != 1 or not isinstance(pipe.cmds[0], Simple):
            return None
        words = [w.text for w in pipe.cmds[0].words]
        truth = True if words[0] in _HARMLESS else self._test(words, values)
        return None if truth is None else truth != pipe.negated

    def _test(self, words: list[str], values: dict[str, int]) -> bool | None:
        if words[0] == "test":
            words = words[1:]
        elif (words[0], words[-1]) in (("[", "]"), ("[[", "]]")):
            words = words[1:-1]
        else:
            return None
        negate = False
        while words and words[0] == "!":
            negate, words = not negate, words[1:]
        if len(words) != 3:
            return None
        left, op, right = self._value(words[0], values), words[1], self._value(words[2], values)
        if left is None or right is None:
            return None
        if op in _COMPARE:
            result = _COMPARE[op](left, right)
        elif op in _STRING:
            result = (str(left) == str(right)) == _STRING[op]
        else:
            return None
        return result != negate

    def _value(self, word: str, values: dict[str, int]) -> int | None:
        number = _NUMBER.match(word)
        if number:
            return int(number[2])
        param = _PARAM.match(word)
        if param is None:
            return None
        name = param[1] or param[2]
        if name in values:
            return values[name]
        known = self.known.get(name, "")
        return int(known) if known.lstrip("-").isdigit() else None
