"""Exec*= command lines as systemd 252 parses them (systemd.service(5) "Command lines";
config_parse_exec() in load-fragment.c, extract_first_word() in extract-word.c, cunescape_one() in escape.c).

- words are split on blanks; '…' and "…" may start anywhere in a word and are removed; backslash escapes
  work inside and outside quotes alike; an unknown escape is kept verbatim (with a warning);
- the first word may carry prefixes - @ : + ! !! (and | from systemd 258); specifiers are expanded in each
  word after unquoting; `$VAR` stays for exec time;
- a lone `;` separates commands, `\\;` is a literal `;` argument;
- with the `-` prefix a broken line is dropped with a warning; without it the unit fails to load
  (LoadState=bad-setting), except for a first word that cannot be decoded, which only drops the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailpreflight.model import Source
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.specifiers import (
    LONG_LINE_MAX,
    PATH_MAX,
    UNIT_FREE_MAX,
    Expander,
    NoSpecifiers,
    SpecifierError,
)

WHITESPACE = " \t\n\r"
_PLAIN = re.compile(r"[^ \t\n\r'\"\\]+")
_PLAIN_WORD = re.compile(r"[ \t\n\r]*([^ \t\n\r'\"\\]+)(?:[ \t\n\r]+|\Z)")  # a whole word with nothing to undo
_IN_QUOTE = {"'": re.compile(r"[^'\\]+"), '"': re.compile(r'[^"\\]+')}
# a whole word that is one quoted string with no backslash in it ("sa-update || true"): the quotes simply go
_QUOTED_WORD = re.compile(r"""[ \t\n\r]*(?:"([^"\\]*)"|'([^'\\]*)')(?:[ \t\n\r]+|\Z)""")
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39,
                   "s": 32}
# Prefix characters and the flag names systemd's ExecXxxEx D-Bus properties use for them.
PREFIX_FLAGS = {"-": "ignore-failure", "@": "argv0-separate", ":": "no-env-expand", "+": "privileged",
                "!": "no-setuid", "!!": "ambient", "|": "via-shell"}
_PREFIX_CHARS = "-@:+!|"
EXEC_KEYS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
             "ExecStopPost")


@fast_init
@dataclass(frozen=True)
class ExecCommand:
    """One command of an Exec*= setting, as systemd holds it before exec time."""

    key: str
    path: str
    argv: tuple[str, ...]
    prefixes: tuple[str, ...]
    source: Source

    @property
    def ignore_failure(self) -> bool:
        return "-" in self.prefixes

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(PREFIX_FLAGS[p] for p in self.prefixes)


def _cunescape_one(text: str, start: int) -> tuple[bytes, int] | None:
    """Decode the escape whose letter is at text[start]; returns (bytes, chars consumed) or None."""
    letter = text[start:start + 1]
    if letter in _SIMPLE_ESCAPES:
        return bytes([_SIMPLE_ESCAPES[letter]]), 1
    if letter == "x":
        digits = text[start + 1:start + 3]
        if len(digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in digits) and int(digits, 16):
            return bytes([int(digits, 16)]), 3
        return None
    if letter in ("u", "U"):
        width = 4 if letter == "u" else 8
        digits = text[start + 1:start + 1 + width]
        if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
            return None
        code = int(digits, 16)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code).encode(), 1 + width
    if letter and letter in "01234567":
        digits = text[start:start + 3]
        if len(digits) != 3 or not all(c in "01234567" for c in digits):
            return None
        value = int(digits, 8)
        if value == 0 or value > 255:
            return None
        return bytes([value]), 3
    return None


@dataclass
class Word:
    """One word as extract_first_word() returns it: unquoted and unescaped, and whether an unknown escape was kept
    verbatim in it (only with relax_escapes)."""

    text: str
    unknown_escapes: bool


def extract_first_word(text: str, pos: int, *, relax_escapes: bool = False, cunescape: bool = True,
                       relax: bool = False) -> tuple[Word | None, int]:
    """extract_first_word(UNQUOTE [|CUNESCAPE] [|RELAX]) from text[pos:]; returns (word or None, next pos).

    Raises ValueError for unbalanced quotes or a trailing backslash (unless `relax`: the word just ends),
    and for an unknown escape unless relax_escapes (then it is kept verbatim and flagged).
    Without `cunescape` a backslash simply makes the next character literal.
    """
    plain = _PLAIN_WORD.match(text, pos)
    if plain is not None:  # no quote, no backslash: the word is the text itself (the common case)
        return Word(plain.group(1), False), plain.end()
    quoted = _QUOTED_WORD.match(text, pos)
    if quoted is not None:  # one quoted string, no backslash: its inside
        double, single = quoted.groups()
        return Word(double if double is not None else single, False), quoted.end()
    return _extract_any(text, pos, relax_escapes, cunescape, relax)


