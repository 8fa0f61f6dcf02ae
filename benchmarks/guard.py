#!/usr/bin/env python3
"""What `mailpreflight guard` adds to every service start: `true` and a command printing 100 lines, run N
times bare and through the guard (the console script when it knows the verb, else the module), median
wall-clock time each way, the median overhead in ms (target: under 50 ms), and the CPU time each start costs
(user + system of the children, from getrusage: on a machine loaded by other work the wall-clock time is noisy,
the CPU time much less).

    .venv/bin/python benchmarks/guard.py [--runs N] [--module]

Runs with bytecode caching on (a first run writes the .pyc files, as `pip install` does): with
PYTHONDONTWRITEBYTECODE=1 every start would compile guard.py and cli.py again. The code measured is this
tree's (src/ first in PYTHONPATH), whatever the venv has installed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".venv" / "bin" / "mailpreflight"
MODULE = [sys.executable, "-c", "import sys; from mailpreflight.fix.guard import main; sys.exit(main(sys.argv[1:]))"]
COMMANDS = {"true": ["true"], "100 lines": ["seq", "100"]}
TARGET_MS = 50.0
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])


def guard_prefix(module: bool) -> tuple[list[str], str]:
    """The console script if it has the `guard` verb, else the module called the way the verb calls it."""
    subprocess.run([*MODULE, "--", "true"], env=ENV, check=False)  # writes the .pyc files
    if SCRIPT.exists() and not module:
        probe = subprocess.run([str(SCRIPT), "guard", "--", "true"], capture_output=True, env=ENV, check=False)
        if probe.returncode == 0 and not probe.stderr:
            return [str(SCRIPT), "guard"], f"{SCRIPT.relative_to(REPO)} guard --"
    return MODULE, "python -c 'from mailpreflight.fix.guard import main ...' --"


def median_ms(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall-clock ms of one run, and the mean CPU ms (user + system) one run costs."""
    times = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=ENV, check=True)
        times.append((time.perf_counter() - started) * 1000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000 / runs
    return statistics.median(times), cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--module", action="store_true", help="call the module even if the console script has `guard`")
    args = parser.parse_args()
    prefix, how = guard_prefix(args.module)
    load = os.getloadavg()
    print(f"guard via: {how}; {args.runs} runs each; load average {load[0]:.1f} on {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    worst = worst_cpu = 0.0
    for name, command in COMMANDS.items():
        bare, bare_cpu = median_ms(command, args.runs)
        guarded, guarded_cpu = median_ms([*prefix, "--", *command], args.runs)
        overhead, overhead_cpu = guarded - bare, guarded_cpu - bare_cpu
        worst, worst_cpu = max(worst, overhead), max(worst_cpu, overhead_cpu)
        print(f"{name:>10}: bare {bare:6.1f} ms, guarded {guarded:6.1f} ms (median wall-clock), overhead "
              f"{overhead:6.1f} ms; CPU per start: bare {bare_cpu:5.1f} ms, guarded {guarded_cpu:5.1f} ms, "
              f"overhead {overhead_cpu:5.1f} ms")
    print(f"worst median overhead {worst:.1f} ms wall-clock, {worst_cpu:.1f} ms CPU (target < {TARGET_MS:.0f} ms): "
          f"{'ok' if worst < TARGET_MS else 'OVER TARGET'}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
