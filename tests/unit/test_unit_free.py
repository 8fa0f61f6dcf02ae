"""parse_exec() and parse_environment_value() remember a value without `%` or a backslash (`_unit_free` in
units/execline.py and units/environ.py): what they give, with the warnings they say, is what parsing that value
for this unit gives, with this key and source; a value the unit could change (a specifier, an escape that makes
one) or a long one is never taken from the memo."""

from __future__ import annotations

import random

from mailpreflight.model import Source
from mailpreflight.units import environ
from mailpreflight.units.execline import _parse_exec, _unit_free, parse_exec
from mailpreflight.units.specifiers import UNIT_FREE_MAX, Expander, system_manager
from mailpreflight.units.unitname import parse_unit_name

PIECES = ["/bin/bash", "-c", '"sa-update || true"', "'a b'", "-", "@", "+", "!", "!!", ":", "|", ";", " ; ", " ",
          "\t", "x", "/", "//usr/./bin/y", "$MAINPID", "${X}", '"', "'", "é", "%n", "\\x25n", "\\;", "..", "/dir/"]


def _expander(name: str) -> Expander:
    parsed = parse_unit_name(name)
    assert parsed is not None
    return Expander(parsed, system_manager())


def _both(value: str, version: int) -> None:
    source = Source("/etc/systemd/system/a.service", 7)
    for unit in ("a.service", "b@x.service"):
        said_memo: list[str] = []
        said_direct: list[str] = []
        memo = parse_exec("ExecStartPre", value, source, _expander(unit), said_memo, version)
        direct = _parse_exec("ExecStartPre", value, source, _expander(unit), said_direct, version)
        assert (memo, said_memo) == (direct, said_direct), (value, version, unit)


def test_remembered_lines_parse_as_each_unit_parses_them() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        _both("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 10))), rng.choice((252, 258)))


def test_the_memo_is_used_only_for_lines_no_unit_can_change() -> None:
    _unit_free.cache_clear()
    source = Source("/u", 1)
    for value in ("/bin/x %n", "/bin/x \\x25n", "/bin/" + "x" * UNIT_FREE_MAX):
        parse_exec("ExecStart", value, source, _expander("a.service"), [], 252)
    assert _unit_free.cache_info().currsize == 0
    first = parse_exec("ExecStart", "/bin/kill -HUP $MAINPID", source, _expander("a.service"), [], 252)
    other = parse_exec("ExecReload", "/bin/kill -HUP $MAINPID", Source("/v", 9), _expander("b.service"), [], 252)
    assert _unit_free.cache_info().hits == 1
    assert [(c.key, c.source) for c in first.commands + other.commands] == [("ExecStart", source),
                                                                             ("ExecReload", Source("/v", 9))]


ENV_PIECES = ["A=1", "B=two words", '"C=x y"', "'D=z'", " ", "\t", "=", "1X=bad", "E=", "é=x", "F=é", '"', "G=$H", "%n",
              "\\x25", "LANG=C.UTF-8", "ALL=1"]


def test_remembered_environment_values_read_as_each_unit_reads_them() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        value = "".join(rng.choice(ENV_PIECES) for _ in range(rng.randint(1, 8)))
        for unit in ("a.service", "b@x.service"):
            said_memo: list[str] = []
            said_direct: list[str] = []
            memo = environ.parse_environment_value(value, _expander(unit), said_memo)
            direct = environ._parse_environment_value(value, _expander(unit), said_direct)
            assert (memo, said_memo) == (direct, said_direct), (value, unit)
    environ._unit_free.cache_clear()
    for value in ("A=%n", "A=\\x25n", "A=" + "x" * UNIT_FREE_MAX):
        environ.parse_environment_value(value, _expander("a.service"), [])
    assert environ._unit_free.cache_info().currsize == 0
    first = environ.parse_environment_value("ALL=1 B=2", _expander("a.service"), [])
    first.append(("C", "3"))  # each caller gets a list of its own
    assert environ.parse_environment_value("ALL=1 B=2", _expander("b.service"), []) == [("ALL", "1"), ("B", "2")]
    assert environ._unit_free.cache_info().hits == 1