def _extract_any(text: str, pos: int, relax_escapes: bool, cunescape: bool, relax: bool) -> tuple[Word | None, int]:
    """extract_first_word() of any text, character by character (the fast paths above are tested against it)."""
    length = len(text)
    while pos < length and text[pos] in WHITESPACE:
        pos += 1
    if pos >= length:
        return None, length
    out = bytearray()
    quote: str | None = None
    unknown = False

    def word() -> Word:
        return Word(out.decode("utf-8", "surrogateescape"), unknown)

    while pos < length:
        # Copy runs of ordinary characters at once; only quotes, backslashes and blanks need a look.
        run = (_PLAIN if quote is None else _IN_QUOTE[quote]).match(text, pos)
        if run is not None and run.end() > pos:
            out += text[pos:run.end()].encode("utf-8", "surrogateescape")
            pos = run.end()
            continue
        char = text[pos]
        if char == "\\":
            if pos + 1 >= length:
                if relax_escapes and quote is None:
                    out += b"\\"
                    return word(), length
                if relax:
                    return word(), length
                raise ValueError("trailing backslash")
            if not cunescape:
                out += text[pos + 1].encode("utf-8", "surrogateescape")
                pos += 2
                continue
            decoded = _cunescape_one(text, pos + 1)
            if decoded is not None:
                out += decoded[0]
                pos += 1 + decoded[1]
                continue
            if not relax_escapes:
                raise ValueError("unknown escape sequence")
            out += ("\\" + text[pos + 1]).encode("utf-8", "surrogateescape")
            unknown = True
            pos += 2
        elif quote is not None:  # the closing quote
            quote = None
            pos += 1
        elif char in ("'", '"'):
            quote = char
            pos += 1
        else:  # a blank ends the word
            while pos < length and text[pos] in WHITESPACE:
                pos += 1
            return word(), pos
    if quote is not None and not relax:
        raise ValueError("unbalanced quoting")
    return word(), length


def extract_word_and_warn(text: str, pos: int, warnings: list[str]) -> tuple[str | None, int]:
    """extract_first_word_and_warn(): retry with unknown escapes kept verbatim, and say so."""
    try:
        word, end = extract_first_word(text, pos)
    except ValueError:
        try:
            word, end = extract_first_word(text, pos, relax_escapes=True)
        except ValueError as exc:
            raise ValueError(f"Unbalanced quoting, ignoring: \"{text}\"") from exc
        if word is not None:
            warnings.append(f'Ignoring unknown escape sequences: "{word.text}"')
    return (word.text if word else None), end


def _split_prefixes(first: str, via_shell: bool) -> tuple[tuple[str, ...], str]:
    """Leading prefix characters of the first word, in the order written (systemd's loop)."""
    if first[:1] not in _PREFIX_CHARS:  # most lines: a path first (an empty word takes the loop: nothing to strip)
        return (), first
    prefixes: list[str] = []
    index = 0
    for index, char in enumerate(first):
        privileged = {"+", "!", "!!"} & set(prefixes)
        if (char in "-@:" and char not in prefixes) or (char in "+!" and not privileged):
            prefixes.append(char)
        elif char == "!" and privileged == {"!"}:
            prefixes[prefixes.index("!")] = "!!"  # a second "!" anywhere upgrades the first
        elif char == "|" and via_shell and "|" not in prefixes:
            prefixes.append("|")
        else:
            return tuple(prefixes), first[index:]
    return tuple(prefixes), ""


def _valid_path(path: str) -> bool:
    if path.startswith("/") and len(path) <= 255:  # no component can be longer than the whole
        return True
    if path.startswith("/"):
        return len(path) < PATH_MAX and all(len(part) <= 255 for part in path.split("/"))
    return path not in (".", "..") and "/" not in path and len(path) <= 255


_UNSAFE = re.compile("[\x00-\x1f\x7f\\\\\"']")  # a control character, DEL, a backslash or a quote


def _safe(text: str) -> bool:
    return _UNSAFE.search(text) is None


@fast_init
@dataclass(frozen=True)
class ExecParse:
    """The commands systemd keeps from one Exec*= value, and why it stopped early if it did.

    `fatal` means systemd refuses the whole unit (bad-setting); otherwise an `error` only drops the rest
    of the line (the `-` prefix, or a first word that cannot be decoded).
    """

    commands: tuple[ExecCommand, ...]
    error: str | None = None
    fatal: bool = False


