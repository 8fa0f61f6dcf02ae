"""Property: no input makes the loader raise anything but the project's own error, and the CLI never
prints a traceback."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpreflight.access.rootfs import RootFS
from mailpreflight.cli import main
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Source
from mailpreflight.units.environ import expand_argv, parse_env_file
from mailpreflight.units.execline import parse_exec
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.specifiers import Expander, system_manager
from mailpreflight.units.syntax import parse_unit_file
from mailpreflight.units.unitname import parse_unit_name

# Bytes biased towards what matters to the parsers: brackets, =, quotes, backslashes, %, $, newlines.
SPICY = st.lists(st.one_of(
    st.binary(max_size=8),
    st.sampled_from([b"[Service]\n", b"[Unit]\n", b"ExecStart=", b"ExecStartPre=-", b"Environment=", b"\\\n",
                     b"\\", b'"', b"'", b"%", b"%i", b"$", b";", b" ; ", b"\n", b"\r", b"\x00", b"\xef\xbb\xbf",
                     b"#", b"=", b"\xff", b"@", b"\\x", b"\\u12", b"EnvironmentFile=", b"/bin/true"]),
), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(SPICY)
def test_syntax_never_raises(data: bytes) -> None:
    parse_unit_file(data, "/x.service")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_exec_parser_never_raises(value: str) -> None:
    name = parse_unit_name("a@b.service")
    assert name is not None
    parse_exec("ExecStart", value, Source("/x", 1), Expander(name, system_manager({})), [])


@settings(max_examples=300, deadline=None)
@given(SPICY, st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3))
def test_env_file_and_expansion_never_raise(data: bytes, env: dict[str, str]) -> None:
    parsed = parse_env_file(data)
    expand_argv(["$" + k for k, _ in parsed.env] + ["${A}x", "$$"], list(env.items()) + list(parsed.env))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SPICY, SPICY, st.sampled_from(["a.service", "a@b-c.service", "a-b.service"]))
def test_loader_raises_only_its_own_error(fragment: bytes, dropin: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        unit_dir = Path(tmp, "etc/systemd/system")
        unit_dir.mkdir(parents=True)
        fragment_name = name if "@" not in name else "a@.service"
        (unit_dir / fragment_name).write_bytes(fragment)
        (unit_dir / f"{name}.d").mkdir()
        (unit_dir / f"{name}.d" / "x.conf").write_bytes(dropin)
        with contextlib.suppress(MailpreflightError):
            UnitLoader(RootFS(tmp), version=252).load(name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SPICY, st.text(max_size=20))
def test_cli_exits_with_a_code_never_a_traceback(fragment: bytes, requested: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        unit_dir = Path(tmp, "etc/systemd/system")
        unit_dir.mkdir(parents=True)
        (unit_dir / "a.service").write_bytes(fragment)
        for unit in ("a.service", requested):
            assert main(["show", "--root", tmp, "--format", "json", "--", unit]) in (0, 1, 2, 3)
