#!/usr/bin/env python3
"""The fuzz campaign (issue 17 item 8): N generated hostile inputs, spread evenly over every target of
tests/fuzzing.py (unit files and drop-ins, the loader on generated roots, Exec lines, specifiers, unit names,
environment files, the sh -c reader, PAM, postfix, Dovecot, resolv.conf, the start-path analysis, mail logins,
tampered baselines for drift and restore, and the whole command line in-process), on worker processes.

Per target it prints examples, crashes, hangs, examples per second of CPU time (one core) and the slowest
example's CPU time; it writes every failing input to the crash directory (the first 3 of each distinct failure
per worker) and exits 1 when anything failed. Each example runs under a limit of --limit seconds of CPU time
(SIGPROF; ten times that in wall-clock time, SIGALRM; beyond is a hang) in a worker whose address space is
capped (--memory, RLIMIT_AS: a MemoryError is a crash); a worker that dies or stops making progress is replaced
and its example counted as a crash or a hang. Example i of a target is made from (seed, target, i) alone, so a
run can be repeated exactly.

    .venv/bin/python benchmarks/fuzz.py N [--workers 2] [--seed S] [--targets a,b] [--crashes DIR]
    .venv/bin/python benchmarks/fuzz.py --replay DIR/FILE.json ...     # run saved failures again
    tox -e fuzz -- N
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fuzzing

STATS = 5  # per (worker, target): examples, crashes, hangs, seconds, slowest


def _worker(lane: int, start: int, stride: int, total: int, names: list[str], seed: int, limit: float,
            memory: int, crashes: str, stats: Any, current: Any, beat: Any, beat_cpu: Any, peak: Any,
            queue: Any, under: str) -> None:
    """Run examples start, start + stride, ... < total; example g is example g // len(names) of target
    g % len(names). Counters go to shared memory (they survive a killed worker), failures to the queue."""
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory * 1024 * 1024, memory * 1024 * 1024))
    targets = [fuzzing.TARGETS[name] for name in names]
    saved: dict[str, int] = {}
    base = lane * len(names) * STATS
    with fuzzing.scratch(under) as workdir:
        for g in range(start, total, stride):
            current[lane], beat[lane], beat_cpu[lane] = g, time.monotonic(), time.process_time()
            slot = g % len(names)
            target, index = targets[slot], g // len(names)
            started = time.process_time()  # CPU time: the machine may be shared
            failure, record = fuzzing.run_one(target, fuzzing.example_rng(seed, target.name, index), workdir, limit)
            took = time.process_time() - started
            at = base + slot * STATS
            stats[at] += 1
            stats[at + 3] += took
            stats[at + 4] = max(stats[at + 4], took)
            if g % 256 < stride:
                peak[lane] = max(peak[lane], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            if failure is not None:
                stats[at + (2 if failure.kind == "hang" else 1)] += 1
                path = ""
                if saved.get(failure.signature, 0) < 3:
                    saved[failure.signature] = saved.get(failure.signature, 0) + 1
                    path = str(fuzzing.save(Path(crashes), failure, record, seed, index))
                queue.put((failure.signature, failure.error, path))
    peak[lane] = max(peak[lane], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    current[lane] = total


def _died(lane_g: int, names: list[str], seed: int, kind: str, why: str, crashes: str,
          under: str) -> tuple[str, str, str]:
    """A worker was killed or died at example g: the input is made again from its seed and saved."""
    target = fuzzing.TARGETS[names[lane_g % len(names)]]
    index = lane_g // len(names)
    failure = fuzzing.Failure(target.name, kind, "run", why, "worker process")
    record: dict[str, Any] = {}
    try:
        with fuzzing.scratch(under) as workdir:
            record = target.generate(fuzzing.example_rng(seed, target.name, index), workdir)
    except Exception as exc:  # only to save the input; the failure stands either way
        record = {"not generated": repr(exc)}
    return failure.signature, why, str(fuzzing.save(Path(crashes), failure, record, seed, index))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat), as its own time.process_time() counts it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stuck(pid: int, silent: float, cpu_at_beat: float, lane: int, quiet: dict[int, tuple[float, float]],
           watchdog: float, limit: float) -> str:
    """Why a worker that has been on one example for `silent` seconds is stuck beyond its own limits, or "": it
    used far more CPU than the per-example limit allows (signals not acted on), or no CPU at all for a whole
    watchdog period (blocked where SIGALRM does not reach). Only starved of CPU by other processes: not stuck."""
    if silent <= watchdog:
        quiet.pop(lane, None)
        return ""
    now, cpu = time.monotonic(), _cpu_seconds(pid)
    if cpu - cpu_at_beat > 20 * limit:
        return f"{cpu - cpu_at_beat:.0f} s of CPU on one example"
    since, cpu_then = quiet.setdefault(lane, (now, cpu))
    if now - since > watchdog and cpu - cpu_then < 0.01:
        return f"no CPU time used for {now - since:.0f} s"
    if now - since > watchdog:
        quiet[lane] = (now, cpu)
    return ""


def campaign(args: argparse.Namespace) -> int:
    names = args.targets.split(",") if args.targets else list(fuzzing.TARGETS)
    unknown = [n for n in names if n not in fuzzing.TARGETS]
    if unknown:
        print(f"fuzz.py: unknown target {unknown[0]} (targets: {', '.join(fuzzing.TARGETS)})", file=sys.stderr)
        return 2
    workers = max(1, args.workers)
    context = multiprocessing.get_context("fork")
    stats = context.Array("d", workers * len(names) * STATS, lock=False)
    current = context.Array("q", workers, lock=False)
    beat = context.Array("d", workers, lock=False)
    peak = context.Array("d", workers, lock=False)  # MiB, the largest resident set of each worker
    queue = context.Queue()
    beat_cpu = context.Array("d", workers, lock=False)  # the worker's CPU time at its last example's start
    watchdog = max(60.0, 30 * args.limit)  # beyond the wall-clock limit of an example (10 x --limit)
    quiet: dict[int, tuple[float, float]] = {}  # lane -> (when, CPU time) it was first seen silent too long

    def start(lane: int, first: int) -> Any:
        beat[lane], beat_cpu[lane] = time.monotonic(), 0.0
        quiet.pop(lane, None)
        process = context.Process(target=_worker, daemon=True, args=(
            lane, first, workers, args.n, names, args.seed, args.limit, args.memory, args.crashes, stats, current,
            beat, beat_cpu, peak, queue, args.scratch))
        process.start()
        return process

    began = time.monotonic()
    processes = {lane: start(lane, lane) for lane in range(workers)}
    failures: dict[str, list[Any]] = {}  # signature -> [count, error, saved files]

    def note(signature: str, error: str, path: str) -> None:
        entry = failures.setdefault(signature, [0, error, []])
        entry[0] += 1
        if path:
            entry[2].append(path)

    last_report = began
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID: stop, and still report what was done
    interrupted = False
    try:
        while processes:
            while not queue.empty():
                note(*queue.get())
            for lane, process in list(processes.items()):
                process.join(timeout=0.2)
                g = current[lane]
                if process.exitcode == 0 or g >= args.n:
                    del processes[lane]
                    continue
                why = _stuck(process.pid, time.monotonic() - beat[lane], beat_cpu[lane], lane, quiet, watchdog,
                             args.limit) if process.exitcode is None else ""
                if process.exitcode is None and not why:
                    continue
                slot = lane * len(names) * STATS + (g % len(names)) * STATS
                if process.exitcode is None:  # alive but silent: beyond the SIGALRM limit, e.g. stuck in C code
                    process.kill()
                    process.join()
                    stats[slot + 2] += 1
                    died = _died(g, names, args.seed, "hang", f"{why} (killed)", args.crashes, args.scratch)
                else:
                    stats[slot + 1] += 1
                    died = _died(g, names, args.seed, "crash", f"worker died (exit {process.exitcode})", args.crashes,
                             args.scratch)
                stats[slot] += 1
                note(*died)
                processes[lane] = start(lane, g + workers)
            if time.monotonic() - last_report > args.progress:
                last_report = time.monotonic()
                done = sum(stats[i] for i in range(0, len(stats), STATS))
                bad = sum(stats[i + 1] + stats[i + 2] for i in range(0, len(stats), STATS))
                rate = done / (last_report - began)
                print(f"  {int(done):>9,} / {args.n:,} inputs, {int(bad)} failing, {rate:,.0f}/s", file=sys.stderr,
                      flush=True)
    except KeyboardInterrupt:
        interrupted = True
        for process in processes.values():
            process.kill()
            process.join()
        print("fuzz.py: interrupted; the figures below are of the inputs done so far", file=sys.stderr)
    while not queue.empty():
        note(*queue.get())
    wall = time.monotonic() - began
    status = report(args, names, workers, stats, failures, wall, max(peak))
    return 130 if interrupted else status


def report(args: argparse.Namespace, names: list[str], workers: int, stats: Any, failures: dict[str, list[Any]],
           wall: float, peak: float) -> int:
    rows = []
    for slot, name in enumerate(names):
        cells = [[stats[(lane * len(names) + slot) * STATS + k] for k in range(STATS)] for lane in range(workers)]
        examples, crashes, hangs, seconds = (sum(c[k] for c in cells) for k in range(4))
        slowest = max(c[4] for c in cells)
        rows.append({"target": name, "examples": int(examples), "crashes": int(crashes), "hangs": int(hangs),
                     "per_second": examples / seconds if seconds else 0.0, "slowest_seconds": slowest,
                     "entry_points": fuzzing.TARGETS[name].entry_points})
    total = {k: sum(r[k] for r in rows) for k in ("examples", "crashes", "hangs")}
    print(f"{'target':18} {'examples':>10} {'crashes':>8} {'hangs':>6} {'examples/s':>11} {'slowest':>9} (CPU)")
    for r in rows:
        print(f"{r['target']:18} {r['examples']:>10,} {r['crashes']:>8} {r['hangs']:>6} {r['per_second']:>11,.0f} "
              f"{r['slowest_seconds']:>8.2f}s")
    print(f"{'total':18} {total['examples']:>10,} {total['crashes']:>8} {total['hangs']:>6} "
          f"{total['examples'] / wall:>11,.0f}  (wall clock, {workers} workers)")
    print(f"wall time {wall:,.0f} s; seed {args.seed}; limit {args.limit:g} s of CPU per example; RLIMIT_AS "
          f"{args.memory} MiB per worker; peak RSS of a worker {peak:.0f} MiB")
    for signature, (count, error, paths) in sorted(failures.items(), key=lambda item: -item[1][0]):
        print(f"FAIL {count} x {signature}: {error[:200]}")
        for path in paths[:3]:
            print(f"     input: {path}  (replay: python benchmarks/fuzz.py --replay {path})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "inputs": total["examples"], "crashes": total["crashes"], "hangs": total["hangs"], "wall_seconds": wall,
            "workers": workers, "seed": args.seed, "limit_seconds": args.limit, "rlimit_as_mib": args.memory,
            "peak_rss_mib": peak, "targets": rows,
            "failures": [{"signature": s, "count": c, "error": e, "inputs": p} for s, (c, e, p) in failures.items()],
        }, indent=1) + "\n")
    return 1 if total["crashes"] or total["hangs"] else 0


def replay(paths: list[str], limit: float) -> int:
    still = 0
    with fuzzing.scratch() as workdir:
        for path in paths:
            failure = fuzzing.replay(Path(path), workdir, limit)
            if failure is None:
                print(f"{path}: passes now")
            else:
                still += 1
                print(f"{path}: {failure.signature}\n{failure.trace}")
    return 1 if still else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=10_000, help="generated inputs in all (default 10,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", help=f"comma-separated, of: {', '.join(fuzzing.TARGETS)}")
    parser.add_argument("--limit", type=float, default=fuzzing.HANG_SECONDS, help="CPU seconds per example (default 2)")
    parser.add_argument("--memory", type=int, default=1024, help="RLIMIT_AS per worker in MiB (default 1024)")
    parser.add_argument("--crashes", default="fuzz-crashes", help="where failing inputs go (default ./fuzz-crashes)")
    parser.add_argument("--json", help="also write the summary there as JSON")
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines on stderr")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved failing inputs again")
    args = parser.parse_args()
    if args.replay:
        return replay(args.replay, args.limit)
    with fuzzing.scratch() as under:  # the workers' directories are in it: a killed worker's goes too
        args.scratch = str(under)
        return campaign(args)


if __name__ == "__main__":
    sys.exit(main())
