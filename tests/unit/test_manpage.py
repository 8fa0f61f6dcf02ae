"""The man page is generated from the argparse definitions (mailpreflight.render.manpage) and must not drift."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailpreflight.cli import build_parser
from mailpreflight.fix import guard
from mailpreflight.render.manpage import escape, render_man, verbs

OWN = {"guard": guard.build_parser()}  # guard is parsed before argparse: its own parser

ROOT = Path(__file__).resolve().parents[2]
MANPAGE = ROOT / "docs" / "mailpreflight.1"
FLEET = ROOT / "docs" / "fleet"
REGENERATE = "regenerate it: python tools/gendocs.py > docs/mailpreflight.1"


def test_committed_man_page_is_generated() -> None:
    assert MANPAGE.read_text(encoding="utf-8") == render_man(build_parser(), OWN), REGENERATE


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def test_every_verb_and_option_is_documented() -> None:
    parser = build_parser()
    page = render_man(parser, OWN)
    found = verbs(parser)
    assert [name for name, _, _ in found] == ["show", "deps", "check", "dropin", "explain", "firewall", "snapshot",
                                              "drift", "restore", "cleanup", "guard"]
    for name, _, sub in found:
        assert f'.SS "{name}"' in page
        options = _option_strings(OWN.get(name, sub))
        assert options, name
        for option in options:
            assert escape(option) in page, f"{name} {option}"
    for option in ("--timeout", "--grace", "--ok-status", "--strict", "--diagnose-budget"):
        assert escape(option) in page
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f".SH {section}\n" in page
    for reference in ("systemd.unit", "systemd.service", "sa\\-update", "nft"):
        assert f"\\fB{reference}\\fR(" in page
    synopsis = page.split(".SH SYNOPSIS")[1].split(".SH DESCRIPTION")[0]
    assert len(re.findall(r"^\\fBmailpreflight\\fR \\fB\w+\\fR", synopsis, re.M)) == len(found)


def test_roff_escaping() -> None:
    assert escape("a-b\\c") == "a\\-b\\ec"
    assert escape("x \u2014 y") == "x \\(em y"
    assert escape("\u00e9") == "\\[u00E9]"
    page = render_man(build_parser(), OWN)
    for line in page.splitlines():
        if line.startswith('.\\"'):
            continue
        assert not line.startswith("'"), line
        if line.startswith("."):
            assert re.match(r"\.(\\\"|[A-Z]{1,2}\b|nh$|hy$|ad( l)?$)", line), line
        assert not re.search(r"(?<!\\)(?<!\\\\)-", line.replace("\\-", "").replace("\\e", "")), line
    assert all(ord(char) < 127 for char in page)


def test_man_page_renders_without_warnings() -> None:
    if shutil.which("groff"):
        command = ["groff", "-man", "-Tutf8", "-ww", "-z", str(MANPAGE)]
    elif shutil.which("man"):
        command = ["man", "--warnings", "-l", "-Tutf8", "-Z", str(MANPAGE)]
    else:
        pytest.skip("neither groff nor man is installed")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_gendocs_prints_the_page() -> None:
    import sys

    proc = subprocess.run([sys.executable, str(MANPAGE.parents[1] / "tools" / "gendocs.py")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MANPAGE.read_text(encoding="utf-8")


# --- docs/fleet: the YAML parses, the alert rules ask for metrics the tool emits ---------------------------


@pytest.mark.parametrize("name", ["prometheus-alerts.yml", "ansible-check.yml"])
def test_fleet_yaml_is_valid(name: str) -> None:
    if importlib.util.find_spec("yaml") is None:
        pytest.skip("PyYAML is not installed")
    import yaml

    document = yaml.safe_load((FLEET / name).read_text(encoding="utf-8"))
    assert document


def test_prometheus_rules_use_emitted_metrics() -> None:
    emitted = set(re.findall(r"mailpreflight_[a-z_]+",
                             (ROOT / "src/mailpreflight/render/check.py").read_text(encoding="utf-8")))
    rules = (FLEET / "prometheus-alerts.yml").read_text(encoding="utf-8")
    expressions = re.findall(r"^\s*expr:\s*(.+)$", rules, re.M)
    assert expressions
    used = {metric for expression in expressions for metric in re.findall(r"mailpreflight_[a-z_]+", expression)}
    assert used and used <= emitted, used - emitted
    assert "mailpreflight_unit_start_ok == 0" in rules
    assert "mailpreflight_status >= 2" in rules
    assert "mailpreflight_auth_path_ok == 0" in rules


def test_nagios_definition_uses_nagios_format() -> None:
    text = (FLEET / "nagios.cfg").read_text(encoding="utf-8")
    assert "check --format nagios" in text
    assert "define command" in text and "define service" in text
