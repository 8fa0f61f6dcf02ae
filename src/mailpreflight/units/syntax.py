"""Unit file syntax as systemd 252's config parser reads it (systemd.syntax(7), conf-parser.c).

Facts checked against `systemd-analyze verify` of systemd 252 (see tests/corpus/cases/confparser.json):
- lines end at \\n, \\r\\n, \\r or NUL; a line of 1 MiB (1048576 bytes) or more makes the whole file fail;
- a line whose first non-blank character is `#` or `;` is a comment, also inside a continuation;
- an unescaped trailing backslash joins the next line (the backslash becomes a space); the assignment is
  attributed to the LAST physical line, as systemd's own messages do;
- a UTF-8 BOM is dropped once; the comment test runs before that, so `<BOM>#x` is not a comment;
- `[Section]` with bad characters or no closing `]`, and any line that is not UTF-8, fail the file;
- unknown sections are ignored with a warning, `X-` sections silently; so are their assignments;
- lines without `=` or without a key are ignored with a warning; `.include` is just such a line in 252.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from mailpreflight.model import Source
from mailpreflight.model.fastinit import fast_init

LONG_LINE_MAX = 1024 * 1024
BOM = "\ufeff"
WHITESPACE = " \t\n\r"
_BOM_BYTES = BOM.encode()
_WHITESPACE_BYTES = WHITESPACE.encode()
_EOL = re.compile(rb"\r\n|[\r\n\0]")
# utf8_is_valid(): surrogates (undecodable bytes, kept by surrogateescape) and the noncharacters U+xFFFE and
# U+xFFFF of every plane are refused.
NOT_UTF8 = re.compile("[\ud800-\udfff" + "".join(
    chr(plane * 0x10000 + 0xFFFE) + "-" + chr(plane * 0x10000 + 0xFFFF) for plane in range(17)) + "]")


def utf8_is_valid(text: str) -> bool:
    return NOT_UTF8.search(text) is None


# string_is_safe(): no control characters, no quotes or backslashes.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\\"']")

SECTIONS_BY_TYPE: dict[str, frozenset[str]] = {
    "service": frozenset({"Unit", "Service", "Install"}),
    "socket": frozenset({"Unit", "Socket", "Install"}),
    "timer": frozenset({"Unit", "Timer", "Install"}),
    "path": frozenset({"Unit", "Path", "Install"}),
    "mount": frozenset({"Unit", "Mount", "Install"}),
    "automount": frozenset({"Unit", "Automount", "Install"}),
    "swap": frozenset({"Unit", "Swap", "Install"}),
    "target": frozenset({"Unit", "Install"}),
    "slice": frozenset({"Unit", "Slice", "Install"}),
    "scope": frozenset({"Unit", "Scope", "Install"}),
    "device": frozenset({"Unit", "Install"}),
}


class LogLevel(StrEnum):
    """The level systemd logs a unit-file problem at (not a finding's Severity, model/outcome.py)."""

    WARNING = "warning"
    ERROR = "error"


@fast_init
@dataclass(frozen=True)
class Diagnostic:
    """A problem, located as systemd would locate it (so it matches the journal)."""

    severity: LogLevel
    message: str
    source: Source

    def __str__(self) -> str:
        return f"{self.source.file}:{self.source.systemd_line}: {self.message}" if self.source.line else (
            f"{self.source.file}: {self.message}")


@fast_init
@dataclass(frozen=True)
class Assignment:
    """One `Key=value` line of a unit file: its section, the key and the value with outer blanks stripped, and where it
    is (for a continued line, its first and last physical lines)."""

    section: str
    key: str
    value: str
    source: Source


@fast_init
@dataclass(frozen=True)
class ParsedFile:
    """Assignments in file order; `fatal` is set when systemd would refuse the whole unit."""

    path: str
    assignments: tuple[Assignment, ...]
    diagnostics: tuple[Diagnostic, ...]
    fatal: Diagnostic | None = None


@dataclass
class _State:
    """What parse_unit_file() keeps while it reads one file: the sections it accepts, the current section (None before
    the first or in an ignored one), and the assignments and warnings so far."""

    path: str
    sections: frozenset[str] | None
    section: str | None = None
    section_ignored: bool = False
    assignments: list[Assignment] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def warn(self, where: Source, message: str) -> None:
        self.diagnostics.append(Diagnostic(LogLevel.WARNING, message, where))


def split_lines(data: bytes) -> list[bytes]:
    """Physical lines as systemd's read_line() delimits them (a final EOL adds no empty line)."""
    lines = _EOL.split(data)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _ends_in_escape(text: str) -> bool:
    """An odd run of trailing backslashes: the last one escapes the line end."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def parse_unit_file(data: bytes, path: str, sections: frozenset[str] | None = None) -> ParsedFile:
    """Parse one unit file or drop-in. Never raises: problems become diagnostics or `fatal`."""
    if b"\r" not in data and b"\0" not in data and len(data) < LONG_LINE_MAX:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if BOM not in text:
                return _parse_simple(text, path, sections)
    return _parse_bytes(data, path, sections)


def _parse_bytes(data: bytes, path: str, sections: frozenset[str] | None) -> ParsedFile:
    """parse_unit_file() of any file: lines as read_line() delimits them, each decoded on its own."""
    lines = split_lines(data)
    return _parse_lines(_State(path, sections), _decoded(lines), len(lines))


def _decoded(lines: list[bytes]) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each physical line that is not a comment; None for a line too long."""
    bom_seen = False
    for lineno, raw in enumerate(lines, 1):
        if len(raw) >= LONG_LINE_MAX:
            yield lineno, None
            return
        if raw.lstrip(_WHITESPACE_BYTES)[:1] in (b"#", b";"):
            continue  # the comment test comes before the BOM is dropped: `<BOM>#x` is no comment
        if not bom_seen and raw.startswith(_BOM_BYTES):
            raw = raw[len(_BOM_BYTES):]
            bom_seen = True
        # Decoding per line keeps the byte-exact semantics of the C parser for valid UTF-8; an invalid
        # line is rejected by systemd only once it reaches parse_line(), so keep it as surrogates till then.
        yield lineno, raw.decode("utf-8", "surrogateescape")


def _parse_simple(text: str, path: str, sections: frozenset[str] | None, usual: bool = True) -> ParsedFile:
    """parse_unit_file() of the usual file (docs/design.md, "Performance"): valid UTF-8 as a whole, lines ending in
    \\n only, no BOM, smaller than a line may be: decoded at once, its comments dropped in one pass."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    kept = [(n, line) for n, line in enumerate(lines, 1) if line.lstrip(WHITESPACE)[:1] not in ("#", ";")]
    return _parse_lines(_State(path, sections), kept, len(lines), usual)


def _parse_lines(state: _State, lines: Iterable[tuple[int, str | None]], count: int, usual: bool = True) -> ParsedFile:
    """The assignments of a file's lines that are not comments ((number, text); None: too long), `count` lines in
    all. A trailing backslash joins the next line; a comment inside a continuation was dropped already. `usual`:
    the usual line is taken the short way (False: every line through _parse_line(), what tests compare it with)."""
    path = state.path
    assignments = state.assignments
    continuation: list[str] = []  # pieces of a continued line, each ending in the space that replaced "\\"
    continued_length = 0
    first_line = 0
    for lineno, text in lines:
        if text is None:
            return _fail(state, Source(path, lineno), "Line too long")
        if not continuation:
            line = text.strip(WHITESPACE)
            if not line:
                continue  # a blank line, not ending a continuation: nothing to parse
            first_line = lineno
            section = state.section
            # The usual line: `Key=value` of one physical line, ASCII, in a section: what _parse_line() makes of
            # it, without its other cases (tests/unit/test_unitfile_simple.py compares the two ways).
            if usual and section is not None and line[0] != "[" and not text.endswith("\\") and line.isascii():
                key, equals, value = line.partition("=")
                if equals and key:
                    assignments.append(Assignment(section, key.strip(WHITESPACE), value.strip(WHITESPACE),
                                                  Source(path, lineno, lineno)))
                    continue
        elif continued_length + len(text) > LONG_LINE_MAX:
            return _fail(state, Source(path, first_line, lineno), "Continuation line too long")
        # A piece ends in a space, so the escape state at each join is "not escaped": looking at the
        # new piece alone is enough (and keeps long continuations linear).
        if text.endswith("\\") and _ends_in_escape(text):
            continuation.append(text[:-1] + " ")
            continued_length += len(text)
            continue
        logical = "".join(continuation) + text if continuation else text
        continuation, continued_length = [], 0
        failure = _parse_line(state, Source(path, first_line, lineno), logical)
        if failure:
            return _fail(state, Source(path, first_line, lineno), failure)
    if continuation:
        where = Source(path, first_line, count + 1)
        failure = _parse_line(state, where, "".join(continuation))
        if failure:
            return _fail(state, where, failure)
    return ParsedFile(path, tuple(state.assignments), tuple(state.diagnostics))


def _fail(state: _State, where: Source, message: str) -> ParsedFile:
    fatal = Diagnostic(LogLevel.ERROR, message, where)
    return ParsedFile(state.path, tuple(state.assignments), (*state.diagnostics, fatal), fatal)


def _parse_line(state: _State, where: Source, text: str) -> str | None:
    """One logical line; returns an error message when the whole file fails."""
    line = text.strip(WHITESPACE)
    if not line:
        return None
    if not line.isascii() and NOT_UTF8.search(line):
        printable = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return f"String is not UTF-8 clean, ignoring assignment: {printable}"
    if line.startswith("["):
        if not line.endswith("]"):
            return f"Invalid section header '{line}'"
        name = line[1:-1]
        if _UNSAFE.search(name):
            return f"Bad characters in section header '{line}'"
        if state.sections is not None and name not in state.sections:
            # "-Name" in the known list: a section accepted silently and ignored.
            if not name.startswith("X-") and f"-{name}" not in state.sections:
                state.warn(where, f"Unknown section '{name}'. Ignoring.")
            state.section, state.section_ignored = None, True
        else:
            state.section, state.section_ignored = name, False
        return None
    if state.section is None:
        if not state.section_ignored:
            state.warn(where, "Assignment outside of section. Ignoring.")
        return None
    key, equals, value = line.partition("=")
    if not equals:
        state.warn(where, "Missing '=', ignoring line.")
        return None
    if not key:
        state.warn(where, "Missing key name before '=', ignoring line.")
        return None
    state.assignments.append(
        Assignment(state.section, key.strip(WHITESPACE), value.strip(WHITESPACE), where)
    )
    return None
