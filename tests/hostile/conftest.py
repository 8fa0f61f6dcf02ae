"""The hostile-guest corpus (tests/hostile): see hostile_roots.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_roots import Guest


@pytest.fixture
def guest(tmp_path: Path) -> Guest:
    return Guest(tmp_path)
