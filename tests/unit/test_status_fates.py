"""What a script does with a command's exit status (deps/shell/status.py), the guards the tree decides
(`command -v gpg || exit 0`), and how `check` turns them into a start prediction (ok, fail, unknown). Each
expectation is also run through the real dash where dash can run the script as written."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailpreflight.deps.shell import read_shell
from mailpreflight.deps.shell.status import compose
from mailpreflight.model import CommandVerdict, Fate, FoundCommand, Prediction, Source, StatusFate
from mailpreflight.predict.judge import script_decides


def fates(script: str, tool: str = "sa-update") -> list[str]:
    command = next(c for c in read_shell(script).commands if c.argv[0] == tool)
    return [str(f).split(" (", 1)[0] for f in command.status_fates]


CASES = [
    # Debian's spamassassin-maint (l.87-116), shortened
    ("sa-update\ncase $? in\n 0) echo new ;;\n 1) exit 0 ;;\n 2) exit 1 ;;\n *) echo failed >&2; exit 1 ;;\nesac\n"
     "exit 0\n", ["0: goes on", "1: exits 0", "2-255: exits 1"]),
    ('sa-update\ncase "$?" in 0|1) ;; *) exit 1;; esac\n', ["0-1: goes on", "2-255: exits 1"]),
    ("sa-update\ncase $? in [01]) ;; 4) exit 0;; *) exit 3;; esac\n", ["0-1: goes on", "2-3: exits 3", "4: exits 0",
                                                                      "5-255: exits 3"]),
    ("sa-update\nif [ $? -gt 1 ]; then exit 1; fi\n", ["0-1: goes on", "2-255: exits 1"]),
    # the elif's $? is the first condition's status (1), not sa-update's
    ("sa-update\nif [ $? -eq 0 ]; then echo ok; elif [ $? -ne 1 ]; then exit 2; fi\n", ["0-255: goes on"]),
    ("sa-update\nif [ $? -eq 0 ]; then echo ok; else exit $?; fi\n", ["0: goes on", "1-255: exits 1"]),
    ("sa-update\n[ $? -le 1 ] || exit $?\n", ["0-1: goes on", "2-255: exits 1"]),
    ("sa-update\n[ $? -le 1 ] || exit 3\necho done\n", ["0-1: goes on", "2-255: exits 3"]),
    ("sa-update\ntest $? -ne 0 && exit 4\nexit 0\n", ["0: goes on", "1-255: exits 4"]),
    ("sa-update\nrc=$?\n[ $rc -le 1 ] || exit $rc\n", ["0-1: goes on", "2-255: exits with it"]),
    ("rc=0\nsa-update || rc=$?\nif [ \"$rc\" -eq 0 ]; then echo new; elif [ \"$rc\" -ne 1 ]; then exit $rc; fi\n",
     ["0-1: goes on", "2-255: exits with it"]),
    ("fail() { echo \"$1\" >&2; exit 1; }\nsa-update\ncase $? in 0|1) ;; *) fail 'sa-update failed';; esac\n",
     ["0-1: goes on", "2-255: exits 1"]),
    ("sa-update\n[ $? -eq 0 ]\n", ["0: goes on", "1-255: exits 1"]),  # the last command: the test's status
]


@pytest.mark.parametrize(("script", "expected"), CASES)
def test_fates(script: str, expected: list[str], tmp_path: Path) -> None:
    assert fates(script) == expected
    dash = shutil.which("dash")
    if dash is None:
        return
    # the real dash, with an sa-update that exits each status
    (tmp_path / "sa-update").write_text('#!/bin/sh\nexit "$SA_STATUS"\n')
    (tmp_path / "sa-update").chmod(0o755)
    command = next(c for c in read_shell(script).commands if c.argv[0] == "sa-update")
    for status in (0, 1, 2, 3, 4, 5, 200, 255):
        real = subprocess.run([dash, "-c", script], capture_output=True, text=True, check=False,
                              env={"PATH": f"{tmp_path}:/usr/bin:/bin", "SA_STATUS": str(status)})
        fate = command.fate_of(status)
        assert fate is not None
        if fate.fate is not Fate.GOES_ON:
            assert real.returncode == fate.script_exit(status), (status, script)


@pytest.mark.parametrize(("script", "expected"), [
    ("sa-update\nif [ $? -ne 0 -a $? -ne 1 ]; then exit 1; fi\n", ["0-255: unknown"]),  # -a not read
    ("sa-update\nrc=$?\nlogger \"sa-update: $rc\"\nexit $rc\n", ["0-255: unknown"]),  # looked at later
    ("sa-update\ncase $? in $OK) ;; *) exit 1;; esac\n", ["0-255: unknown"]),  # a pattern of a variable
    ("sa-update\ncase $? in 0) ;& 1) exit 0;; esac\n", ["0: unknown", "1: exits 0", "2-255: goes on"]),
    ("sa-update || rc=$?\n[ $rc -le 1 ] || exit 1\n", ["0: unknown", "1: goes on", "2-255: exits 1"]),
])
def test_what_is_not_read_is_unknown(script: str, expected: list[str]) -> None:
    assert fates(script) == expected


def test_not_a_status_check() -> None:
    assert fates("sa-update\nrc=$?\necho done\n") == ["0-255: goes on"]  # kept, never looked at
    plain = next(c for c in read_shell("sa-update\nexit 0\n").commands if c.argv[0] == "sa-update")
    assert plain.status_fates == () and plain.why == ("not the last command",)
    errexit = next(c for c in read_shell("set -e\nsa-update\ncase $? in *) exit 1;; esac\n").commands)
    assert (errexit.tolerated, errexit.status_fates) == (False, ())  # set -e exits before anyone looks
    background = fates("sa-update\ncase $? in *) exit 1;; esac &\n")
    assert background == ["0-255: goes on"]  # that exit leaves the background job


def test_exit_in_a_subshell_or_tolerated_function() -> None:
    assert fates("(sa-update; case $? in *) exit 1;; esac)\necho after\n") == ["0-255: goes on"]
    assert fates("(sa-update; case $? in *) exit 1;; esac)\n") == ["0-255: exits 1"]  # the subshell is last
    assert fates("f() { sa-update; case $? in 1) return 0;; *) return 2;; esac; }\nf || true\n") == [
        "0-255: goes on"]


def test_guards_the_tree_decides() -> None:
    script = "test -x /usr/bin/sa-update || exit 0\ncommand -v gpg > /dev/null || exit 0\nsa-update\n"

    known = {("test", "-x", "/usr/bin/sa-update"): True, ("command", "-v", "gpg"): False}

    def decide(argv: Sequence[str]) -> bool | None:
        return known.get(tuple(argv))
    reading = read_shell(script, decide=decide)
    assert [c.argv[0] for c in reading.commands] == ["test"]
    assert reading.stop is not None and (reading.stop.line, reading.stop.status) == (2, 0)
    assert reading.stop.condition == "command -v gpg" and reading.stop.holds is False
    kept = read_shell(script, decide=lambda argv: True)
    assert kept.stop is None and "sa-update" in [c.argv[0] for c in kept.commands]
    assert read_shell("if ! [ -f /etc/x ]; then exit 3; fi\nsa-update\n", decide=lambda argv: False).stop \
        is not None
    assert read_shell("[ -f /etc/x ] && exit 0\nsa-update\n", decide=lambda argv: None).stop is None  # not known


def test_compose() -> None:
    inner = (StatusFate(0, 0, Fate.GOES_ON), StatusFate(1, 255, Fate.PASSES))  # `|| exit $?`-like
    outer = (StatusFate(0, 1, Fate.GOES_ON), StatusFate(2, 255, Fate.EXITS, 1))
    assert [str(f) for f in compose(outer, inner)] == ["0-1: goes on", "2-255: exits 1"]
    assert compose((), inner) == inner and compose(outer, ()) == outer


def verdict(exit_class: str, script_fates: tuple[StatusFate, ...], tool: str = "sa-update") -> CommandVerdict:
    command = FoundCommand(tool, (tool,), "ExecStart", Source("/usr/sbin/maint", 5), True,
                           ("status checked by the script",), status_fates=script_fates)
    return CommandVerdict(command, Prediction.FAIL, exit_class, 1.0, "no network")


MAINT = (StatusFate(0, 0, Fate.GOES_ON, where="/usr/sbin/maint:7"),
         StatusFate(1, 1, Fate.EXITS, 0, "/usr/sbin/maint:7"), StatusFate(2, 255, Fate.EXITS, 1, "/usr/sbin/maint:7"))


def test_judge_follows_the_script() -> None:
    decided = script_decides(verdict("4", MAINT))
    assert decided is not None and decided[0] is Prediction.FAIL
    assert "on exit 4 the script exits 1 (/usr/sbin/maint:7)" in decided[1]
    assert script_decides(verdict("0|1", MAINT)) is None  # both are fine for this script
    unknown = script_decides(verdict("non-zero", MAINT, tool="curl"))  # 1 is fine, 2-255 are not
    assert unknown is not None and unknown[0] is Prediction.UNKNOWN
    strict = (StatusFate(0, 0, Fate.GOES_ON), StatusFate(1, 255, Fate.EXITS, 1))
    usual = script_decides(verdict("0|1", strict))  # sa-update's exit 1 on a day without new rules
    assert usual is not None and usual[0] is Prediction.FAIL and "most days" in usual[1]
    opaque = script_decides(verdict("4", (StatusFate(0, 255, Fate.UNKNOWN, where="/usr/sbin/maint:9"),)))
    assert opaque is not None and opaque[0] is Prediction.UNKNOWN and "/usr/sbin/maint:9" in opaque[1]
    other_reason = verdict("4", MAINT)
    forgiven = CommandVerdict(FoundCommand("sa-update", ("sa-update",), "ExecStart", Source("/u", 1), True,
                                           ("'-' prefix", "status checked by the script"), status_fates=MAINT),
                              Prediction.FAIL, "4", 1.0, "")
    assert script_decides(forgiven) is None and script_decides(other_reason) is not None


def test_work_is_bounded() -> None:
    """At most MAX_CHECKS statements per script are evaluated, each with at most MAX_BRANCHES branches."""
    from mailpreflight.deps.shell.status import MAX_BRANCHES, MAX_CHECKS

    checks = "".join(f"t{i}\ncase $? in 0) ;; *) exit 1;; esac\n" for i in range(MAX_CHECKS + 1))
    reading = read_shell(checks)
    assert [str(c.status_fates[0]).split(" (")[0] for c in reading.commands] == [
        "0: goes on"] * MAX_CHECKS + ["0-255: unknown"]
    wide = " ".join(f"{i}) exit 1;;" for i in range(MAX_BRANCHES + 1))
    assert fates(f"sa-update\ncase $? in {wide} esac\n") == ["0-255: unknown"]
