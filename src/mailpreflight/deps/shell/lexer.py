"""Tokens of a shell script: words as written (quotes and all), operators and newlines; here-document bodies
skipped, since they are data for a command, never commands."""

from __future__ import annotations

import re
from dataclasses import dataclass

OPS = (";;&", "&>>", "<<-", "<<<", "&&", "||", ";;", ";&", "|&", "&>", "<<", ">>", "<&", ">&", "<>", ">|",
        "&", "|", ";", "<", ">", "(", ")")
OP = re.compile("|".join(map(re.escape, OPS)))  # longest first: the first alternative that matches wins
REDIRECTS = frozenset(op for op in OPS if op[0] in "<>" or op.startswith("&>"))
_METACHARS = " \t\r\n;&|<>()"
_UNTERMINATED = {"'": "quote", '"': "quote", "`": "backquote", "(": "parenthesis", "{": "${...}"}


@dataclass(frozen=True)
class Tok:
    """One token of a script: a word as written, an operator, or a newline, with the line it starts on."""

    kind: str  # "word", "op" or "nl"
    text: str  # a word as written (quotes and all): expansion needs to know what was quoted
    line: int


def skip(text: str, i: int) -> int:
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
            end = skip(text, j + 1)
        elif (opener != "`" and char == "`") or (opener in "({" and (char in "'\"" or char == opener == "(")):
            end = skip(text, j)
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
        end = skip(text, opener)
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


def lex(text: str, line: int, warnings: list[str]) -> list[Tok]:
    toks: list[Tok] = []
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
            toks.append(Tok("nl", char, line))
            i, line, dbracket, heredoc_op = i + 1, line + 1, False, None
            for heredoc in heredocs:
                i, line = _skip_heredoc(text, i, line, heredoc, warnings)
            heredocs.clear()
        else:
            op = match.group() if (match := OP.match(text, i)) else None
            if (op in ("<", ">") and text.startswith("(", i + 1)) or text.startswith("((", i):
                op = None  # <(…) is a word; ((…)) an arithmetic command, kept as one word
            if op is not None and not (dbracket and op in ("&&", "||", "<", ">", "(", ")")):
                toks.append(Tok("op", op, line))
                heredoc_op = op if op in ("<<", "<<-") else None
                i += len(op)
                continue
            start = i
            if op is not None:
                i += len(op)
            elif text.startswith("((", i):
                end = skip(text, i)
                if end < 0:
                    warnings.append(f"line {line}: unterminated parenthesis")
                i = len(text) if end < 0 else end
            else:
                i = _scan_word(text, i, line, warnings)
            raw = text[start:i]
            if raw.isascii() and raw.isdigit() and text[i:i + 1] in ("<", ">"):
                continue  # a file descriptor number: part of the redirection
            toks.append(Tok("word", raw, line))
            line += raw.count("\n")
            if heredoc_op is not None:
                delimiter = re.sub(r"[\"'\\]", "", raw)
                heredocs.append((delimiter, heredoc_op == "<<-", delimiter != raw, toks[-1].line))
                heredoc_op = None
            dbracket = raw == "[[" or (dbracket and raw != "]]")
    return toks
