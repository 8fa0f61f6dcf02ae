"""Exec= lines: the cases of systemd's own tests (tests/corpus/cases/execline.json)."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import corpus_cases
from mailpreflight.model import Source
from mailpreflight.units.execline import parse_exec
from mailpreflight.units.specifiers import Expander, system_manager
from mailpreflight.units.unitname import parse_unit_name

CASES = corpus_cases("execline.json")


def run(value: str, unit: str = "foo.service") -> tuple[list[dict[str, Any]], str | None, bool, list[str]]:
    name = parse_unit_name(unit)
    assert name is not None
    warnings: list[str] = []
    expander = Expander(name, system_manager({}))
    result = parse_exec("ExecStart", value, Source("t.service", 1), expander, warnings)
    commands = [{"path": c.path, "argv": list(c.argv), "ignore": c.ignore_failure, "flags": sorted(c.flags)}
                for c in result.commands]
    return commands, result.error, result.fatal, warnings


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_execline_case(case: dict[str, Any]) -> None:
    def expand(text: str) -> str:
        for placeholder, spec in case.get("expand", {}).items():
            text = text.replace(placeholder, spec["repeat"] * spec["count"])
        return text

    value = expand(case["value"])
    commands, error, fatal, warnings = run(value, case.get("unit", "foo.service"))
    expected = case.get("error")
    if expected == "fatal":
        assert fatal, f"systemd refuses this line, we kept {commands}"
    elif expected == "ignored":
        assert error is not None and not fatal
    else:
        assert error is None, error
        assert commands == [{**c, "path": expand(c["path"]), "argv": [expand(a) for a in c["argv"]],
                             "flags": sorted(c["flags"])} for c in case["commands"]]
    for fragment in case.get("warnings", []):
        assert any(fragment in w for w in [*warnings, error or ""]), (fragment, warnings, error)


def test_corpus_present() -> None:
    assert len(CASES) >= 20, "tests/corpus/cases/execline.json is missing or thin"
