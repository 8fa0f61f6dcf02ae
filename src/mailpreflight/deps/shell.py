"""A static reader of POSIX sh / bash scripts: the `sh -c "…"` strings of Exec lines and the small maintenance
scripts units call. It lists every simple command the script may run and says whether that command failing
(non-zero exit status) makes the script exit non-zero, and if not, why not. Nothing is ever executed, and no
input makes it raise: what cannot be read becomes a warning.

Modelled: quoting, comments, line continuations, here-documents (skipped), `;` `&` `&&` `||` `|` `|&` `!`,
`( )` subshells, `{ }` groups, if / while / until / for / case, functions (calls followed 3 deep), `set -e` /
`set -o pipefail` (and `#!/bin/sh -e`), `exit` / `return` (also as the fallback of `||` or the branch a
failing `if` condition takes), `exec`, assignments and $VAR / ${VAR} / ${VAR:-d} / ${VAR:=d} / ${VAR:+a} with
field splitting, and the commands inside $(…), `…` and <(…). For `bash -e -c SCRIPT` read "set -e; " + SCRIPT.

Not modelled (simplifications):
- which branch runs: every branch of an if / case is read, in order, and all their assignments count;
- loops: a body is read once and stands where the loop stands (its commands are tolerated, "loop body" added,
  only when the loop is not the script's last statement);
- a command followed by a look at `$?` is "status checked by the script": what the script then does with the
  status (`[ $rc -le 1 ]`, `exit $rc`) is not followed;
- globbing, tilde and brace expansion, aliases, positional parameters, arithmetic (and commands inside it),
  `break` / `continue`, `trap`, `${PIPESTATUS[…]}`; command substitutions in redirections and here-documents
  are not read (a warning says so); files read by `.` / `source` and `eval`'d text are not read;
- a value that holds anything unknown ($(…), $?, an unknown $VAR) makes the variable unknown;
- commands of a function body keep the lines they are written on, not the call's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ShellCommand:
    """One simple command the script may run."""

    argv: tuple[str, ...]  # after quote removal; known $VARs expanded, unknown ones left as written
    line: int  # 1-based line of the script where the command starts
    tolerated: bool  # its failure does not make the script exit non-zero
    why: tuple[str, ...]  # why it is tolerated ("'|| true'", "if condition", …); () when it is not
    assignments: Mapping[str, str]  # variables in effect for it: the env given, script assignments, NAME=v prefixes
    background: bool  # run with '&'


@dataclass(frozen=True)
class ShellReading:
    commands: tuple[ShellCommand, ...]
    warnings: tuple[str, ...]  # what could not be read or followed, "line N: …"
    exits_early: bool  # an unconditional `exit` (or `exec`) ends the script; nothing after it is reported


_OR, _IF = "'|| <fallback>'", "if condition"
PIPE = "pipeline (only the last command's status counts)"
SUBSTITUTION = "command substitution (status ignored)"
_TRUE = {"true": "'|| true'", "/bin/true": "'|| true'", "/usr/bin/true": "'|| true'", ":": "'|| :'"}
_OPS = (";;&", "&>>", "<<-", "<<<", "&&", "||", ";;", ";&", "|&", "&>", "<<", ">>", "<&", ">&", "<>", ">|",
        "&", "|", ";", "<", ">", "(", ")")
_OP = re.compile("|".join(map(re.escape, _OPS)))  # longest first: the first alternative that matches wins
_REDIRECTS = frozenset(op for op in _OPS if op[0] in "<>" or op.startswith("&>"))
_METACHARS = " \t\r\n;&|<>()"
_PLAIN = re.compile(r"[^\\'\"`$<>]+")
_UNTERMINATED = {"'": "quote", '"': "quote", "`": "backquote", "(": "parenthesis", "{": "${...}"}
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:(:?[-=+])(.*))?", re.S)
_FUNCTION_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
_DECLARE = frozenset({"export", "local", "readonly", "declare", "typeset"})
_CONTROL = frozenset({"exit", "return", "break", "continue"})
_CLOSERS = frozenset({"then", "elif", "else", "fi", "do", "done", "esac", "}"})
_CASE_ENDS = (";;", ";&", ";;&")

Piece = tuple[str, str]  # (text, kind): "lit", "split" (unquoted known value: field splitting) or "raw" (as written)


# --- Tokens ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tok:
    kind: str  # "word", "op" or "nl"
    text: str  # a word as written (quotes and all): expansion needs to know what was quoted
    line: int


def _skip(text: str, i: int) -> int:
    """Index just past the construct opening at text[i] (one of ' " ` ( {), or -1 when it never closes."""
    opener = text[i]
    if opener == "'":
        end = text.find("'", i + 1)
        return -1 if end < 0 else end + 1
    close = {'"': '"', "`": "`", "(": ")", "{": "}"}[opener]
    j = i + 1
    while j < len(text):
        char = text[j]
        if char == "\\":
            j += 2
            continue
        if char == close:
            return j + 1
        if opener != "`" and char == "$" and text[j + 1:j + 2] in ("(", "{"):
            end = _skip(text, j + 1)
        elif (opener != "`" and char == "`") or (opener in "({" and (char in "'\"" or char == opener == "(")):
            end = _skip(text, j)
        else:
            j += 1
            continue
        if end < 0:
            return -1
        j = end
    return -1


def _scan_word(text: str, i: int, line: int, warnings: list[str]) -> int:
    """End of the word starting at text[i]: quotes, $(…), ${…} and `…` may hold blanks and operators."""
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char in "<>" and text.startswith("(", i + 1):
            opener = i + 1  # <(…) process substitution
        elif char in "'\"`":
            opener = i
        elif char == "$" and text[i + 1:i + 2] in ("(", "{"):
            opener = i + 1
        elif char in _METACHARS:
            break
        else:
            i += 1
            continue
        end = _skip(text, opener)
        if end < 0:
            warnings.append(f"line {line + text.count(chr(10), 0, i)}: unterminated {_UNTERMINATED[text[opener]]}")
            return len(text)
        i = end
    return min(i, len(text))


def _skip_heredoc(text: str, i: int, line: int, heredoc: tuple[str, bool, bool, int],
                  warnings: list[str]) -> tuple[int, int]:
    """Skip a here-document body: it is data for a command, never commands."""
    delimiter, strip_tabs, quoted, start = heredoc
    substitutes = False
    while i < len(text):
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        row = text[i:end]
        i, line = min(end + 1, len(text)), line + 1 if end < len(text) else line
        if (row.lstrip("\t") if strip_tabs else row) == delimiter:
            break
        substitutes = substitutes or (not quoted and ("$(" in row or "`" in row))
    else:
        warnings.append(f"line {start}: unterminated here-document (no {delimiter!r} line)")
    if substitutes:
        warnings.append(f"line {start}: command substitution $(...) in a here-document not followed")
    return i, line


def _lex(text: str, line: int, warnings: list[str]) -> list[_Tok]:
    toks: list[_Tok] = []
    heredocs: list[tuple[str, bool, bool, int]] = []  # bodies start after the next newline
    heredoc_op: str | None = None  # `<<` just seen: the next word is a delimiter
    dbracket = False  # inside [[ … ]], && || < > ( ) are plain words
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text.startswith("\n", i + 1):
            i, line = i + 2, line + 1
        elif char in " \t\r":
            i += 1
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char == "\n":
            toks.append(_Tok("nl", char, line))
            i, line, dbracket, heredoc_op = i + 1, line + 1, False, None
            for heredoc in heredocs:
                i, line = _skip_heredoc(text, i, line, heredoc, warnings)
            heredocs.clear()
        else:
            op = match.group() if (match := _OP.match(text, i)) else None
            if (op in ("<", ">") and text.startswith("(", i + 1)) or text.startswith("((", i):
                op = None  # <(…) is a word; ((…)) an arithmetic command, kept as one word
            if op is not None and not (dbracket and op in ("&&", "||", "<", ">", "(", ")")):
                toks.append(_Tok("op", op, line))
                heredoc_op = op if op in ("<<", "<<-") else None
                i += len(op)
                continue
            start = i
            if op is not None:
                i += len(op)
            elif text.startswith("((", i):
                end = _skip(text, i)
                if end < 0:
                    warnings.append(f"line {line}: unterminated parenthesis")
                i = len(text) if end < 0 else end
            else:
                i = _scan_word(text, i, line, warnings)
            raw = text[start:i]
            if raw.isascii() and raw.isdigit() and text[i:i + 1] in ("<", ">"):
                continue  # a file descriptor number: part of the redirection
            toks.append(_Tok("word", raw, line))
            line += raw.count("\n")
            if heredoc_op is not None:
                delimiter = re.sub(r"[\"'\\]", "", raw)
                heredocs.append((delimiter, heredoc_op == "<<-", delimiter != raw, toks[-1].line))
                heredoc_op = None
            dbracket = raw == "[[" or (dbracket and raw != "]]")
    return toks


# --- Syntax tree -----------------------------------------------------------------------------------------------

@dataclass
class _Simple:
    words: list[_Tok]  # redirections dropped
    line: int


@dataclass
class _Pipe:
    cmds: list[_Node]
    negated: bool


@dataclass
class _AndOr:
    pipes: list[_Pipe]
    ops: list[str]  # "&&" / "||" between pipes


@dataclass
class _List:
    items: list[tuple[_AndOr, bool]]  # (statement, run in the background)


@dataclass
class _Group:
    body: _List
    subshell: bool


@dataclass
class _If:
    clauses: list[tuple[_List, _List]]  # (condition, body) for `if` and each `elif`
    orelse: _List | None


@dataclass
class _Loop:
    cond: _List | None  # while / until
    var: str  # for
    words: list[_Tok]  # for
    body: _List


@dataclass
class _Case:
    subject: _Tok | None
    branches: list[_List]


@dataclass
class _FuncDef:
    name: str
    body: _Node


_Node = _Simple | _Group | _If | _Loop | _Case | _FuncDef


class _Parser:
    """Recursive descent over the tokens; on anything unexpected it warns, skips a token and goes on."""

    def __init__(self, toks: list[_Tok], warnings: list[str]) -> None:
        self.toks, self.pos, self.warnings = toks, 0, warnings

    def _peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _at(self, kind: str, *texts: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == kind and tok.text in texts

    def _expect(self, kind: str, text: str, line: int) -> None:
        if self._at(kind, text):
            self.pos += 1
        else:
            self.warnings.append(f"line {line}: expected '{text}'")

    def _skip_newlines(self) -> None:
        while self._at("nl", "\n"):
            self.pos += 1

    def _redirects(self) -> None:
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in _REDIRECTS:
            self.pos += 1
            if (target := self._peek()) is not None and target.kind == "word":
                self.pos += 1
                if any(s in target.text for s in ("$(", "`", "<(", ">(")):
                    self.warnings.append(f"line {target.line}: command substitution in a redirection not followed")

    def parse_list(self, *stops: str) -> _List:
        items: list[tuple[_AndOr, bool]] = []
        while (tok := self._peek()) is not None:
            if tok.kind == "nl" or (tok.kind == "op" and tok.text == ";"):
                self.pos += 1
            elif tok.text in stops and (tok.kind == "op") == (tok.text in _OPS):
                break
            elif tok.kind == "op" and tok.text not in _REDIRECTS and tok.text != "(":
                self.warnings.append(f"line {tok.line}: unexpected '{tok.text}'")
                self.pos += 1
            else:
                start = self.pos
                statement = self._and_or()
                background = self._at("op", "&")
                if background:
                    self.pos += 1
                items.append((statement, background))
                if self.pos == start:
                    self.pos += 1
        return _List(items)

    def _and_or(self) -> _AndOr:
        pipes, ops = [self._pipeline()], []
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in ("&&", "||"):
            self.pos += 1
            self._skip_newlines()
            ops.append(tok.text)
            pipes.append(self._pipeline())
        return _AndOr(pipes, ops)

    def _pipeline(self) -> _Pipe:
        negated = False
        while (tok := self._peek()) is not None and tok.kind == "word" and tok.text in ("!", "time"):
            negated ^= tok.text == "!"
            self.pos += 1
        cmds: list[_Node] = []
        while True:
            cmd = self._command()
            if cmd is not None:
                cmds.append(cmd)
            if not self._at("op", "|", "|&"):
                return _Pipe(cmds, negated)
            self.pos += 1
            self._skip_newlines()

    def _command(self) -> _Node | None:
        tok = self._peek()
        if tok is None:
            return None
        if tok.kind == "op" and tok.text == "(":
            self.pos += 1
            body = self.parse_list(")")
            self._expect("op", ")", tok.line)
            self._redirects()
            return _Group(body, True)
        if tok.kind != "word":
            return self._simple()
        word, after = tok.text, [(t.kind, t.text) for t in self.toks[self.pos + 1:self.pos + 3]]
        if word == "{":
            self.pos += 1
            body = self.parse_list("}")
            self._expect("word", "}", tok.line)
            self._redirects()
            return _Group(body, False)
        if word == "if":
            return self._if(tok.line)
        if word in ("while", "until", "for"):
            return self._loop(word, tok.line)
        if word == "case":
            return self._case(tok.line)
        if word == "function" or (after == [("op", "("), ("op", ")")] and _FUNCTION_NAME.fullmatch(word)):
            return self._function(tok.line)
        if word in _CLOSERS:
            self.warnings.append(f"line {tok.line}: unexpected '{word}'")
            self.pos += 1
            return None
        return self._simple()

    def _simple(self) -> _Simple | None:
        words: list[_Tok] = []
        while (tok := self._peek()) is not None:
            if tok.kind == "word":
                words.append(tok)
                self.pos += 1
            elif tok.kind == "op" and tok.text in _REDIRECTS:
                self._redirects()
            else:
                break
        return _Simple(words, words[0].line) if words else None

    def _if(self, line: int) -> _If:
        clauses: list[tuple[_List, _List]] = []
        orelse = None
        while True:
            self.pos += 1  # `if` or `elif`
            cond = self.parse_list("then")
            self._expect("word", "then", line)
            clauses.append((cond, self.parse_list("elif", "else", "fi")))
            if not self._at("word", "elif"):
                break
        if self._at("word", "else"):
            self.pos += 1
            orelse = self.parse_list("fi")
        self._expect("word", "fi", line)
        self._redirects()
        return _If(clauses, orelse)

    def _loop(self, keyword: str, line: int) -> _Loop:
        self.pos += 1
        cond, var, words = None, "", []
        if keyword != "for":
            cond = self.parse_list("do")
        else:
            if (tok := self._peek()) is not None and tok.kind == "word":
                var = tok.text
                self.pos += 1
            self._skip_newlines()
            if self._at("word", "in"):
                self.pos += 1
                while (tok := self._peek()) is not None and tok.kind == "word":
                    words.append(tok)
                    self.pos += 1
            while self._at("nl", "\n") or self._at("op", ";"):
                self.pos += 1
        self._expect("word", "do", line)
        body = self.parse_list("done")
        self._expect("word", "done", line)
        self._redirects()
        return _Loop(cond, var, words, body)

    def _case(self, line: int) -> _Case:
        self.pos += 1
        subject = self._peek()
        if subject is not None and subject.kind == "word":
            self.pos += 1
        else:
            subject = None
        self._skip_newlines()
        self._expect("word", "in", line)
        branches: list[_List] = []
        while True:
            self._skip_newlines()
            if self._peek() is None or self._at("word", "esac"):
                break
            if self._at("op", "("):
                self.pos += 1
            while (tok := self._peek()) is not None and tok.kind != "nl" and not self._at("op", ")"):
                self.pos += 1  # the patterns: `a|b)`
            if not self._at("op", ")"):
                self.warnings.append(f"line {line}: unreadable case pattern")
                break
            self.pos += 1
            branches.append(self.parse_list("esac", *_CASE_ENDS))
            if self._at("op", *_CASE_ENDS):
                self.pos += 1
        self._expect("word", "esac", line)
        self._redirects()
        return _Case(subject, branches)

    def _function(self, line: int) -> _FuncDef | None:
        if self._at("word", "function"):
            self.pos += 1
        tok = self._peek()
        name = tok.text if tok is not None and tok.kind == "word" else ""
        self.pos += 1 if name else 0
        if self._at("op", "(") and self.pos + 1 < len(self.toks) and self.toks[self.pos + 1].text == ")":
            self.pos += 2
        self._skip_newlines()
        body = self._command()
        if body is None or not name:
            self.warnings.append(f"line {line}: unreadable function definition")
            return None
        return _FuncDef(name, body)


def _first(statements: _List) -> _AndOr | None:
    return statements.items[0][0] if statements.items else None


def _leading_words(node: _AndOr | _Node | None) -> list[str]:
    """The words a statement starts with, to see whether it looks at `$?` first thing."""
    if isinstance(node, _AndOr):
        return _leading_words(node.pipes[0].cmds[0] if node.pipes[0].cmds else None)
    if isinstance(node, _Simple):
        return [w.text for w in node.words]
    if isinstance(node, _Group):
        return _leading_words(_first(node.body))
    if isinstance(node, _If):
        return _leading_words(_first(node.clauses[0][0]))
    if isinstance(node, _Loop):
        return _leading_words(_first(node.cond)) if node.cond is not None else [w.text for w in node.words]
    if isinstance(node, _Case) and node.subject is not None:
        return [node.subject.text]
    return []


def _fields(pieces: list[Piece]) -> list[str]:
    """Field splitting: only unquoted known values split on blanks; quotes make a word even when empty."""
    fields: list[str] = []
    current: str | None = None
    for text, kind in pieces:
        if kind != "split":
            current = (current or "") + text
            continue
        for index, part in enumerate(re.split(r"[ \t\n]+", text)):
            if index and current is not None:  # a run of blanks ends the field
                fields.append(current)
                current = None
            if part:
                current = (current or "") + part
    if current is not None:
        fields.append(current)
    return fields


# --- Reading ---------------------------------------------------------------------------------------------------

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

    def absorb(self, reason: str) -> _Ctx:
        return self if reason in self.why else replace(self, why=(*self.why, reason))

    def guard(self) -> _Ctx:
        return replace(self, guarded=True, main=False)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.vars: dict[str, str] = dict(env)
        self.functions: dict[str, _Node] = {}
        self.errexit = self.pipefail = False
        self.depth = 0  # function calls being followed
        self.commands: list[ShellCommand] = []
        self.warnings: list[str] = []
        self.exits_early = False

    def script(self, text: str, line: int, ctx: _Ctx) -> None:
        self._list(_Parser(_lex(text, line, self.warnings), self.warnings).parse_list(), ctx)

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
        return replace(ctx, why=why, exit_why=why, main=False)

    def _list(self, statements: _List, ctx: _Ctx) -> None:
        items = statements.items
        for index, (statement, background) in enumerate(items):
            end = None if background else self._flow_end(statement)
            ends = end is not None and (end[0] in ("exit", "exec") or (end[0] == "return" and self.depth > 0))
            following = items[index + 1][0] if index + 1 < len(items) else None
            passes = self._flow_end(following) if following is not None else None
            if background:
                sub = replace(self._sub_ctx(ctx.guard()).absorb("background"), background=True)
                sub = replace(sub, exit_why=sub.why)
            elif ends or following is None or (passes is not None and passes[0] in ("exit", "return")
                                                  and passes[1] in ("", "$?")):
                sub = ctx  # the last statement, or followed by a plain `exit` that passes its status on
            elif any("$?" in w or "${?}" in w for w in _leading_words(following)):
                sub = ctx.absorb("status checked by the script")
            else:
                sub = ctx.absorb("not the last command")
            self._and_or(statement, sub if sub is ctx else replace(sub, negated_why=None))
            if ends:
                break

    def _flow_end(self, node: _AndOr | _Node, depth: int = 0) -> tuple[str, str] | None:
        """("exit" | "return" | "exec" | "status", argument) when `node` always ends the flow, else None;
        "status" is a function call that returns: its status passes on, the caller goes on."""
        if isinstance(node, _AndOr):
            lone = len(node.pipes) == 1 and not node.pipes[0].negated and len(node.pipes[0].cmds) == 1
            return self._flow_end(node.pipes[0].cmds[0], depth) if lone else None
        if isinstance(node, _Group) and not node.subshell:
            for statement, background in node.body.items:
                end = None if background else self._flow_end(statement, depth)
                if end is not None:
                    return end
        if not isinstance(node, _Simple):
            return None
        words = [w.text for w in node.words]
        while words and _ASSIGN.match(words[0]):
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

    def _on_failure(self, then: _AndOr | _Node | None, ctx: _Ctx, reason: str) -> _Ctx:
        """Context of a command whose failure runs `then` next (what follows `||`, the branch an `if` takes):
        tolerated for `reason`, unless `then` always exits non-zero."""
        if reason == _OR and isinstance(then, _AndOr) and len(then.pipes[0].cmds) == 1:
            cmd = then.pipes[0].cmds[0]
            if isinstance(cmd, _Simple) and cmd.words[0].text in _TRUE and not then.pipes[0].negated:
                return ctx.absorb(_TRUE[cmd.words[0].text]).guard()
        end = self._flow_end(then) if then is not None else None
        if end is not None and end[0] in ("exit", "return", "status"):
            if end[1] != "0":
                return replace(ctx, why={"exit": ctx.exit_why, "return": ctx.return_why}.get(end[0], ctx.why)).guard()
            if reason == _OR and end[0] != "status":
                reason = f"'|| {end[0]} 0'"
        return ctx.absorb(reason).guard()

    def _and_or(self, node: _AndOr, ctx: _Ctx) -> None:
        pipes, ops = node.pipes, node.ops
        for index, pipe in enumerate(pipes):
            sub = ctx
            if index < len(ops):
                # A failure skips the `&&`s up to the next `||` (whose command then runs), or ends the list.
                rescue = next((k for k in range(index, len(ops)) if ops[k] == "||"), None)
                sub = ctx.guard() if rescue is None else self._on_failure(_AndOr([pipes[rescue + 1]], []), ctx, _OR)
                # `! cmd` succeeding ends the list with status 0 unless an `&&` follows.
                ends_ok = "&&" not in ops[index:]
                sub = replace(sub, negated_why=ctx.negated_why if ends_ok else None)
            self._pipeline(pipe, sub if index == 0 else replace(sub, main=False))

    def _pipeline(self, pipe: _Pipe, ctx: _Ctx) -> None:
        if pipe.negated and ctx.negated_why is not None:  # `if ! cmd; then exit 1; fi`: cmd failing exits
            ctx = replace(ctx, why=ctx.negated_why, negated_why=None).guard()
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

    def _command(self, node: _Node, ctx: _Ctx) -> None:
        if isinstance(node, _Simple):
            self._simple(node, ctx)
        elif isinstance(node, _Group) and node.subshell:
            with self._subshell():
                self._list(node.body, self._sub_ctx(ctx))
        elif isinstance(node, _Group):
            self._list(node.body, ctx)
        elif isinstance(node, _If):
            for index, (cond, body) in enumerate(node.clauses):
                # A failing condition runs the else branch (after the last elif), a failing `! cond` the body.
                last = index == len(node.clauses) - 1 and node.orelse is not None
                otherwise = self._on_failure(_Group(node.orelse, False) if last and node.orelse else None, ctx, _IF)
                negated = self._on_failure(_Group(body, False), ctx, _IF)
                self._list(cond, replace(otherwise, negated_why=negated.why))
                self._list(body, replace(ctx, main=False))
            if node.orelse is not None:
                self._list(node.orelse, replace(ctx, main=False))
        elif isinstance(node, _Loop):
            if node.cond is not None:
                self._list(node.cond, ctx.absorb("while/until condition").guard())
            elif _VARIABLE.fullmatch(node.var):
                values = self._expand(node.words, ctx)
                single = len(values) == 1 and not any(c in values[0] for c in "*?[")  # a glob may be many
                self._assign({node.var: values[0] if single else None})
            # Simplification: a body is read once; it stands where the loop stands.
            self._list(node.body, replace(ctx.absorb("loop body") if ctx.why else ctx, main=False))
        elif isinstance(node, _Case):
            self._expand([node.subject] if node.subject else [], ctx)
            for branch in node.branches:
                self._list(branch, replace(ctx, main=False))
        else:
            self.functions[node.name] = node.body

    def _expand(self, words: list[_Tok], ctx: _Ctx) -> list[str]:
        """Words of a `for` or `case`: their command substitutions run, their status is lost."""
        subs: list[tuple[str, int]] = []
        fields = [f for tok in words for f in _fields(self._pieces(tok.text, tok.line, subs))]
        self._substitutions(subs, self._subst_ctx(ctx))
        return fields

    def _subst_ctx(self, ctx: _Ctx) -> _Ctx:
        why = (SUBSTITUTION,)
        return _Ctx(why, guarded=True, exit_why=why, return_why=why, main=False, background=ctx.background)

    def _substitutions(self, subs: list[tuple[str, int]], ctx: _Ctx) -> None:
        for text, line in subs:
            with self._subshell():
                self.script(text, line, ctx)

    def _assign(self, values: Mapping[str, str | None]) -> None:
        """None: a value not known here (it held $(…), $?, an unknown $VAR…): the variable becomes unknown."""
        for name, value in values.items():
            if value is None:
                self.vars.pop(name, None)
            else:
                self.vars[name] = value

    def _assign_word(self, tok: _Tok, subs: list[tuple[str, int]]) -> None:
        """NAME=value (or NAME+=value, which appends); anything else is ignored."""
        match = _ASSIGN.match(tok.text)
        if match is None:
            return
        pieces = self._pieces(tok.text[match.end():], tok.line, subs)
        old = self.vars.get(match[1]) if match[2] else ""
        known = old is not None and all(kind != "raw" for _, kind in pieces)
        self._assign({match[1]: f"{old}{''.join(text for text, _ in pieces)}" if known else None})

    def _simple(self, node: _Simple, ctx: _Ctx) -> None:
        subs: list[tuple[str, int]] = []
        if node.words[0].text in _DECLARE:  # export NAME=v: the builtin's own status hides its substitutions'
            for tok in node.words[1:]:
                self._assign_word(tok, subs)
            self._substitutions(subs, self._subst_ctx(ctx))
            return
        count = next((i for i, tok in enumerate(node.words) if not _ASSIGN.match(tok.text)), len(node.words))
        # The words expand first, then the NAME=v prefixes, left to right: `NAME=v cmd "$NAME"` does not see v.
        argv = [f for tok in node.words[count:] for f in _fields(self._pieces(tok.text, tok.line, subs))]
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
        if name == "read":  # the variables it sets are not known here
            self._assign({arg: None for arg in argv[1:] if _VARIABLE.fullmatch(arg)})
        if name == "exec":  # replaces the shell: the command's status is the script's, nothing runs after
            argv = argv[1:]
            while argv and argv[0] in ("-c", "-l", "-a", "--"):
                argv = argv[2:] if argv[0] == "-a" else argv[1:]
            if not argv:
                return  # `exec >log 2>&1` only redirects
            self.exits_early |= ctx.main
            name = argv[0]
        elif name in self.functions:
            self._call(name, line, ctx)
            return
        if name in (".", "source"):
            argv = ["source", *argv[1:]]
            self.warnings.append(f"line {line}: sourced file {' '.join(argv[1:2])} not read")
        elif name == "eval":
            self.warnings.append(f"line {line}: eval not followed")
        elif "$" in name or "`" in name:
            self.warnings.append(f"line {line}: dynamic command name {name}")
        why = self._effective(ctx)
        self.commands.append(ShellCommand(tuple(argv), line, bool(why), why, env, ctx.background))

    def _call(self, name: str, line: int, ctx: _Ctx) -> None:
        """A function's body runs where it is called (its commands keep the lines they are written on)."""
        if self.depth >= 3:
            self.warnings.append(f"line {line}: call to {name} nested more than 3 deep, not followed")
            return
        self.depth += 1
        try:
            self._command(self.functions[name], replace(ctx, return_why=self._effective(ctx)))
        finally:
            self.depth -= 1

    def _set(self, args: list[str]) -> None:
        options = iter(args)
        for arg in options:
            if arg in ("-", "--") or arg[:1] not in ("-", "+"):
                return
            for letter in arg[1:]:
                option = "errexit" if letter == "e" else next(options, "") if letter == "o" else ""
                if option == "errexit":
                    self.errexit = arg[0] == "-"
                elif option == "pipefail":
                    self.pipefail = arg[0] == "-"

    # --- Expansion ---------------------------------------------------------------------------------------------

    def _pieces(self, raw: str, line: int, subs: list[tuple[str, int]], quoted: bool = False) -> list[Piece]:
        """Expand a word as written (or, `quoted`, the inside of "…"); command substitutions found are added
        to `subs` as (text, line) and left in the word as written."""
        out: list[Piece] = []
        i = counted = 0
        here = line
        while i < len(raw):
            char = raw[i]
            here, counted = here + raw.count("\n", counted, i), i  # the line raw[i] is on, counting each once
            if char == "\\":
                escaped = raw[i + 1:i + 2]
                if escaped != "\n":  # backslash-newline: a line continuation
                    literal = quoted and escaped not in ('$', '`', '"', "\\", "")
                    out.append(("\\" + escaped if literal else escaped or "\\", "lit"))
                i += 2
            elif not quoted and (char == "'" or (char == "$" and raw.startswith("'", i + 1))):
                start = i + 1 if char == "'" else i + 2  # $'…': escapes are not decoded
                end = raw.find("'", start)
                end = len(raw) if end < 0 else end
                out.append((raw[start:end], "lit"))
                i = end + 1
            elif char == '"' and not quoted:
                end = _skip(raw, i)
                end = len(raw) + 1 if end < 0 else end
                out.append(("", "lit"))  # "" is a word even when empty
                out.extend(self._pieces(raw[i + 1:end - 1], here, subs, quoted=True))
                i = end
            elif char == "`":
                end = _skip(raw, i)
                inner = raw[i + 1:] if end < 0 else raw[i + 1:end - 1]
                subs.append((re.sub(r"\\([$`\\])", r"\1", inner), here))
                out.append((raw[i:] if end < 0 else raw[i:end], "raw"))
                i = len(raw) if end < 0 else end
            elif char == "$" or (char in "<>" and not quoted and raw.startswith("(", i + 1)):
                pieces, i = self._dollar(raw, i, here, subs, quoted)
                out.extend(pieces)
            else:
                run = _PLAIN.match(raw, i)  # ordinary characters, taken in one go
                end = run.end() if run else i + 1
                out.append((raw[i:end], "lit"))
                i = end
        return out

    def _dollar(self, raw: str, i: int, line: int, subs: list[tuple[str, int]],
                quoted: bool) -> tuple[list[Piece], int]:
        """$NAME, ${…}, $(…), $((…)) or <(…) at raw[i]: (pieces, index after it)."""
        opener = raw[i + 1:i + 2]
        if opener in ("(", "{"):
            end = _skip(raw, i + 1)
            end, inner = (len(raw), raw[i + 2:]) if end < 0 else (end, raw[i + 2:end - 1])
            if opener == "{":
                return self._param(inner, raw[i:end], line, subs, quoted), end
            if not (raw[i] == "$" and inner.startswith("(")):  # $((…)) is arithmetic, not a command
                subs.append((inner, line))
            return [(raw[i:end], "raw")], end
        match = _NAME.match(raw, i + 1) if raw[i] == "$" else None
        if match is None:
            return [(raw[i], "lit")], i + 1
        return self._lookup(match.group(), raw[i:match.end()], quoted), match.end()

    def _lookup(self, name: str, written: str, quoted: bool) -> list[Piece]:
        value = self.vars.get(name)
        if value is None:
            return [(written, "raw")]  # unknown: left as written, one word
        return [(value, "lit" if quoted else "split")]

    def _param(self, body: str, written: str, line: int, subs: list[tuple[str, int]], quoted: bool) -> list[Piece]:
        """${NAME}, ${NAME:-word}, ${NAME:=word}, ${NAME:+word} (and without ':'); others stay as written.
        A variable not known here counts as unset for - and =: the default is the best guess there is."""
        match = _PARAM.fullmatch(body)
        if match is None:
            return [(written, "raw")]
        name, op, word = match[1], match[2], match[3]
        if op is None:
            return self._lookup(name, written, quoted)
        value = self.vars.get(name)
        if value is not None and (value != "" or not op.startswith(":")):
            if op.endswith("+"):
                return self._pieces(word, line, subs, quoted)
            return [(value, "lit" if quoted else "split")]
        if op.endswith("+"):
            return [] if value is not None else [(written, "raw")]
        pieces = self._pieces(word, line, subs, quoted)
        if op.endswith("=") and _VARIABLE.fullmatch(name):
            self._assign({name: None if any(k == "raw" for _, k in pieces) else "".join(t for t, _ in pieces)})
        return pieces


def read_shell(script: str, env: Mapping[str, str] | None = None) -> ShellReading:
    """Read `script` (sh -c text or a script file's content) with the environment `env`; never raises."""
    reader = _Reader(env or {})
    first = script.split("\n", 1)[0]
    if first.startswith("#!"):  # `#!/bin/sh -e`: systemd runs scripts directly, so the kernel passes -e
        reader.errexit = any(w[:1] == "-" and w[:2] != "--" and "e" in w for w in first[2:].split()[1:])
    try:
        reader.script(script, 1, _Ctx())
    except RecursionError:
        reader.warnings.append("nesting too deep: the rest is not read")
    return ShellReading(tuple(reader.commands), tuple(reader.warnings), reader.exits_early)
