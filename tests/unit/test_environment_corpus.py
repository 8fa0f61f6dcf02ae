"""EnvironmentFile= and Environment= rules (tests/corpus/cases/envfile.json, environ.json)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from helpers import corpus_cases
from mailpreflight.units.environ import parse_env_file, parse_environment_value
from mailpreflight.units.specifiers import Expander, system_manager
from mailpreflight.units.unitname import parse_unit_name

ENVFILE = corpus_cases("envfile.json")
ENVIRON = corpus_cases("environ.json")


@pytest.mark.parametrize("case", ENVFILE, ids=[c["id"] for c in ENVFILE])
def test_envfile_case(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["text_b64"]) if "text_b64" in case else case["text"].encode()
    result = parse_env_file(data)
    if case["error"] == "file-rejected":
        assert result.error is not None
    else:
        assert result.error is None, result.error
        assert [list(pair) for pair in result.env] == case["env"]
    messages = [m for _, m in result.warnings] + ([result.error[1]] if result.error else [])
    for fragment in case["warnings"]:
        assert any(fragment in m for m in messages), (fragment, messages)


@pytest.mark.parametrize("case", ENVIRON, ids=[c["id"] for c in ENVIRON])
def test_environ_case(case: dict[str, Any]) -> None:
    name = parse_unit_name(case.get("unit", "foo.service"))
    assert name is not None
    expander = Expander(name, system_manager({}))
    warnings: list[str] = []
    env: dict[str, str] = {}
    for value in case.get("values", [case.get("value")]):
        if value == "":
            env = {}
            continue
        for key, val in parse_environment_value(value, expander, warnings):
            env[key] = val  # dicts keep first positions on replacement, like strv_env_replace()
    assert [f"{k}={v}" for k, v in env.items()] == case["env"]
    for fragment in case["warnings"]:
        assert any(fragment in w for w in warnings), (fragment, warnings)


def test_corpus_present() -> None:
    assert len(ENVFILE) >= 20 and len(ENVIRON) >= 10
