#!/usr/bin/env python3
"""`mailpreflight deps --root R` over the 10,000-unit root of issue 14 (tests/bigroot.py: a Debian 12 tree, half
the services in /etc, half in /usr/lib, a third with a drop-in, each running `sa-update ... || true`), measured
end to end as an admin runs it — a fresh process, output written to a file — and, as the peer in the same run,
systemd's own `systemctl --root=R list-unit-files` on the same tree (it reads every unit file and its links; it
takes minutes: --no-systemctl skips it, and the table says so).

Per row: wall-clock time, CPU time of the process and its workers (getrusage, less noisy than wall-clock time on
a loaded machine), peak RSS of the largest process. Goals: deps < 2 s and < 150 MiB; show of one unit < 150 ms.

    .venv/bin/python benchmarks/load.py [--units N] [--root DIR | --keep DIR] [--no-systemctl] [--runs N]
                                        [--compare-src DIR] [--compare-python PYTHON]

`--compare-src DIR`: also run the same commands with the mailpreflight of another source tree (e.g.
`git archive main | tar -x -C /tmp/main`), for a before/after in one run: `deps` as run takes turns with it,
`--runs` times each (the fork-count and text rows are measured for this tree only).
`--compare-python PYTHON`: also run them with another interpreter (the venv is Debian's python3, which the .deb
runs on; e.g. /root/.pyenv/versions/3.11.7/bin/python3, a build without PGO/LTO), in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from bigroot import generate  # noqa: E402

GOAL_DEPS_S, GOAL_DEPS_MIB, GOAL_SHOW_S = 2.0, 150.0, 0.150
WITH_WORKERS = ("import sys; from mailpreflight.cli import fanout, main; fanout.WORKERS = {}; "
                "sys.exit(main(sys.argv[1:]))")


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mib: float
    exit: int


def measure(argv: list[str], src: Path, output: Path | None = None) -> Run:
    """One fresh process (and its workers): wall-clock time, CPU time and peak RSS from wait4()."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(output or os.devnull, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode)


def deps(root: Path, src: Path, fmt: str, workers: int | None, output: Path, python: str = sys.executable) -> Run:
    """`workers`: None as an admin runs it (cli/fanout.py decides by the idle CPUs), else that many processes."""
    prefix = [python, "-m", "mailpreflight"] if workers is None else [python, "-c", WITH_WORKERS.format(workers)]
    return measure([*prefix, "deps", "--root", str(root), "--format", fmt], src, output)


