"""Commands a wrapper bounds: `timeout N`, `mailpreflight guard` and the in-guest `sh -c '... timeout ... "$@"'` form
of our drop-in are looked through (deps finds sa-update inside them), and what they bound is what the analysis and
the prediction take: a drop-in's sa-update still shows what the guard does not fix (it runs as root where the
distribution keeps the rules as debian-spamd), and no longer a timeout the bound rules out."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.analyze import UnitDeps, analyze
from mailpreflight.deps.discover import discover_argv
from mailpreflight.deps.shell import read_shell
from mailpreflight.fix import dropin
from mailpreflight.model import FoundCommand
from mailpreflight.units.loader import UnitLoader

SA = "/var/lib/spamassassin/4.000001"
PASSWD = "root:x:0:0::/root:/bin/bash\ndebian-spamd:x:108:113::/var/lib/spamassassin:/bin/sh\n"


def root(tmp_path: Path, unit: str, *programs: str) -> Path:
    tree = {"/etc/os-release": "ID=debian\nVERSION_ID=12\n", "/etc/passwd": PASSWD,
            "/usr/share/perl5/Mail/SpamAssassin.pm": 'package Mail::SpamAssassin;\nour $VERSION = "4.000001";\n',
            "/usr/bin/curl": "#!/bin/false\n", "/usr/bin/sa-update": "#!/usr/bin/perl\n",
            "/etc/resolv.conf": "nameserver 192.0.2.53\n",
            f"{SA}/updates_spamassassin_org/MIRRORED.BY": "http://m1.example.org/ weight=5\n",
            "/etc/systemd/system/spamd.service": unit, **{p: "" for p in programs}}
    made = make_tree(tmp_path, tree)
    for program in programs:
        (made / program.lstrip("/")).chmod(0o755)
    return made


def run(path: Path) -> UnitDeps:
    fs = RootFS(str(path))
    return analyze(UnitLoader(fs).load("spamd.service"), fs)


def sa_update(result: UnitDeps) -> FoundCommand:
    return next(e.command for e in result.commands if e.command.tool == "sa-update")


def install_dropin(path: Path) -> tuple[Path, str]:
    """spamd.service's drop-in as `dropin install --timeout 20` writes it: (its path, its text)."""
    planned = dropin.plan(UnitLoader(RootFS(str(path))), "spamd.service", 20)
    target = path / "etc/systemd/system/spamd.service.d" / dropin.DROPIN_NAME
    target.parent.mkdir()
    target.write_text(planned.text)
    return target, planned.text


def codes(result: UnitDeps) -> set[str]:
    return {f.code for f in result.findings}


@pytest.mark.parametrize(("argv", "bound", "via"), [
    (["timeout", "20", "sa-update"], 20.0, ("timeout",)),
    (["/usr/bin/timeout", "--kill-after=5", "20", "sa-update"], 25.0, ("timeout",)),
    (["timeout", "-k", "1m", "2m", "sa-update"], 180.0, ("timeout",)),
    (["timeout", "-s", "KILL", "0", "sa-update"], None, ("timeout",)),  # 0: no limit
    (["mailpreflight", "guard", "--timeout", "30", "--", "sa-update"], 38.0, ("mailpreflight guard",)),
    (["mailpreflight", "guard", "--", "/bin/bash", "-c", "sa-update || true"], 68.0,
     ("mailpreflight guard", "bash -c")),
    (["timeout", "90", "mailpreflight", "guard", "--timeout", "20", "--", "sa-update"], 28.0,
     ("timeout", "mailpreflight guard")),  # the tighter bound wins
])
def test_wrappers_that_bound_a_command(tmp_path: Path, argv: list[str], bound: float | None,
                                       via: tuple[str, ...]) -> None:
    found = discover_argv(argv, RootFS(str(tmp_path)), {"PATH": "/usr/bin"})
    command = next(c for c in found if c.tool == "sa-update")
    assert (command.bound, command.via) == (bound, via)


def test_the_guard_tolerates_unless_strict(tmp_path: Path) -> None:
    fs = RootFS(str(tmp_path))
    loose = discover_argv(["mailpreflight", "guard", "--", "sa-update"], fs, {})[0]
    strict = discover_argv(["mailpreflight", "guard", "--strict", "--", "sa-update"], fs, {})[0]
    assert loose.tolerated and "mailpreflight guard (exits 0)" in loose.tolerated_why
    assert not strict.tolerated
    assert discover_argv(["mailpreflight", "check", "--", "sa-update"], fs, {})[0].tool == "mailpreflight"


