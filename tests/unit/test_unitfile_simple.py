"""The unit-file parser's way for the usual file (units/syntax.py `_parse_simple`: valid UTF-8, \\n line ends, no
BOM), and its short way for the usual line (`Key=value`, ASCII, in a section), give what the line-by-line parse
gives (`_parse_bytes`, checked against systemd by the corpus), on files made
to hit its edges: comments inside continuations, blank lines ending one, odd and even runs of backslashes, a
continuation at the end of the file, bad sections, keys without `=`, noncharacters."""

from __future__ import annotations

import random

from mailpreflight.units.syntax import SECTIONS_BY_TYPE, _parse_bytes, _parse_simple, parse_unit_file

PIECES = ["[Service]", "[Unit]", "[X-Mine]", "[Bad", "[Se rvice]", "\n", "\n", "\n", " ", "\t", "#", ";", "\\", "\\\\",
          "Key=v", "ExecStart=/bin/x", "=v", "Key", " = ", "é", "\ufffe", "a", "\\\n", "\n\n", "[Install]",
          "\nA=b=c", "\nK \t=\t v \t", "\nKey=", "\n=", "\nX-Key=1", "\n[", "]"]


def _same(text: str) -> None:
    data = text.encode("utf-8")
    for sections in (SECTIONS_BY_TYPE["service"], None):
        assert _parse_simple(text, "/u", sections) == _parse_bytes(data, "/u", sections), (text, sections)
        assert parse_unit_file(data, "/u", sections) == _parse_bytes(data, "/u", sections)
        # the usual `Key=value` line taken the short way: what _parse_line() makes of each line
        assert _parse_simple(text, "/u", sections) == _parse_simple(text, "/u", sections, usual=False), text


def test_usual_files_parse_the_same_both_ways() -> None:
    rng = random.Random(14)
    for _ in range(20000):
        _same("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 25))))


def test_the_shapes_units_have() -> None:
    for text in ["[Service]\nExecStart=/bin/a \\\n  --b\n", "[Service]\nA=1\\\n# c\nB=2\n", "[Service]\nA=1\\\n\nB=2\n",
                 "[Service]\nA=1\\", "[Service]\nA=x\\\\\nB=2\n", "", "\n", "[Service]\n  A = b  \n"]:
        _same(text)


def test_other_files_take_the_line_by_line_way() -> None:
    for data in [b"[Service]\r\nA=1\r\n", b"\xef\xbb\xbf[Service]\nA=1\n", b"[Service]\nA=\xff\n", b"[Service]\0A=1\n"]:
        assert parse_unit_file(data, "/u", None) == _parse_bytes(data, "/u", None)
