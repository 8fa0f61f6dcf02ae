"""extract_first_word()'s fast ways (units/execline.py: a plain word, one quoted string without a backslash) give
what the character-by-character way gives (`_extract_any`, checked against systemd by the Exec corpus), for every
combination of flags, on words made to hit their edges: quotes inside and next to words, empty quotes, blanks of
each kind, backslashes, escapes, unbalanced quotes and text after a closing quote."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from mailpreflight.units.execline import _PLAIN_WORD, _QUOTED_WORD, Word, _extract_any, extract_first_word

PIECES = ['"', "'", '""', "''", '"a b"', "'a b'", " ", "\t", "\n", "\r", "\\", "\\t", "\\x41", "\\q", "\\;", ";", "a",
          "sa-update", "|| true", "é", "%n", "$X", "-", "/bin/x"]
FLAGS = list(itertools.product((False, True), repeat=3))


def _fast(text: str, pos: int, relax_escapes: bool, cunescape: bool, relax: bool) -> tuple[Word | None, int]:
    return extract_first_word(text, pos, relax_escapes=relax_escapes, cunescape=cunescape, relax=relax)


def _outcome(call: Callable[..., tuple[Word | None, int]], *args: object) -> tuple[Word | None, int] | str:
    try:
        return call(*args)
    except ValueError as exc:
        return f"ValueError: {exc}"


def _same(text: str) -> None:
    pos = 0
    for _ in range(len(text) + 1):
        for relax_escapes, cunescape, relax in FLAGS:
            fast = _outcome(_fast, text, pos, relax_escapes, cunescape, relax)
            slow = _outcome(_extract_any, text, pos, relax_escapes, cunescape, relax)
            assert fast == slow, (text, pos, relax_escapes, cunescape, relax)
        found = _outcome(_extract_any, text, pos, True, True, True)
        if isinstance(found, str) or found[0] is None:
            return
        pos = found[1]


def test_words_extract_the_same_every_way() -> None:
    rng = random.Random(14)
    for _ in range(5000):
        _same("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))))


def test_the_shapes_exec_lines_have() -> None:
    for text in ['/bin/bash -c "sa-update || true"', "--name '%p instance' --escape \"\\x41\\t\"", '"" x', "'' ",
                 '"a"b', '"a" b', '"a"', "  'x'\t", '"unbalanced', "'a\\'", '"a\\"b"', ""]:
        _same(text)


def test_the_generated_words_reach_both_fast_ways() -> None:
    rng = random.Random(14)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))) for _ in range(5000)]
    assert sum(_PLAIN_WORD.match(t) is not None for t in texts) > 500
    assert sum(_QUOTED_WORD.match(t) is not None for t in texts) > 200