def test_positional_parameters_of_a_shell() -> None:
    env = {"1": "/usr/bin/sa-update", "2": "--channel", "3": "a b.example", "#": "3"}

    def argv(script: str, given: dict[str, str] | None = None) -> list[tuple[str, ...]]:
        return [c.argv for c in read_shell(script, env if given is None else given).commands]

    assert argv('timeout 20 "$@"') == [("timeout", "20", "/usr/bin/sa-update", "--channel", "a b.example")]
    assert argv('echo "$*"') == [("echo", "/usr/bin/sa-update --channel a b.example")]
    assert argv("echo $@") == [("echo", "/usr/bin/sa-update", "--channel", "a", "b.example")]
    assert argv('shift 2; echo "$@" $#') == [("echo", "a b.example", "1")]
    assert argv('set -- x "y z"; echo "$@"; set -e; echo "$2"') == [("echo", "x", "y z"), ("echo", "y z")]
    assert argv('f() { echo "$@"; }; f one; echo "$1"') == [("echo", "one"), ("echo", "/usr/bin/sa-update")]
    assert argv('(set -- sub; echo "$@"); echo "$#"') == [("echo", "sub"), ("echo", "3")]
    assert argv('echo "$@"', {"#": "0"}) == [("echo",)]  # none: no word at all
    assert argv('echo "$@"', {}) == [("echo", "$@")]  # not known here: left as written
    assert argv('shift 9; echo "$@"') == [("echo", "$@")]  # shifted past the end: not known any more


@pytest.mark.parametrize("programs", [("/usr/bin/mailpreflight", "/usr/bin/timeout", "/bin/sh"),
                                      ("/usr/bin/timeout", "/bin/sh", "/usr/bin/logger")])
def test_after_the_dropin_sa_update_is_still_analysed(tmp_path: Path, programs: tuple[str, ...]) -> None:
    """Both forms of the drop-in (the guest's own guard; timeout + logger): sa-update is found through them, its
    timeout risk is gone (bounded, TimeoutStartSec raised), running as root is not (the guard does not fix it)."""
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            "ExecStartPre=/bin/sh -c \"sa-update || true\"\nExecStart=/usr/sbin/spamd\nTimeoutStartSec=10\n")
    path = root(tmp_path, unit, *programs)
    before = run(path)
    assert {"MP103", "MP105"} <= codes(before)
    install_dropin(path)
    after = run(path)
    command = sa_update(after)
    assert command.bound is not None and 20 < command.bound <= 28 and command.tolerated
    assert "MP103" not in codes(after) and "MP105" in codes(after), after.findings


def test_a_bound_longer_than_the_start_timeout_is_still_mp103(tmp_path: Path) -> None:
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            "ExecStartPre=-/usr/bin/timeout 300 /usr/bin/sa-update\nExecStart=/usr/sbin/spamd\nTimeoutStartSec=60\n")
    result = run(root(tmp_path, unit, "/usr/bin/timeout"))
    finding = next(f for f in result.findings if f.code == "MP103")
    assert "stopped by timeout 300" not in finding.message  # 300 s is more than its worst case: no bound shown
    unit = unit.replace("timeout 300", "timeout 100")
    result = run(root(tmp_path / "b", unit, "/usr/bin/timeout"))
    finding = next(f for f in result.findings if f.code == "MP103")
    assert "can run 100 s" in finding.message and "stopped by timeout 100" in finding.message


def test_the_rules_cleanup_the_dropin_writes_is_the_one_the_prediction_knows() -> None:
    from mailpreflight.deps.startup import RULES_CLEANUP
    from mailpreflight.fix import inguest

    assert inguest.rules_cleanup(SA, "/bin/sh") == ["/bin/sh", "-c", *RULES_CLEANUP, SA]


def test_a_bounded_sa_update_that_fails_leaves_no_empty_rules_dir_behind_the_cleanup(tmp_path: Path) -> None:
    """Killed at its bound (or failing), sa-update leaves its channel dir empty; the drop-in's last line removes
    it, so spamd starts on the packaged rules (the booted guest of tests/vm does): the start is not predicted to
    fail for it."""
    from mailpreflight.predict.startup import spamd_fails

    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            "ExecStartPre=/bin/sh -c \"sa-update || true\"\nExecStart=/usr/sbin/spamd\n")
    path = root(tmp_path, unit, "/usr/bin/timeout", "/bin/sh", "/usr/bin/logger")
    target, planned = install_dropin(path)
    assert "mailpreflight-rules" in planned
    fs = RootFS(str(path))
    result = analyze(UnitLoader(fs).load("spamd.service"), fs)
    assert result.startup is not None and result.startup.rules_cleaned
    assert spamd_fails(result.startup, [], "simple", "always") is None
    target.write_text(planned.replace("mailpreflight-rules", "other-rules"))
    fs = RootFS(str(path))
    again = analyze(UnitLoader(fs).load("spamd.service"), fs)
    assert again.startup is not None and not again.startup.rules_cleaned


def test_hostile_positional_parameters_stay_cheap_and_never_raise() -> None:
    import time

    started = time.monotonic()
    read_shell("set -- " + " a" * 4096 + "\n" + "shift 0\n" * 32000, {"#": "0"})
    read_shell('f() { :; }\n' + 'f "$@"\n' * 37000, {**{str(i): "x" for i in range(1, 4001)}, "#": "4000"})
    assert time.monotonic() - started < 10  # before the caps: 49 s and 161 s
    for script in ("shift \u00b2; curl http://x/", "shift " + "9" * 5000 + "; curl http://x/"):
        assert [c.argv for c in read_shell(script, {"#": "1", "1": "a"}).commands] == [("curl", "http://x/")]
    assert [c.argv for c in read_shell('set -- "$@" x; echo $#', {}).commands] == [("echo", "$#")]
    assert [c.argv for c in read_shell("echo ${@:-z}", {"#": "1", "1": "a"}).commands] == [("echo", "${@:-z}")]


