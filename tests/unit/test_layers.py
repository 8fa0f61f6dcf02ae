"""The layer rules of docs/design.md, checked on the import graph of src/mailpreflight (an import-linter
contract written as a test, so that ./run-tests enforces it with no extra tool).

Imports inside `if TYPE_CHECKING:` count too: a layer may not even name the types of a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mailpreflight"
PROJECT = ("mailpreflight",)

# Which parts each part may import (besides itself). The pipeline: load -> analyze -> probe -> predict ->
# render / fix; `cli` sits on top and may import anything; nothing imports `cli`.
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "errors": set(),
    "render": {"model"},
    "access": {"model", "errors"},
    "units": {"model", "errors", "access"},
    "probes": {"model", "errors", "access"},
    "deps": {"model", "errors", "access", "units", "probes"},
    "auth": {"model", "errors", "access", "units", "deps"},
    "live": {"model", "errors", "access", "units"},
    "predict": {"model", "errors", "access", "units", "deps", "probes", "auth", "live"},
    "fix": {"model", "errors", "access", "units", "deps", "probes"},
    "firewall": {"model", "errors", "access", "units", "deps"},
    "baseline": {"model", "errors", "access", "units", "deps", "auth"},
    "cli": {"*"},
    "__main__": {"cli"},
    "__init__": set(),
}
BINDINGS = ("pystemd", "dbus")  # only live/ may touch D-Bus


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["mailpreflight", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from mailpreflight import x` names the part x
            if base == "mailpreflight":
                found += [(node.lineno, f"mailpreflight.{alias.name}") for alias in node.names]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_is_in_the_table() -> None:
    assert {_part(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_rules(path: Path) -> None:
    part = _part(path)
    allowed = ALLOWED[part]
    problems = []
    for line, name in _imports(path):
        words = name.split(".")
        if words[0] in BINDINGS and part != "live":
            problems.append(f"{line}: {name} (only live/ touches D-Bus)")
        if words[0] != "mailpreflight" or len(words) == 1 or words[1] == "__version__":
            continue
        target = words[1]
        if target == part or "*" in allowed:
            continue
        if target not in allowed:
            problems.append(f"{line}: {name} ({part} may import only {sorted(allowed) or 'nothing of the project'})")
    assert not problems, f"{path.relative_to(PACKAGE)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_cli_maps_exit_codes(path: Path) -> None:
    """Verbs return a Status; cli.main() alone turns it (or an exception) into 0/1/2/3. guard is the one
    deliberate exception: it runs inside systemd's start and passes on its command's status."""
    if _part(path) in ("cli", "__main__") or path.relative_to(PACKAGE) == Path("fix/guard.py"):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [node.lineno for node in ast.walk(tree)
           if (isinstance(node, ast.Attribute) and node.attr in ("exit", "_exit"))  # sys.exit, os._exit
           or (isinstance(node, ast.Name) and node.id == "SystemExit")
           or (isinstance(node, ast.Return) and isinstance(node.value, ast.Attribute)
               and node.value.attr == "exit_code")]
    assert not bad, f"{path.relative_to(PACKAGE)} decides exit codes at lines {bad}"
