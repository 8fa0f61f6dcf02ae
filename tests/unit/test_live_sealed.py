"""live/ is the only place that touches D-Bus or the journal (issue 13): no module outside src/mailpreflight/live/
imports a D-Bus or journal binding (statically or by name through importlib/__import__) or names a D-Bus or
journal program to run (journalctl, busctl, ...). Read from the AST of every module, so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import mailpreflight

SRC = Path(mailpreflight.__file__).resolve().parent
LIVE = SRC / "live"
# D-Bus and journal bindings: pystemd, dbus-python, python-systemd (systemd.journal), and the other D-Bus clients
BINDINGS = {"pystemd", "dbus", "systemd", "jeepney", "dbus_next", "dbus_fast", "sdbus", "dasbus", "pydbus", "txdbus"}
PROGRAMS = {"journalctl", "busctl", "dbus-send", "gdbus"}
DYNAMIC_IMPORTS = {"import_module", "__import__", "find_spec"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _binding(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in BINDINGS else None


def violations(source: str, filename: str) -> list[str]:
    """Every place in `source` that touches D-Bus or the journal, as "file:line: what"."""
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in DYNAMIC_IMPORTS:
                names = [node.args[0].value]
        for name in names:
            if _binding(name):
                found.append((node.lineno, f"imports {name}"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = node.value.split()
            if words and words[0].rsplit("/", 1)[-1] in PROGRAMS:
                found.append((node.lineno, f"runs {words[0]}"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_outside_live_touches_dbus_or_the_journal() -> None:
    outside = [p for p in modules() if LIVE not in p.parents]
    assert len(outside) > 40 and SRC / "predict" / "explain.py" in outside and SRC / "cli" / "verbs.py" in outside
    found = [v for p in outside for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(SRC.parent)))]
    assert found == [], "only src/mailpreflight/live/ may touch D-Bus or the journal; move this there:\n" + \
        "\n".join(found)


def test_live_is_where_they_are() -> None:
    """The same reader finds the real uses, in live/: it looks at the right things."""
    found = [v for p in sorted(LIVE.glob("*.py")) for v in violations(p.read_text(encoding="utf-8"), p.name)]
    assert any(": imports pystemd." in v for v in found) and any(": imports dbus" in v for v in found)
    assert any(v.startswith("journal.py:") and v.endswith(": runs journalctl") for v in found)


def test_the_reader_catches_every_way_in() -> None:
    source = '''"""Mentions journalctl and `import dbus` in a docstring: fine."""
import os, dbus.bus
from pystemd.dbuslib import DBus
from systemd import journal
import importlib
mod = importlib.import_module("jeepney.io.blocking")
other = __import__("sdbus")
argv = ["/usr/bin/journalctl", "-o", "json"]
shell = f"busctl --user call {os.sep}"
hint = "see `journalctl -u spamd` yourself"
from .dbus import thing


def f() -> None:
    """journalctl here too: a docstring."""
    import dbus_next
'''
    assert violations(source, "x.py") == [
        "x.py:2: imports dbus.bus", "x.py:3: imports pystemd.dbuslib", "x.py:4: imports systemd",
        "x.py:6: imports jeepney.io.blocking", "x.py:7: imports sdbus", "x.py:8: runs /usr/bin/journalctl",
        "x.py:9: runs busctl", "x.py:16: imports dbus_next"]
