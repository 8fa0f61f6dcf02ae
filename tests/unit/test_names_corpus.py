"""Unit names, specifiers, exec-time expansion and name resolution under a root: the corpus tables
unitname.json, specifiers.json, envexpand.json and installroot.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import corpus_cases, make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Source
from mailpreflight.units import unitname as un
from mailpreflight.units.environ import expand_argv
from mailpreflight.units.execline import ExecCommand
from mailpreflight.units.loader import UnitLoader, expand_command
from mailpreflight.units.specifiers import Expander, SpecifierError, system_manager

UNITNAME = corpus_cases("unitname.json")
SPECIFIERS = corpus_cases("specifiers.json")
ENVEXPAND = corpus_cases("envexpand.json")
INSTALLROOT = corpus_cases("installroot.json")


def _parsed(name: str) -> un.UnitName:
    parsed = un.parse_unit_name(name)
    if parsed is None:
        raise ValueError(name)
    return parsed


def _is_valid(name: str, flags: str) -> bool:
    parsed = un.parse_unit_name(name)
    if parsed is None:
        return False
    kinds = {"plain": parsed.instance is None, "template": parsed.is_template, "instance": parsed.is_instance}
    return flags == "any" or any(kinds[f] for f in flags.split("|"))


def _replace_instance(name: str, instance: str) -> str:
    parsed = _parsed(name)
    if parsed.instance is None or not un.instance_is_valid(instance):
        raise ValueError(name)
    return parsed.with_instance(instance)


OPS: dict[str, Callable[[dict[str, Any]], object]] = {
    "is_valid": lambda c: _is_valid(c["input"], c.get("flags", "any")),
    "prefix_is_valid": lambda c: un.prefix_is_valid(c["input"]),
    "instance_is_valid": lambda c: un.instance_is_valid(c["input"]),
    "template": lambda c: _parsed(c["input"]).template if _parsed(c["input"]).is_instance else _fail(),
    "instance": lambda c: _parsed(c["input"]).instance,
    "prefix": lambda c: _parsed(c["input"]).prefix,
    "prefix_and_instance": lambda c: c["input"][: -len(_parsed(c["input"]).type) - 1],
    "replace_instance": lambda c: _replace_instance(c["input"], c["args"][0]),
    "escape": lambda c: un.escape(c["input"]),
    "unescape": lambda c: un.unescape(c["input"]),
    "path_escape": lambda c: un.path_escape(c["input"]),
    "path_unescape": lambda c: un.path_unescape(c["input"]),
    "instance_unescape": lambda c: un.unescape(_parsed(c["input"]).instance or ""),
    "dropin_dirs": lambda c: [f"{n}.d" for n in un.dropin_unit_names(c["input"])] + [f"{_parsed(c['input']).type}.d"],
}
# Name operations systemd has for mount/device units and for systemctl's argument mangling; the loader
# never needs them, so their cases are not run.
NOT_NEEDED = {"build", "change_suffix", "from_path", "from_path_instance", "mangle", "template_escape", "to_path"}


def _fail() -> str:
    raise ValueError("no such part")


RUN_UNITNAME = [c for c in UNITNAME if c["op"] not in NOT_NEEDED]


@pytest.mark.parametrize("case", RUN_UNITNAME, ids=[c["id"] for c in RUN_UNITNAME])
def test_unitname_case(case: dict[str, Any]) -> None:
    op = OPS[case["op"]]
    if case.get("error"):
        with pytest.raises(ValueError):
            result = op(case)
            if result is None or result is False:
                raise ValueError("refused")
        return
    assert op(case) == case["expected"]


def test_only_mount_and_mangling_ops_are_left_out() -> None:
    assert {c["op"] for c in UNITNAME} - set(OPS) <= NOT_NEEDED
    assert len(RUN_UNITNAME) >= 100


RUN_SPECIFIERS = [c for c in SPECIFIERS if c.get("context") != "name"]


@pytest.mark.parametrize("case", RUN_SPECIFIERS, ids=[c["id"] for c in RUN_SPECIFIERS])
def test_specifier_case(case: dict[str, Any]) -> None:
    expander = Expander(_parsed(case["unit"]), system_manager({}))
    if case.get("error"):
        with pytest.raises(SpecifierError):
            expander.expand(case["template"])
        return
    assert expander.expand(case["template"]) == case["expected"]


@pytest.mark.parametrize("case", ENVEXPAND, ids=[c["id"] for c in ENVEXPAND])
def test_envexpand_case(case: dict[str, Any]) -> None:
    env = list(case["env"].items())
    if case.get("no_env_expand"):
        command = ExecCommand("ExecStart", case["argv"][0], tuple(case["argv"]), (":",), Source("/x", 1))
        assert list(expand_command(command, env)) == case["argv_after"]
    else:
        assert expand_argv(case["argv"], env) == case["argv_after"]


@pytest.mark.parametrize("case", INSTALLROOT, ids=[c["id"] for c in INSTALLROOT])
def test_installroot_case(case: dict[str, Any], tmp_path: Path) -> None:
    make_tree(tmp_path, {f"/{path}": spec for path, spec in case["tree"].items()})
    loader = UnitLoader(RootFS(str(tmp_path)), version=252)
    for name, expected in case["expected"].items():
        if un.parse_unit_name(name) and _parsed(name).is_template:
            with pytest.raises(MailpreflightError, match="template"):  # like systemd's manager
                loader.load(name)
            continue
        if expected.get("fragment") is None or expected.get("fragment_resolves_to", "") is None:
            with pytest.raises(MailpreflightError):
                loader.load(name)
            continue
        unit = loader.load(name)
        assert unit.fragment_path == expected["fragment"], name
        assert unit.masked == expected["masked"], name
        if "names" in expected and not unit.masked:
            templates = {n for n in expected["names"] if _parsed(n).is_template}  # never names of a unit
            assert sorted(unit.names) == sorted(set(expected["names"]) - templates), name


@given(st.text(alphabet="ab@.-_:\\/x é\n", max_size=8).flatmap(
    lambda stem: st.sampled_from([*sorted(un.UNIT_TYPES), "", "servic", "service."]).map(lambda t: stem + "." + t)))
@settings(max_examples=3000, deadline=None)
def test_is_unit_name_is_parse_unit_name_not_none(name: str) -> None:
    """The name map's quick test (a regular expression) says what the parser says."""
    assert un.is_unit_name(name) == (un.parse_unit_name(name) is not None)


@pytest.mark.parametrize("name", [*sorted({c["input"] for c in UNITNAME if isinstance(c.get("input"), str)}),
                                  "x" * 251 + ".service", "x" * 252 + ".service", "a.service\n", "@.service"])
def test_is_unit_name_on_the_corpus(name: str) -> None:
    assert un.is_unit_name(name) == (un.parse_unit_name(name) is not None)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab@.-_:\\\\é/ ", max_size=12),
       st.sampled_from(["service", "socket", "target", "servic", "service.d", ""]))
def test_a_plain_or_instance_service_is_what_parsing_the_name_says(stem: str, unit_type: str) -> None:
    """The loader lists a tree's services without parsing each name (units/loader.py
    is_plain_or_instance_service(), for names unitname.is_unit_name() took): the same answer as parse_unit_name()."""
    from mailpreflight.units.loader import is_plain_or_instance_service

    for name in (f"{stem}.{unit_type}", stem, f"{stem}@.{unit_type}", f"a@{stem}.{unit_type}"):
        if not un.is_unit_name(name):
            continue
        parsed = un.parse_unit_name(name)
        assert parsed is not None, name
        assert is_plain_or_instance_service(name) == (parsed.type == "service" and not parsed.is_template), name
