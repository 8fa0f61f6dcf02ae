"""Shared test helpers: build unit trees on disk, read corpus tables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"


def corpus_cases(name: str) -> list[dict[str, Any]]:
    path = CORPUS / "cases" / name
    if not path.exists():
        return []
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def make_tree(root: Path, tree: dict[str, Any]) -> Path:
    """tree: guest path -> file content (str/bytes) or {"symlink": target} or {"dir": True}."""
    for guest, spec in tree.items():
        path = root / guest.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, dict) and "symlink" in spec:
            os.symlink(spec["symlink"], path)
        elif isinstance(spec, dict) and spec.get("dir"):
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(spec, dict):
            path.write_text(spec["content"], encoding="utf-8")
        elif isinstance(spec, bytes):
            path.write_bytes(spec)
        else:
            path.write_text(spec, encoding="utf-8")
    return root
