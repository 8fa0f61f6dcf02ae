"""The hostile-guest corpus (tests/hostile): see hostile_roots.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_roots import Guest


@pytest.fixture
def guest(tmp_path: Path) -> Guest:
    return Guest(tmp_path)


@pytest.fixture(params=["openat2", "walk"])
def gate_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The read gate both ways (access/beneath.py): one openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) call where the
    kernel has it, else the walk one component at a time. Every answer must be the same."""
    from mailpreflight.access import beneath

    if request.param == "walk":
        monkeypatch.setattr(beneath, "_available", False)
    elif not beneath._available:
        pytest.skip("openat2(2) is not available here: only the walk is tested")
    return str(request.param)