def parse_exec(key: str, value: str, source: Source, expander: Expander, warnings: list[str],
               systemd_version: int = 252) -> ExecParse:
    """Parse one non-empty Exec*= value (an empty one is the caller's reset)."""
    if "%" in value or "\\" in value or len(value) > UNIT_FREE_MAX:
        return _parse_exec(key, value, source, expander, warnings, systemd_version)
    # No specifier, and no escape that could make one: the unit does not matter, and a fleet's units repeat such
    # lines (`/bin/bash -c "sa-update || true"`, `/bin/kill -HUP $MAINPID`): parsed once, given this key and source
    # (docs/design.md, "Performance").
    parsed, said = _unit_free(value, systemd_version)
    warnings.extend(said)
    return ExecParse(tuple(ExecCommand(key, c.path, c.argv, c.prefixes, source) for c in parsed.commands),
                     parsed.error, parsed.fatal)


@lru_cache(maxsize=256)  # the most recently used stay: lines every unit has are never pushed out
def _unit_free(value: str, systemd_version: int) -> tuple[ExecParse, tuple[str, ...]]:
    warnings: list[str] = []
    parsed = _parse_exec("", value, _SOURCE_LATER, NoSpecifiers(), warnings, systemd_version)
    return parsed, tuple(warnings)


_SOURCE_LATER = Source("", 0)


def _parse_exec(key: str, value: str, source: Source, expander: Expander | NoSpecifiers, warnings: list[str],
                systemd_version: int) -> ExecParse:
    commands: list[ExecCommand] = []
    pos = 0
    while True:
        try:
            first, pos = extract_word_and_warn(value, pos, warnings)
        except ValueError as exc:
            return ExecParse(tuple(commands), str(exc))
        if first is None:
            return ExecParse(tuple(commands))
        if first == ";":
            continue
        prefixes, rest = _split_prefixes(first, via_shell=systemd_version >= 258)
        ignore = "-" in prefixes

        def stop(message: str, ignore: bool = ignore) -> ExecParse:
            return ExecParse(tuple(commands), message + (", ignoring" if ignore else ""), fatal=not ignore)

        try:
            path = expander.expand(rest, PATH_MAX)
        except SpecifierError as exc:
            return stop(f"Failed to resolve unit specifiers in '{rest}': {exc}")
        if not path:
            return stop(f"Empty path in command line: '{value}'")
        if not _safe(path):
            return stop(f"Executable name contains special characters: {path}")
        if path.endswith("/"):
            return stop(f"Executable path specifies a directory: {path}")
        if not _valid_path(path):
            return stop(f"Neither a valid executable name nor an absolute path: {path}")
        argv: list[str] = [] if "@" in prefixes else [path]
        separator = False
        length = len(value)
        while pos < length:
            char = value[pos]
            if char == ";" and (pos + 1 == length or value[pos + 1] in WHITESPACE):
                pos = _skip_blanks(value, pos + 1)
                separator = True
                break
            if char == "\\" and value.startswith("\\;", pos) and (pos + 2 == length or value[pos + 2] in WHITESPACE):
                pos = _skip_blanks(value, pos + 2)
                argv.append(";")
                continue
            plain = _PLAIN_WORD.match(value, pos)  # extract_first_word()'s own first step, for most words
            if plain is not None:
                word: str | None = plain.group(1)
                pos = plain.end()
            else:
                try:
                    word, pos = extract_word_and_warn(value, pos, warnings)
                except ValueError as exc:
                    return stop(str(exc))
            if word is None:
                break
            if "%" not in word and len(word) < LONG_LINE_MAX:  # what expand() gives a word without a specifier
                argv.append(word)
                continue
            try:
                argv.append(expander.expand(word))
            except SpecifierError as exc:
                return stop(f"Failed to resolve unit specifiers in {word}: {exc}")
        if not argv:
            return stop(f"Empty executable name or zeroeth argument: {value}")
        commands.append(ExecCommand(key, _simplify(path), tuple(argv), prefixes, source))
        if not separator:
            return ExecParse(tuple(commands))


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in WHITESPACE:
        pos += 1
    return pos


def _simplify(path: str) -> str:
    """path_simplify(): drop duplicate slashes and `.` components (never `..`)."""
    if "/" not in path or ("//" not in path and "/." not in path and not path.startswith(".")
                           and not path.endswith("/")):
        return path  # nothing to drop
    absolute = path.startswith("/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    simplified = "/".join(parts)
    return ("/" + simplified) if absolute else (simplified or ".")
