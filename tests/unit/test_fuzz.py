"""Fuzzing in the normal suite (issue 17 item 8): every target of tests/fuzzing.py runs a few hundred generated
hostile inputs (about 3,800 in all) under the same oracles as the campaign (`benchmarks/fuzz.py`): no exception
but the documented ones, no example over HANG_SECONDS, the command line exits 0..3 with no "internal error".
Hypothesis drives the generators (its Random), so a failure is shrunk and printed with its input. What the
fuzzer found is kept in tests/unit/test_fuzz_found.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with fuzzing.scratch() as directory:
        yield directory


@pytest.mark.parametrize("name", list(fuzzing.TARGETS))
def test_fuzz(name: str, workdir: Path) -> None:
    target = fuzzing.TARGETS[name]

    @settings(max_examples=target.suite_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def example(rng: fuzzing.Rng) -> None:
        failure, record = fuzzing.run_one(target, rng, workdir)
        assert failure is None, (f"{failure.signature}\n{failure.trace}\n"
                                 f"input: {json.dumps(record, ensure_ascii=True)[:6000]}")

    example()


def test_the_oracles_catch_what_they_are_for(workdir: Path) -> None:
    """A crash, a hang (busy, swallowing exceptions, or blocked) and a broken rule are each reported, with where
    they happened."""

    def crash(_: fuzzing.Record, __: Path) -> None:
        {}["missing"]

    def busy(_: fuzzing.Record, __: Path) -> None:
        while True:
            pass

    def swallowing(_: fuzzing.Record, __: Path) -> None:
        while True:
            with contextlib.suppress(Exception):  # the code under test cannot eat a Hang
                sum(range(1000))

    def blocked(_: fuzzing.Record, __: Path) -> None:
        time.sleep(60)

    def rule(_: fuzzing.Record, __: Path) -> None:
        fuzzing._check(False, "exit code 7")

    outcomes = {}
    for name, run in (("crash", crash), ("busy", busy), ("swallowing", swallowing), ("blocked", blocked),
                      ("rule", rule)):
        target = fuzzing.Target(name, "", lambda _rng, _work: {}, run)
        started = time.monotonic()
        outcomes[name] = fuzzing.check(target, {}, workdir, limit=0.1)  # 0.1 s of CPU, 1 s of wall-clock time
        assert time.monotonic() - started < 5
    assert outcomes["crash"] is not None and outcomes["crash"].kind == "crash"
    assert outcomes["crash"].error == "KeyError: 'missing'" and "test_fuzz.py" in outcomes["crash"].where
    for name in ("busy", "swallowing", "blocked"):
        assert outcomes[name] is not None and outcomes[name].kind == "hang", name
    assert outcomes["blocked"] is not None and "no CPU time used in 1 s" in outcomes["blocked"].error
    assert outcomes["rule"] is not None and "exit code 7" in outcomes["rule"].signature


def test_a_saved_failure_replays(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(record: fuzzing.Record, _: Path) -> None:
        if record["value"] == "bad":
            raise ZeroDivisionError("planted")

    monkeypatch.setitem(fuzzing.TARGETS, "planted", fuzzing.Target("planted", "", lambda _rng, _work: {}, run))
    failure = fuzzing.check(fuzzing.TARGETS["planted"], {"value": "bad"}, workdir)
    assert failure is not None
    saved = fuzzing.save(tmp_path, failure, {"value": "bad"}, 1, 2)
    again = fuzzing.replay(saved, workdir)
    assert again is not None and again.signature == failure.signature
    # a tree record is written again before it runs
    record = {"tree": {"/etc/systemd/system/a.service": "[Service]\nExecStart=/bin/true\n"},
              "argv": ["show", "--root", "{root}", "--", "a.service"]}
    saved = fuzzing.save(tmp_path, fuzzing.Failure("cli", "crash", "run", "X: y", "here"), record, 1, 3)
    assert json.loads(saved.read_text())["record"] == record
    assert fuzzing.replay(saved, workdir) is None


def test_generated_trees_stay_inside_their_root(tmp_path: Path) -> None:
    """Links are made last and never written through: a tree linking /etc to the host's / writes nothing there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = {"/etc": {"link": str(outside)}, "/etc/passwd": "x", "/usr/lib": {"link": "../../../../.."},
            "/usr/lib/evil": "y", "/a/b": {"link": "/"}, "/a/b/c/d": "z",
            # links only: the first one is made before the others, which must not be made through it
            "/l": {"link": str(outside)}, "/l/sub/x": {"link": "y"}, "/l/z": {"link": "y"},
            "/m/..": {"link": str(outside)}, "/m/n/o": {"link": "p"}}
    fuzzing.materialize(tree, tmp_path / "root")
    assert list(outside.iterdir()) == []
    assert (tmp_path / "root/l").is_symlink() and (tmp_path / "root/m").is_symlink()
    assert (tmp_path / "root/etc/passwd").read_text() == "x" and not (tmp_path / "root/etc").is_symlink()
    assert not fuzzing._stays_inside(tmp_path / "root", "/etc/../../x")
    (tmp_path / "root/etc/link").symlink_to(outside)
    assert not fuzzing._stays_inside(tmp_path / "root", "/etc/link/x")
    assert fuzzing._stays_inside(tmp_path / "root", "/etc/pam.d/imap")


