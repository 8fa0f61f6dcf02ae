"""Service environment: Environment=, EnvironmentFile= and exec-time `$VAR` expansion (systemd.exec(5);
config_parse_environ() in load-fragment.c, parse_env_file_internal() in env-file.c, replace_env_argv()
in env-util.c of systemd 252).

Environment files follow their own rules, unlike unit files: a shell-like state machine where "…"
keeps backslashes except before " \\ ` $ and newline, '…' is literal, an unquoted backslash escapes any
character (a backslash-newline joins lines), and trailing blanks of unquoted text are dropped.
A later assignment of the same name replaces the earlier one in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from mailpreflight.units.execline import extract_first_word
from mailpreflight.units.specifiers import UNIT_FREE_MAX, Expander, NoSpecifiers, SpecifierError
from mailpreflight.units.syntax import utf8_is_valid

WHITESPACE = " \t\n\r"
NEWLINE = "\n\r"
SHELL_NEED_ESCAPE = '"\\`$'
ARG_MAX = 2 * 1024 * 1024  # sysconf(_SC_ARG_MAX) on Linux with the default 8 MiB stack
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_name_is_valid(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


def env_value_is_valid(value: str) -> bool:
    """Valid UTF-8 of a sane length; control characters are allowed in values (systemd 252)."""
    if value.isascii():  # valid UTF-8, one byte a character
        return len(value) <= ARG_MAX - 3
    return utf8_is_valid(value) and len(value.encode("utf-8", "surrogateescape")) <= ARG_MAX - 3


def env_assignment_is_valid(assignment: str) -> bool:
    name, equals, value = assignment.partition("=")
    return bool(equals) and env_name_is_valid(name) and env_value_is_valid(value)


def _replace(env: dict[str, str], name: str, value: str) -> None:
    """strv_env_replace(): a name keeps the position of its first assignment (as a dict key does), in constant
    time: a file of 200,000 assignments is read in linear time."""
    env[name] = value


# Lines with nothing to unquote or unescape, read with one pattern each instead of character by character:
# the assignment `[blanks]KEY[blanks]=[blanks]VALUE[blanks]` where VALUE holds no backslash and does not start
# with a quote (quotes inside an unquoted value are literal), and comments without a backslash. Anything else
# goes through the state machine; both read every line the same (tests/unit/test_environment_corpus.py).
_SIMPLE_ASSIGNMENT = re.compile(r"[ \t]*([^#;= \t\r\n][^=\r\n]*)=[ \t]*([^'\"\\ \t\r\n][^\\\r\n]*)?[\r\n]")
_SIMPLE_COMMENT = re.compile(r"[ \t]*[#;][^\\\r\n]*[\r\n]")
_BLANKS = " \t"
_PRE_KEY_SPACE = re.compile(r"[ \t\r\n]+")  # skipped before a key, each line end counted (\r too, as systemd does)
_PRE_VALUE_BLANKS = re.compile(r"[ \t]+")  # skipped after `=` and between quoted parts
_RUNS = {  # per state: characters it adds one by one without changing state (blank and non-blank apart)
    "KEY": re.compile(r"[ \t]+|[^= \t\r\n]+"),
    "VALUE": re.compile(r"[ \t]+|[^\\ \t\r\n]+|(?:\\[^\r\n])+"),  # ... and escaped characters
    "SINGLE_QUOTE_VALUE": re.compile(r"[^']+"),
    "DOUBLE_QUOTE_VALUE": re.compile(r'[^"\\]+|(?:\\["\\`$])+|(?:\\[^"\\`$\n])+'),  # kept: \x stays \x
    "COMMENT": re.compile(r"[^\\\r\n]+"),
}


@dataclass(frozen=True)
class EnvFileResult:
    """An environment file as systemd reads it at start: its (name, value) assignments in order, warnings by line, and
    the error when systemd refuses the file."""

    env: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[int, str], ...]  # (line, message)
    error: tuple[int, str] | None = None  # systemd refuses the file: the unit fails to start


def parse_env_file(data: bytes, systemd_version: int = 252, fast: bool = True) -> EnvFileResult:
    """EnvironmentFile= contents -> ordered (name, value) pairs, as systemd reads them at start.

    Linear in the size of the file. `fast=False` reads every character with the state machine (the reference
    the fast path is tested against)."""
    text = data.decode("utf-8", "surrogateescape")
    all_utf8 = text.isascii() or utf8_is_valid(text)  # then no single key or value needs the check
    env: dict[str, str] = {}
    warnings: list[tuple[int, str]] = []
    state = "PRE_KEY"
    key: list[str] = []
    value: list[str] = []
    key_ws: int | None = None
    value_ws: int | None = None
    line = 1
    error: tuple[int, str] | None = None

    def push(name: str, val: str) -> None:
        nonlocal error
        if error is not None:
            return
        if not all_utf8 and not utf8_is_valid(name):
            error = (line, "invalid UTF-8 in key, refusing the file")
            return
        if not all_utf8 and not utf8_is_valid(val):
            error = (line, f"invalid UTF-8 value for {name}, refusing the file")
            return
        if not (env_name_is_valid(name) and (len(val) * 4 <= ARG_MAX - 3 or env_value_is_valid(val))):
            warnings.append((line, f'Ignoring invalid environment assignment "{name}={val}"'))
            return
        _replace(env, name, val)

    def push_parts() -> None:
        push("".join(key[:key_ws] if key_ws is not None else key), "".join(value))

    # A deliberate copy of systemd's parse_env_file_internal() state machine (env-file.c), see docs/design.md:
    # its states repeat each other (KEY and VALUE trim blanks alike; the quote states count lines alike) as there.
    # The fast path before it only takes, in one step, what the machine would take character by character.
    pos, end = 0, len(text)
    while pos < end:
        if state == "PRE_KEY" and fast:
            # Blanks and empty lines first, in one step: else each blank of a long run would be a failed try of
            # the patterns below that scans the rest of the run (a line of 40,000 spaces took 16 s).
            space = _PRE_KEY_SPACE.match(text, pos)
            if space is not None:
                chunk = space.group()
                line += chunk.count("\n") + chunk.count("\r")
                pos = space.end()
                continue
            simple = _SIMPLE_ASSIGNMENT.match(text, pos)
            if simple is not None:
                push(simple.group(1).rstrip(_BLANKS), (simple.group(2) or "").rstrip(_BLANKS))
                line += 1
                pos = simple.end()
                continue
            comment = _SIMPLE_COMMENT.match(text, pos)
            if comment is not None:
                line += 1
                pos = comment.end()
                continue
        elif state == "PRE_VALUE" and fast and (blanks := _PRE_VALUE_BLANKS.match(text, pos)) is not None:
            pos = blanks.end()
            continue
        elif fast and state in _RUNS:  # a run of characters that all take the same step, in one step
            run = _RUNS[state].match(text, pos)
            if run is not None:
                chunk = run.group()
                pos = run.end()
                if chunk[0] == "\\" and state in ("VALUE", "DOUBLE_QUOTE_VALUE"):  # escaped pairs
                    if state == "VALUE":
                        value_ws = None
                        value.append(chunk[1::2])
                    else:
                        value.append(chunk[1::2] if chunk[1] in SHELL_NEED_ESCAPE else chunk)
                elif state == "KEY" or state == "VALUE":
                    blank = chunk[0] in _BLANKS
                    if state == "KEY":
                        key_ws = (key_ws if key_ws is not None else len(key)) if blank else None
                        key.append(chunk)
                    else:
                        value_ws = (value_ws if value_ws is not None else len(value)) if blank else None
                        value.append(chunk)
                elif state != "COMMENT":
                    line += chunk.count("\n")
                    value.append(chunk)
                continue
        char = text[pos]
        pos += 1
        if state == "PRE_KEY":
            if char in "#;":
                state = "COMMENT"
            elif char not in WHITESPACE:
                state, key, key_ws = "KEY", [char], None
            elif char in NEWLINE:
                line += 1
        elif state == "KEY":
            if char in NEWLINE:
                warnings.append((line, f"Missing '=' after {''.join(key).strip()!r}, ignoring line"))
                state = "PRE_KEY"
                line += 1
            elif char == "=":
                state, value, value_ws = "PRE_VALUE", [], None
            else:
                if char not in WHITESPACE:
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key.append(char)
        elif state == "PRE_VALUE":
            if char in NEWLINE:
                push_parts()
                state = "PRE_KEY"
                line += 1
            elif char == "'":
                state = "SINGLE_QUOTE_VALUE"
            elif char == '"':
                state = "DOUBLE_QUOTE_VALUE"
            elif char == "\\":
                state = "VALUE_ESCAPE"
            elif char not in WHITESPACE:
                state = "VALUE"
                value.append(char)
        elif state == "VALUE":
            if char in NEWLINE:
                if value_ws is not None:
                    del value[value_ws:]
                push_parts()
                state = "PRE_KEY"
                line += 1
            elif char == "\\":
                state, value_ws = "VALUE_ESCAPE", None
            else:
                if char not in WHITESPACE:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value.append(char)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if char in NEWLINE:
                line += 1  # an escaped newline joins the lines
            else:
                value.append(char)
        elif state == "SINGLE_QUOTE_VALUE":
            if char == "'":
                state = "PRE_VALUE"
            else:
                line += char == "\n"
                value.append(char)
        elif state == "DOUBLE_QUOTE_VALUE":
            if char == '"':
                state = "PRE_VALUE"
            elif char == "\\":
                state = "DOUBLE_QUOTE_VALUE_ESCAPE"
            else:
                line += char == "\n"
                value.append(char)
        elif state == "DOUBLE_QUOTE_VALUE_ESCAPE":
            state = "DOUBLE_QUOTE_VALUE"
            if char in SHELL_NEED_ESCAPE:
                value.append(char)
            elif char != "\n":
                value += ["\\", char]
            else:
                line += 1
        elif state == "COMMENT":
            if char == "\\":
                state = "COMMENT_ESCAPE"
            elif char in NEWLINE:
                state = "PRE_KEY"
                line += 1
        elif state == "COMMENT_ESCAPE":
            # Up to systemd 253 a backslash at the end of a comment also comments out the next line.
            state = "COMMENT" if systemd_version < 254 or char not in NEWLINE else "PRE_KEY"
            line += char == "\n"
    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE", "SINGLE_QUOTE_VALUE", "DOUBLE_QUOTE_VALUE",
                 "DOUBLE_QUOTE_VALUE_ESCAPE"):
        if state == "VALUE" and value_ws is not None:
            del value[value_ws:]
        push_parts()
    return EnvFileResult(tuple(env.items()), tuple(warnings), error)


def parse_environment_value(value: str, expander: Expander, warnings: list[str]) -> list[tuple[str, str]]:
    """One non-empty Environment= value -> assignments, in order (config_parse_environ())."""
    if "%" in value or "\\" in value or len(value) > UNIT_FREE_MAX:
        return _parse_environment_value(value, expander, warnings)
    # nothing a unit could change (no specifier, no escape that makes one): read once for all units that have it
    # (`Environment=LANG=C` in every unit of a fleet, a shared drop-in; docs/design.md, "Performance")
    assignments, said = _unit_free(value)
    warnings.extend(said)
    return list(assignments)


@lru_cache(maxsize=256)  # at most 256 values of at most UNIT_FREE_MAX characters; the most recently used stay
def _unit_free(value: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    warnings: list[str] = []
    return tuple(_parse_environment_value(value, NoSpecifiers(), warnings)), tuple(warnings)


def _parse_environment_value(value: str, expander: Expander | NoSpecifiers,
                             warnings: list[str]) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    pos = 0
    while True:
        try:
            word, pos = extract_first_word(value, pos)
        except ValueError:
            warnings.append(f"Invalid syntax, ignoring: {value}")
            return result
        if word is None:
            return result
        try:
            resolved = expander.expand(word.text)
        except SpecifierError as exc:
            warnings.append(f"Failed to resolve specifiers in {word.text}, ignoring: {exc}")
            continue
        if not env_assignment_is_valid(resolved):
            warnings.append(f"Invalid environment assignment, ignoring: {resolved}")
            continue
        name, _, val = resolved.partition("=")
        result.append((name, val))


def merge(*layers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Later layers override earlier ones, keeping first positions (EnvironmentFile= beats Environment=)."""
    env: dict[str, str] = {}
    for layer in layers:
        for name, value in layer:
            _replace(env, name, value)
    return list(env.items())