def interpreter(python: str) -> str:
    """Which Python runs the tool: its version and installation (Debian's /usr is built with PGO and LTO; pyenv's,
    by default, is not, and runs the tool 10-25 % slower: README, "Performance")."""
    probe = "import sys; print(sys.version.split()[0], 'from', sys.base_prefix)"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def best(runs: list[Run]) -> Run:
    """The median run by wall-clock time (the machine is shared: the median is what an admin sees)."""
    ordered = sorted(runs, key=lambda r: r.wall)
    return ordered[len(ordered) // 2]


def row(label: str, run: Run, goal: str = "") -> None:
    print(f"  {label:44} {run.wall:8.2f} {run.cpu:8.2f} {run.rss_mib:9.0f}   {goal}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--root", type=Path, help="an existing generated root (from --keep) to measure")
    parser.add_argument("--keep", type=Path, help="generate into this dir and keep it")
    parser.add_argument("--no-systemctl", action="store_true", help="skip systemctl --root list-unit-files")
    parser.add_argument("--runs", type=int, default=3, help="runs of each deps measurement (median shown)")
    parser.add_argument("--compare-src", type=Path, help="also measure the mailpreflight of this source tree")
    parser.add_argument("--compare-python", help="also measure with this interpreter (e.g. another build of 3.11)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-bench-load-"))
    root = args.root or args.keep or work / "root"
    src = REPO / "src"
    try:
        if args.root is None:
            started = time.perf_counter()
            names = generate(root, args.units)
            print(f"generated {len(names)} services under {root} in {time.perf_counter() - started:.1f} s")
        services = sum(1 for _ in root.glob("etc/systemd/system/*.service")) + sum(
            1 for _ in root.glob("usr/lib/systemd/system/*.service"))
        dropins = sum(1 for _ in root.glob("etc/systemd/system/*.d/*.conf"))
        load = os.getloadavg()
        print(f"root: {services} unit files, {dropins} drop-ins; load average {load[0]:.1f} {load[1]:.1f} "
              f"{load[2]:.1f} on {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
        print(f"python: {interpreter(sys.executable)}")
        trees = [("", src, sys.executable)]
        if args.compare_src:
            trees.append((" [compare-src]", args.compare_src, sys.executable))
        if args.compare_python:
            print(f"[compare-python]: {interpreter(args.compare_python)}")
            trees.append((" [compare-python]", src, args.compare_python))
        for _, tree, python in trees:
            measure([python, "-m", "mailpreflight", "--version"], tree)  # .pyc files written once
        print(f"  {'':44} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
        results: dict[str, Run] = {}
        # `deps` as an admin runs it, each tree's runs taking turns: on a shared machine whose speed drifts over
        # tens of seconds, a before/after measured one block after the other says more about the drift
        json_runs: dict[str, list[Run]] = {suffix: [] for suffix, _, _ in trees}
        for _ in range(args.runs):
            for suffix, tree, python in trees:
                json_runs[suffix].append(deps(root, tree, "json", None, work / f"deps{suffix}.json", python))
        size = (work / "deps.json").stat().st_size / 2**20
        for suffix, tree, python in trees:
            results["json" + suffix] = best(json_runs[suffix])
            walls = sorted(run.wall for run in json_runs[suffix])
            spread = f"runs {walls[0]:.2f}-{walls[-1]:.2f} s" if len(walls) > 1 else ""
            goal = (f"goal < {GOAL_DEPS_S:g} s, < {GOAL_DEPS_MIB:g} MiB; " if not suffix else "") + spread
            row(f"deps --format json ({size:.0f} MiB out){suffix}", results["json" + suffix], goal)
            if not suffix:
                for workers in (1, 2):
                    row(f"deps --format json, {workers} process(es)", best([
                        deps(root, tree, "json", workers, work / "deps.json") for _ in range(args.runs)]))
                row("deps --format text", best([deps(root, tree, "text", None, work / "deps.txt")
                                                for _ in range(args.runs)]))
            shows = [measure([python, "-m", "mailpreflight", "show", "--root", str(root),
                              "mf-5000-worker.service"], tree) for _ in range(max(args.runs, 5) if not suffix else 3)]
            show = Run(statistics.median(r.wall for r in shows), statistics.median(r.cpu for r in shows),
                       max(r.rss_mib for r in shows), shows[0].exit)
            row(f"show mf-5000-worker.service (median){suffix}", show,
                f"goal < {GOAL_SHOW_S * 1000:g} ms" if not suffix else "")
            if not suffix:
                results["show"] = show
        ok = (results["json"].wall < GOAL_DEPS_S and results["json"].rss_mib < GOAL_DEPS_MIB
              and results["show"].wall < GOAL_SHOW_S)
        if args.no_systemctl:
            print("systemctl --root list-unit-files: skipped (--no-systemctl): no ratio in this run")
        elif shutil.which("systemctl") is None:
            print("systemctl --root list-unit-files: systemctl not installed: no ratio in this run")
        else:
            peer = measure(["systemctl", f"--root={root}", "list-unit-files", "--no-pager"], src)
            row("systemctl --root list-unit-files", peer)
            print(f"ratio: systemctl --root list-unit-files takes {peer.wall / results['json'].wall:.0f}x the "
                  f"wall-clock time of mailpreflight deps --format json "
                  f"({peer.cpu / max(results['json'].cpu, 0.01):.0f}x its CPU time)")
        print("goals (deps < 2 s and < 150 MiB, show < 150 ms): " + ("met" if ok else "NOT MET in this run"))
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
