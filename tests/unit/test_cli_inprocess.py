"""The command line run in-process with an injected Environment: exit codes come from one table, a crash is
UNKNOWN (3) with one line, --debug adds the traceback, and text output escapes control characters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight import cli
from mailpreflight.model import Severity, Status

EXAMPLE = Path(__file__).resolve().parents[2] / "units" / "examples" / "opensuse-leap15-mail"


def run(*argv: str, tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), cli.Environment(stdout=out, stderr=err, stdout_isatty=tty, environ={}))
    return code, out.getvalue(), err.getvalue()


def test_exit_codes_come_from_status() -> None:
    assert [s.exit_code for s in Status] == [0, 1, 2, 3]
    assert Status.worst([]) is Status.OK
    assert Status.worst([Status.WARNING, Status.OK, Status.CRITICAL]) is Status.CRITICAL
    assert Status.worst([Status.CRITICAL, Status.UNKNOWN]) is Status.UNKNOWN
    assert [s.status for s in Severity] == [Status.OK, Status.WARNING, Status.CRITICAL]


def test_show_in_process() -> None:
    code, out, err = run("show", "--root", str(EXAMPLE), "spamd.service", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["exec"]["ExecStartPre"][0]["argv"] == ["/bin/bash", "-c", "sa-update || true"]


def test_deps_critical_risk_is_exit_2() -> None:
    code, out, _ = run("deps", "--root", str(EXAMPLE), "spamd.service")
    assert code == 2 and "CRITICAL" in out


def test_usage_error_and_unknown_unit_are_unknown(tmp_path: Path) -> None:
    assert run("show")[0] == 3
    code, _, err = run("show", "--root", str(tmp_path), "nope.service")
    assert code == 3 and err.startswith("mailpreflight: ") and err.count("\n") == 1


def test_a_crash_is_unknown_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> Status:
        raise ZeroDivisionError("planted")

    monkeypatch.setitem(cli.VERBS, "show", boom)
    code, out, err = run("show", "x.service")
    assert (code, out) == (3, "")
    assert err.count("\n") == 1 and "internal error" in err and "ZeroDivisionError: planted" in err
    assert "Traceback" not in err and "--debug" in err
    code, _, err = run("--debug", "show", "x.service")
    assert code == 3 and "Traceback (most recent call last)" in err and "ZeroDivisionError: planted" in err


def test_text_output_escapes_control_characters(tmp_path: Path) -> None:
    make_tree(tmp_path, {"etc/systemd/system/evil.service":
                         "[Unit]\nDescription=\x1b]0;owned\x07 \x1b[2J\x9b31m\n[Service]\nExecStart=/bin/true\n"})
    for tty in (False, True):
        code, out, _ = run("show", "--root", str(tmp_path), "evil.service", tty=tty)
        assert code == 0
        assert not any(c in out for c in "\x1b\x07\x9b"), out
        assert "\\x1b]0;owned\\a" in out and "\\u009b31m" in out


def test_coloured_check_text_escapes_guest_text_but_keeps_its_colours() -> None:
    from mailpreflight.model import Finding, Prediction, Report, UnitVerdict
    from mailpreflight.render.check import render_text

    evil = "spamd\x1b[2J.service"
    report = Report(Status.CRITICAL, (UnitVerdict(evil, Prediction.FAIL, "why\x9b", ()),), (),
                    (Finding("MP101", Severity.CRITICAL, evil, "msg\x1b]0;t\x07", "hint\r"),), 0.1)
    text = render_text(report, colour=True)
    assert "\x1b[2J" not in text and "\x9b" not in text and "\x07" not in text and "\r" not in text
    assert "spamd\\x1b[2J.service" in text
    assert "\x1b[31mfail\x1b[0m" in text  # our own colour sequences stay
