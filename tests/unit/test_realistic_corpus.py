"""Distribution units (Debian 12, openSUSE Leap 15) loaded from small guest roots: tests/corpus/realistic/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import CORPUS
from mailpreflight.access.rootfs import RootFS
from mailpreflight.render.show import unit_to_json
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.view import show_view

CASES = sorted(p for p in (CORPUS / "realistic").iterdir() if (p / "expect.json").exists())


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_realistic_unit(case: Path) -> None:
    expected: dict[str, Any] = json.loads((case / "expect.json").read_text(encoding="utf-8"))
    unit = UnitLoader(RootFS(str(case / "root"))).load(expected["unit"])
    shown = unit_to_json(show_view(unit))
    assert shown["fragment_path"] == expected["fragment_path"]
    assert shown["dropin_paths"] == expected["dropin_paths"]
    assert shown["masked"] == expected["masked"]
    assert shown["load_error"] is None
    assert shown["exec"] == expected["exec"]


def test_corpus_present() -> None:
    assert len(CASES) >= 8