def expand_argv(argv: Sequence[str], env: Iterable[tuple[str, str]]) -> list[str]:
    """replace_env_argv(): a word `$NAME` becomes the value split into words (none if unset);
    `${NAME}` anywhere in a word is replaced as it is; `$$` is a literal `$`."""
    values = dict(env)
    out: list[str] = []
    for word in argv:
        if word.startswith("$") and word[1:2] not in ("{", "$"):
            found = values.get(word[1:])
            if found is not None:
                out.extend(_split_value(found))
            continue
        out.append(_replace_braced(word, values))
    return out


def _split_value(value: str) -> list[str]:
    """strv_split_full(WHITESPACE, EXTRACT_RELAX|EXTRACT_UNQUOTE): quotes removed, no C escapes."""
    words: list[str] = []
    pos = 0
    while True:
        word, pos = extract_first_word(value, pos, cunescape=False, relax=True)
        if word is None:
            return words
        words.append(word.text)


def _replace_braced(word: str, values: dict[str, str]) -> str:
    """`${NAME}` replaced; `${NAME:...}` is syntax systemd 252 does not support: kept as written,
    though references inside it are still replaced; an unclosed `${` stays.

    The next `}` and `:` are looked up again only once passed: a word of many `${` without a `}` was
    quadratic (each one searched the rest of the word)."""
    if "$" not in word:
        return word
    out: list[str] = []
    pos = 0
    close = colon = -2  # the first `}` / `:` at or after an earlier position (-1: none), until passed
    while pos < len(word):
        if word.startswith("$$", pos):
            out.append("$")
            pos += 2
        elif word.startswith("${", pos):
            if close != -1 and close < pos + 2:
                close = word.find("}", pos + 2)
            if colon != -1 and colon < pos + 2:
                colon = word.find(":", pos + 2)
            if close < 0 or 0 <= colon < close:
                out.append("${")
                pos += 2
                continue
            out.append(values.get(word[pos + 2:close], ""))
            pos = close + 1
        else:
            out.append(word[pos])
            pos += 1
    return "".join(out)