def test_campaign_driver(tmp_path: Path) -> None:
    """benchmarks/fuzz.py: a small campaign on two workers passes and prints every target; with a limit no example
    can meet, every example is a hang, the inputs are saved, the run fails, and --replay fails on them again."""
    driver = [sys.executable, str(Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz.py")]
    done = subprocess.run([*driver, str(2 * len(fuzzing.TARGETS)), "--crashes", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(f"\n{name:18} {2:>10}" in done.stdout for name in fuzzing.TARGETS), done.stdout
    assert not (tmp_path / "none").exists()
    done = subprocess.run([*driver, "4", "--workers", "1", "--targets", "unit-file", "--limit", "0.00001",
                           "--crashes", str(tmp_path / "hangs")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and re.search(r"\nunit-file +4 +0 +4 ", done.stdout), done.stdout + done.stderr
    saved = sorted((tmp_path / "hangs").iterdir())
    assert saved
    again = subprocess.run([*driver, "--replay", str(saved[0]), "--limit", "0.00001"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 1 and "hang" in again.stdout


def test_watchdog_tells_stuck_from_starved() -> None:
    """A worker silent beyond the watchdog is killed only when it burns far more CPU than an example may (signals
    not acted on) or uses none for a whole period (blocked); a worker only starved of CPU is left alone."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_driver", Path(fuzzing.PROJECT) / "benchmarks" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        quiet: dict[int, tuple[float, float]] = {}
        assert driver._stuck(sleeper.pid, 10, 0.0, 0, quiet, 60, 2) == ""  # not silent long enough
        assert driver._stuck(sleeper.pid, 100, 0.0, 0, quiet, 60, 2) == ""  # silent: watched from now on
        quiet[0] = (time.monotonic() - 61, quiet[0][1])  # ... a watchdog period later, still no CPU used
        assert driver._stuck(sleeper.pid, 161, 0.0, 0, quiet, 60, 2).startswith("no CPU time used for")
        quiet.clear()
        assert "s of CPU on one example" in driver._stuck(os.getpid(), 100, -1000.0, 1, quiet, 60, 2)
        quiet[2] = (time.monotonic() - 61, driver._cpu_seconds(os.getpid()) - 1)  # used CPU, slowly: starved
        assert driver._stuck(os.getpid(), 161, driver._cpu_seconds(os.getpid()), 2, quiet, 60, 2) == ""
    finally:
        sleeper.kill()
        sleeper.wait()
