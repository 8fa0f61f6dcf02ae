"""docs/packages.md is what tests/realpkg/knowledge.py writes from the real packages today: a change to what
mailpreflight reads or claims of a package shows here until the page is regenerated."""

from __future__ import annotations

import difflib
from pathlib import Path

import debroot
import knowledge

PAGE = Path(__file__).resolve().parents[2] / "docs" / "packages.md"


def test_packages_page_is_current(debian_build: debroot.Build) -> None:
    fresh = knowledge.without_versions(knowledge.render(debian_build).replace(debian_build.root, "ROOT"))
    committed = knowledge.without_versions(PAGE.read_text(encoding="utf-8"))
    diff = list(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), "docs/packages.md", "now",
                                     lineterm="", n=1))
    assert not diff, ("docs/packages.md is out of date; regenerate it: .venv/bin/python tests/realpkg/knowledge.py "
                      "> docs/packages.md\n" + "\n".join(diff[:60]))