@pytest.mark.parametrize(("options", "bound", "tolerated"), [
    (["--timeout", "1e3"], 1008.0, True),
    (["--time", "1000"], 1008.0, True),  # argparse's abbreviation, as the guard reads it
    (["--timeout", "20", "--grace", "0", "--diagnose-budget", "0"], 20.0, True),
    (["--timeout=20", "--strict"], 28.0, False),
])
def test_the_guard_line_is_read_with_the_guards_own_parser(tmp_path: Path, options: list[str], bound: float,
                                                           tolerated: bool) -> None:
    [command] = discover_argv(["mailpreflight", "guard", *options, "--", "/usr/bin/sa-update"],
                              RootFS(str(tmp_path)), {})
    assert (command.tool, command.bound, command.tolerated) == ("sa-update", bound, tolerated)
    if not tolerated:  # --strict: the guard exits 0 for sa-update's 0 and 1, else with its status
        assert command.fate_of(1) is not None and command.fate_of(1).script_exit(1) == 0  # type: ignore[union-attr]
        assert command.fate_of(4) is not None and command.fate_of(4).script_exit(4) == 4  # type: ignore[union-attr]
    refused = discover_argv(["mailpreflight", "guard", "--timeout", "30s", "--", "sa-update"], RootFS(str(tmp_path)),
                            {})
    assert [c.tool for c in refused] == ["mailpreflight"]  # the guard refuses it (exit 3): nothing runs
    for helped in (["--help"], ["--he"], ["-h"]):  # prints its help and runs nothing; and prints nothing here
        found = discover_argv(["mailpreflight", "guard", *helped, "--", "sa-update"], RootFS(str(tmp_path)), {})
        assert [c.tool for c in found] == ["mailpreflight"]


def test_an_admins_own_guard_line_is_not_wrapped_again(tmp_path: Path) -> None:
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            "ExecStartPre=-/usr/bin/mailpreflight guard --timeout 20 -- /usr/bin/sa-update\n"
            "ExecStart=/usr/sbin/spamd\n")
    path = root(tmp_path, unit, "/usr/bin/mailpreflight")
    with pytest.raises(Exception, match="nothing to guard"):
        dropin.plan(UnitLoader(RootFS(str(path))), "spamd.service", 20)


def test_a_finding_on_a_line_of_our_dropin_points_at_the_units_own_line(tmp_path: Path) -> None:
    """MP105 through the drop-in: a sed on zz-mailpreflight.conf would be undone by the next `dropin install`."""
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            "ExecStartPre=/bin/sh -c \"sa-update || true\"\nExecStart=/usr/sbin/spamd\n")
    path = root(tmp_path, unit, "/usr/bin/mailpreflight", "/bin/sh")
    install_dropin(path)
    hint = next(f.hint for f in run(path).findings if f.code == "MP105")
    assert "zz-mailpreflight.conf" not in hint and "`mailpreflight dropin remove spamd.service`" in hint, hint


def test_a_guard_missing_from_the_root_runs_nothing(tmp_path: Path) -> None:
    """A host's drop-in copied into a guest without mailpreflight: systemd skips the '-' line (MP114), so the
    sa-update inside it never runs and is not analysed as if it did."""
    argv = ["/usr/bin/mailpreflight", "guard", "--", "/usr/bin/sa-update"]
    assert [c.tool for c in discover_argv(argv, RootFS(str(tmp_path)), {})] == ["mailpreflight"]
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/mailpreflight").write_text("#!/usr/bin/python3\n")
    assert [c.tool for c in discover_argv(argv, RootFS(str(tmp_path)), {})] == ["sa-update"]


def test_the_dropins_start_timeout_covers_every_bound_it_sets(tmp_path: Path) -> None:
    """Four guarded commands that all run to their bound (the guard's --timeout + --grace + its diagnosis) fit
    in the TimeoutStartSec the drop-in writes."""
    lines = "".join(f'ExecStartPre=/bin/sh -c "sa-update --channel c{i}.example.org || true"\n' for i in range(4))
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n" + lines +
            "ExecStart=/usr/sbin/spamd\nTimeoutStartSec=10\n")
    path = root(tmp_path, unit, "/usr/bin/mailpreflight", "/bin/sh")
    install_dropin(path)
    result = run(path)
    bounds = [e.command.bound for e in result.commands if e.command.tool == "sa-update"]
    assert len(bounds) == 4 and all(b == 28.0 for b in bounds)
    assert result.timeout.seconds >= sum(b for b in bounds if b is not None), result.timeout
