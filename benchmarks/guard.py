#!/usr/bin/env python3
"""What `mailpreflight guard` adds to every service start: `true` and a command printing 100 lines, run N
times bare and through the guard (the console script when it knows the verb, else the module), median
wall-clock time each way, and the median overhead in ms (target: under 100 ms).

    .venv/bin/python benchmarks/guard.py [--runs N] [--module]

Runs with bytecode caching on (a first run writes the .pyc files, as `pip install` does): with
PYTHONDONTWRITEBYTECODE=1 every start would compile guard.py and cli.py again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".venv" / "bin" / "mailpreflight"
MODULE = [sys.executable, "-c", "import sys; from mailpreflight.fix.guard import main; sys.exit(main(sys.argv[1:]))"]
COMMANDS = {"true": ["true"], "100 lines": ["seq", "100"]}
TARGET_MS = 100.0
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def guard_prefix(module: bool) -> tuple[list[str], str]:
    """The console script if it has the `guard` verb, else the module called the way the verb calls it."""
    subprocess.run([*MODULE, "--", "true"], env=ENV, check=False)  # writes the .pyc files
    if SCRIPT.exists() and not module:
        probe = subprocess.run([str(SCRIPT), "guard", "--", "true"], capture_output=True, env=ENV, check=False)
        if probe.returncode == 0 and not probe.stderr:
            return [str(SCRIPT), "guard"], f"{SCRIPT.relative_to(REPO)} guard --"
    return MODULE, "python -c 'from mailpreflight.fix.guard import main ...' --"


def median_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=ENV, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--module", action="store_true", help="call the module even if the console script has `guard`")
    args = parser.parse_args()
    prefix, how = guard_prefix(args.module)
    print(f"guard via: {how}; {args.runs} runs each, median wall-clock")
    worst = 0.0
    for name, command in COMMANDS.items():
        bare = median_ms(command, args.runs)
        guarded = median_ms([*prefix, "--", *command], args.runs)
        overhead = guarded - bare
        worst = max(worst, overhead)
        print(f"{name:>10}: bare {bare:6.1f} ms, guarded {guarded:6.1f} ms, overhead {overhead:6.1f} ms")
    print(f"worst median overhead {worst:.1f} ms (target < {TARGET_MS:.0f} ms): "
          f"{'ok' if worst < TARGET_MS else 'OVER TARGET'}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
