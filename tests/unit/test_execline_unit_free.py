"""parse_exec() remembers a line without `%` or a backslash (units/execline.py `_unit_free`): what it gives, with
the warnings it says, is what parsing that line for this unit gives (`_parse_exec`), with this key and source; a
line the unit could change (a specifier, an escape that makes one) or a long one is never taken from the memo."""

from __future__ import annotations

import random

from mailpreflight.model import Source
from mailpreflight.units import execline
from mailpreflight.units.execline import _parse_exec, _unit_free, parse_exec
from mailpreflight.units.specifiers import Expander, system_manager
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
    for value in ("/bin/x %n", "/bin/x \\x25n", "/bin/" + "x" * execline.UNIT_FREE_MAX):
        parse_exec("ExecStart", value, source, _expander("a.service"), [], 252)
    assert _unit_free.cache_info().currsize == 0
    first = parse_exec("ExecStart", "/bin/kill -HUP $MAINPID", source, _expander("a.service"), [], 252)
    other = parse_exec("ExecReload", "/bin/kill -HUP $MAINPID", Source("/v", 9), _expander("b.service"), [], 252)
    assert _unit_free.cache_info().hits == 1
    assert [(c.key, c.source) for c in first.commands + other.commands] == [("ExecStart", source),
                                                                             ("ExecReload", Source("/v", 9))]
