"""The syntax tree of a shell script, by recursive descent over the tokens: lists, and-or lists, pipelines,
simple commands, groups, if / while / until / for / case and function definitions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpreflight.deps.shell.lexer import OPS, REDIRECTS, Tok

_FUNCTION_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
_CLOSERS = frozenset({"then", "elif", "else", "fi", "do", "done", "esac", "}"})
_CASE_ENDS = (";;", ";&", ";;&")


@dataclass
class Simple:
    """A simple command: its words as the lexer gave them (assignments and the command name included, redirections
    dropped) and the line of its first word."""

    words: list[Tok]  # redirections dropped
    line: int


@dataclass
class Pipe:
    """A pipeline: the commands joined by `|` or `|&`, and whether an odd number of `!` comes before it."""

    cmds: list[Node]
    negated: bool


@dataclass
class AndOr:
    """An and-or list: pipelines joined by `&&` or `||`, `ops[i]` standing between `pipes[i]` and `pipes[i + 1]`."""

    pipes: list[Pipe]
    ops: list[str]  # "&&" / "||" between pipes


@dataclass
class List:
    """Statements separated by `;`, `&` or newlines, each with whether a `&` runs it in the background."""

    items: list[tuple[AndOr, bool]]  # (statement, run in the background)


@dataclass
class Group:
    """A `{ ...; }` group, or a `( ... )` subshell when `subshell`: the statements it holds."""

    body: List
    subshell: bool


@dataclass
class If:
    """An `if` command: the condition and body of the `if` and of each `elif`, in order, and the `else` body if any."""

    clauses: list[tuple[List, List]]  # (condition, body) for `if` and each `elif`
    orelse: List | None


@dataclass
class Loop:
    """A `while`, `until` or `for` loop: the condition of while and until (None for for), the variable and the words
    after `in` of for, and the body."""

    cond: List | None  # while / until
    var: str  # for
    words: list[Tok]  # for
    body: List


@dataclass
class Case:
    """A `case` command: the word it tests (None when missing), and each branch with its patterns as written and whether
    it ends with `;&` or `;;&`."""

    subject: Tok | None
    branches: list[List]
    patterns: list[list[Tok]]  # each branch's patterns (`0|1)`: two words), as written
    falls_through: list[bool]  # the branch ends with `;&` or `;;&` (bash): what follows runs or is tested too


@dataclass
class FuncDef:
    """A function definition (`name() body` or `function name body`): its name and the command that is its body."""

    name: str
    body: Node


Node = Simple | Group | If | Loop | Case | FuncDef


class Parser:
    """Recursive descent over the tokens; on anything unexpected it warns, skips a token and goes on."""

    def __init__(self, toks: list[Tok], warnings: list[str]) -> None:
        self.toks, self.pos, self.warnings = toks, 0, warnings

    def _peek(self) -> Tok | None:
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
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in REDIRECTS:
            self.pos += 1
            if (target := self._peek()) is not None and target.kind == "word":
                self.pos += 1
                if any(s in target.text for s in ("$(", "`", "<(", ">(")):
                    self.warnings.append(f"line {target.line}: command substitution in a redirection not followed")

    def parse_list(self, *stops: str) -> List:
        items: list[tuple[AndOr, bool]] = []
        while (tok := self._peek()) is not None:
            if tok.kind == "nl" or (tok.kind == "op" and tok.text == ";"):
                self.pos += 1
            elif tok.text in stops and (tok.kind == "op") == (tok.text in OPS):
                break
            elif tok.kind == "op" and tok.text not in REDIRECTS and tok.text != "(":
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
        return List(items)

    def _and_or(self) -> AndOr:
        pipes, ops = [self._pipeline()], []
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text in ("&&", "||"):
            self.pos += 1
            self._skip_newlines()
            ops.append(tok.text)
            pipes.append(self._pipeline())
        return AndOr(pipes, ops)

    def _pipeline(self) -> Pipe:
        negated = False
        while (tok := self._peek()) is not None and tok.kind == "word" and tok.text in ("!", "time"):
            negated ^= tok.text == "!"
            self.pos += 1
        cmds: list[Node] = []
        while True:
            cmd = self._command()
            if cmd is not None:
                cmds.append(cmd)
            if not self._at("op", "|", "|&"):
                return Pipe(cmds, negated)
            self.pos += 1
            self._skip_newlines()

    def _command(self) -> Node | None:
        tok = self._peek()
        if tok is None:
            return None
        if tok.kind == "op" and tok.text == "(":
            self.pos += 1
            body = self.parse_list(")")
            self._expect("op", ")", tok.line)
            self._redirects()
            return Group(body, True)
        if tok.kind != "word":
            return self._simple()
        word, after = tok.text, [(t.kind, t.text) for t in self.toks[self.pos + 1:self.pos + 3]]
        if word == "{":
            self.pos += 1
            body = self.parse_list("}")
            self._expect("word", "}", tok.line)
            self._redirects()
            return Group(body, False)
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

    def _simple(self) -> Simple | None:
        words: list[Tok] = []
        while (tok := self._peek()) is not None:
            if tok.kind == "word":
                words.append(tok)
                self.pos += 1
            elif tok.kind == "op" and tok.text in REDIRECTS:
                self._redirects()
            else:
                break
        return Simple(words, words[0].line) if words else None

    def _if(self, line: int) -> If:
        clauses: list[tuple[List, List]] = []
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
        return If(clauses, orelse)

    def _loop(self, keyword: str, line: int) -> Loop:
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
        return Loop(cond, var, words, body)

    def _case(self, line: int) -> Case:
        self.pos += 1
        subject = self._peek()
        if subject is not None and subject.kind == "word":
            self.pos += 1
        else:
            subject = None
        self._skip_newlines()
        self._expect("word", "in", line)
        branches: list[List] = []
        patterns: list[list[Tok]] = []
        falls_through: list[bool] = []
        while True:
            self._skip_newlines()
            if self._peek() is None or self._at("word", "esac"):
                break
            if self._at("op", "("):
                self.pos += 1
            words: list[Tok] = []
            while (tok := self._peek()) is not None and tok.kind != "nl" and not self._at("op", ")"):
                if tok.kind == "word":
                    words.append(tok)  # the patterns: `a|b)`
                self.pos += 1
            if not self._at("op", ")"):
                self.warnings.append(f"line {line}: unreadable case pattern")
                break
            self.pos += 1
            patterns.append(words)
            branches.append(self.parse_list("esac", *_CASE_ENDS))
            falls_through.append(self._at("op", ";&", ";;&"))
            if self._at("op", *_CASE_ENDS):
                self.pos += 1
        self._expect("word", "esac", line)
        self._redirects()
        return Case(subject, branches, patterns, falls_through)

    def _function(self, line: int) -> FuncDef | None:
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
        return FuncDef(name, body)


def first(statements: List) -> AndOr | None:
    return statements.items[0][0] if statements.items else None


def leading_words(node: AndOr | Node | None) -> list[str]:
    """The words a statement starts with, to see whether it looks at `$?` first thing."""
    if isinstance(node, AndOr):
        return leading_words(node.pipes[0].cmds[0] if node.pipes[0].cmds else None)
    if isinstance(node, Simple):
        return [w.text for w in node.words]
    if isinstance(node, Group):
        return leading_words(first(node.body))
    if isinstance(node, If):
        return leading_words(first(node.clauses[0][0]))
    if isinstance(node, Loop):
        return leading_words(first(node.cond)) if node.cond is not None else [w.text for w in node.words]
    if isinstance(node, Case) and node.subject is not None:
        return [node.subject.text]
    return []
