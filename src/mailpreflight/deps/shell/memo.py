"""The shell reader's memory of syntax trees (docs/design.md, "Performance"): a fleet's units run the same few
`sh -c` lines, so each text is lexed and parsed once. Bounded, and a pure function of the text."""

from __future__ import annotations

from mailpreflight.deps.shell.lexer import lex
from mailpreflight.deps.shell.syntax import List, Parser

_PARSED: dict[tuple[str, int], tuple[List, tuple[str, ...]]] = {}
# worst case (a 1 KiB text of 500 one-letter commands: 0.35 MiB of tree) about 11 MiB kept
PARSED_KEPT, PARSED_TEXT_MAX = 32, 1024


def parsed(text: str, line: int, failed: list[str]) -> tuple[List, tuple[str, ...]]:
    """The syntax tree of `text` (its first line numbered `line`) and what lexing and parsing it warned, remembered:
    a fleet's units run the same few `sh -c` lines (issue 14). A pure function of the text; the reader never
    changes a tree. Bounded: at most PARSED_KEPT texts of at most PARSED_TEXT_MAX characters are kept. If parsing
    raises (RecursionError), what it warned so far goes to `failed` first, as when the reader parsed in place."""
    key = (text, line)
    found = _PARSED.get(key)
    if found is None:
        warnings: list[str] = []
        try:
            found = Parser(lex(text, line, warnings), warnings).parse_list(), tuple(warnings)
        except RecursionError:
            failed.extend(warnings)
            raise
        if len(text) <= PARSED_TEXT_MAX:
            if len(_PARSED) >= PARSED_KEPT:
                _PARSED.pop(next(iter(_PARSED)))
            _PARSED[key] = found
    return found
