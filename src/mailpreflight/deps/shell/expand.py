"""Word expansion as the shell does it, over the variables known so far: quote removal, $NAME, ${NAME:-word} and
the like, field splitting. Command substitutions are collected for the reader, never run."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mailpreflight.deps.shell.lexer import skip

_PLAIN = re.compile(r"[^\\'\"`$<>]+")
ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:(:?[-=+])(.*))?", re.S)

POSITIONAL_MAX = 256  # positional parameters kept; more: not known here
POSITIONAL_CHANGES = 1000  # set --, shift, function calls per script that change them; more: not known here
_UNKNOWN_ALL = frozenset({"$@", "$*", "${@}", "${*}"})

Piece = tuple[str, str]  # (text, kind): "lit", "split" (unquoted known value: field splitting) or "raw" (as written)


def split_fields(pieces: list[Piece]) -> list[str]:
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


def small_count(text: str) -> bool:
    """A count the reader takes: ASCII digits ('²'.isdigit() is true, int() refuses it), a few of them."""
    return text.isascii() and text.isdigit() and len(text) <= 4


class Expansion:
    """The reader's variables, and how words expand with them."""

    vars: dict[str, str]
    changes = 0  # set_positional() calls so far (POSITIONAL_CHANGES)

    def positional(self) -> list[str] | None:
        """$1..$N when they are known ($# is set: the reader was told the script's arguments), else None."""
        count = self.vars.get("#", "")
        if not small_count(count) or int(count) > POSITIONAL_MAX:
            return None
        values = [self.vars.get(str(i)) for i in range(1, int(count) + 1)]
        return None if any(v is None for v in values) else [v for v in values if v is not None]

    def set_positional(self, values: list[str] | None) -> None:
        """`set -- ARGS`, `shift`, a function's arguments: the new $1..$N (None: no longer known). At most
        POSITIONAL_MAX of them, and POSITIONAL_CHANGES changes a script: past that they are not known (a hostile
        script of thousands of `shift`s over thousands of words would otherwise cost their product)."""
        self.changes += 1
        if values is not None and (len(values) > POSITIONAL_MAX or self.changes > POSITIONAL_CHANGES
                                   or any(v in _UNKNOWN_ALL for v in values)):
            values = None  # `set -- "$@" x` with "$@" not known here: not known either
        count = self.vars.pop("#", None)
        if count is not None and small_count(count):
            for index in range(1, int(count) + 1):
                self.vars.pop(str(index), None)
        elif values is not None or count is not None or self.changes == 1:
            for key in [k for k in self.vars if k.isascii() and k.isdigit() and k != "0"]:
                del self.vars[key]
        if values is not None:
            self.vars.update({str(i): v for i, v in enumerate(values, 1)})
            self.vars["#"] = str(len(values))

    def fields(self, raw: str, line: int, subs: list[tuple[str, int]]) -> list[str]:
        """A word's fields after expansion. "$@" (also "${@}") is each positional parameter as a field of its own,
        none when there is none; unquoted $@/$* are the parameters field-split; "$*" one field, blank-joined.
        Other words: split_fields() of their pieces."""
        if raw in ('"$@"', '"${@}"', "$@", "${@}", "$*", "${*}", '"$*"', '"${*}"'):
            values = self.positional()
            if values is not None:
                if raw.startswith('"'):
                    return values if "@" in raw else [" ".join(values)]
                return [f for v in values for f in split_fields([(v, "split")])]
        return split_fields(self._pieces(raw, line, subs))

    def _assign(self, values: Mapping[str, str | None]) -> None:
        """None: a value not known here (it held $(…), $?, an unknown $VAR…): the variable becomes unknown."""
        for name, value in values.items():
            if value is None:
                self.vars.pop(name, None)
            else:
                self.vars[name] = value

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
                end = skip(raw, i)
                end = len(raw) + 1 if end < 0 else end
                out.append(("", "lit"))  # "" is a word even when empty
                out.extend(self._pieces(raw[i + 1:end - 1], here, subs, quoted=True))
                i = end
            elif char == "`":
                end = skip(raw, i)
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
            end = skip(raw, i + 1)
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
        if name in ("@", "*"):  # ${@:-word}, ${1+"$@"}-like forms over all parameters: not read here
            return [(written, "raw")]
        value = self.vars.get(name)
        if value is not None and (value != "" or not op.startswith(":")):
            if op.endswith("+"):
                return self._pieces(word, line, subs, quoted)
            return [(value, "lit" if quoted else "split")]
        if op.endswith("+"):
            return [] if value is not None else [(written, "raw")]
        pieces = self._pieces(word, line, subs, quoted)
        if op.endswith("=") and VARIABLE.fullmatch(name):
            self._assign({name: None if any(k == "raw" for _, k in pieces) else "".join(t for t, _ in pieces)})
        return pieces
