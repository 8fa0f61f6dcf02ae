"""Unit file syntax: systemd's own conf-parser cases and more (tests/corpus/cases/confparser.json)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from helpers import corpus_cases
from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.syntax import parse_unit_file

CASES = corpus_cases("confparser.json")


def case_bytes(case: dict[str, Any]) -> bytes:
    if "text_b64" in case:
        return base64.b64decode(case["text_b64"])
    text: str = case["text"]
    for placeholder, spec in case.get("expand", {}).items():
        text = text.replace(placeholder, spec["repeat"] * spec["count"])
    return text.encode("utf-8", "surrogateescape")


def expand(case: dict[str, Any], text: str) -> str:
    for placeholder, spec in case.get("expand", {}).items():
        text = text.replace(placeholder, spec["repeat"] * spec["count"])
    return text


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_confparser_case(case: dict[str, Any], tmp_path: Path) -> None:
    data = case_bytes(case)
    if "sections" in case:  # the C test's own table of sections and keys
        parsed = parse_unit_file(data, "t.conf", frozenset(case["sections"]))
        known = case.get("known_keys", {})
        assignments = [(a.section, a.key, a.value, a.source.systemd_line) for a in parsed.assignments
                       if a.key in known.get(a.section, ())]
        diagnostics = [(d.source.systemd_line, d.message) for d in parsed.diagnostics]
        fatal = parsed.fatal is not None
        load_state = "error" if fatal else "loaded"
    else:  # a real unit file, through the real loader
        unit_dir = tmp_path / "etc/systemd/system"
        unit_dir.mkdir(parents=True)
        (unit_dir / "t.service").write_bytes(data)
        unit = UnitLoader(RootFS(str(tmp_path)), version=252).load("t.service")
        assignments = [(a.section, a.key, a.value, a.source.systemd_line) for a in unit.assignments]
        diagnostics = [(d.source.systemd_line, d.message) for d in unit.diagnostics]
        # Only parse failures count here: these texts are not meant to be complete services.
        fatal = unit.load_error is not None and unit.load_error.source.line > 0
        load_state = unit.load_state.value
    expected = [(s, k, expand(case, v), line) for s, k, v, line in case["assignments"]]
    assert assignments == expected
    assert fatal == (case.get("error") == "fatal")
    if "load_state" in case:
        assert load_state == case["load_state"]
    for fragment in case.get("warnings", []):
        assert any(fragment in message for _, message in diagnostics), (fragment, diagnostics)
    # systemd fails over-long lines without naming the line; we do name it.
    lines = {line for line, message in diagnostics if line and "too long" not in message}
    assert sorted(lines) == sorted(set(case.get("warning_lines", [])))


def test_corpus_present() -> None:
    assert len(CASES) >= 20
