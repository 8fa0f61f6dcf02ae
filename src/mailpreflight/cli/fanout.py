"""`deps` over a whole tree, on every core when that pays (docs/design.md, "Performance").

Units are loaded, analysed and rendered in worker processes forked from this one (one per CPU that other work
leaves idle now, by /proc/stat), a slice of names each: they inherit the search-path index the parent has
built and render their units themselves, so what comes back is text, not objects. The parent writes the pieces
in name order as they come, with at most two slices per worker in flight, so memory stays flat whatever the
number of units. Below PARALLEL_MIN_UNITS, or with fewer than two idle CPUs, it all runs here, one unit at a
time: the same bytes either way.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.pool import AsyncResult

from mailpreflight.access.ledger import Refusal
from mailpreflight.deps.analyze import iter_tree
from mailpreflight.deps.view import unit_deps_view
from mailpreflight.model import Status, UnitDepsView
from mailpreflight.units.loader import UnitLoader

PARALLEL_MIN_UNITS = 1000  # below this, forking and collecting costs more than the second core gives
SLICE = 250  # names per task, at most
WORKERS: int | None = None  # None: one per idle CPU (tests and benchmarks set it)
Render = Callable[[UnitDepsView], str]
_Piece = tuple[Status, str]

_job: tuple[UnitLoader, str | None, Render, int] | None = None  # set in the parent just before the workers fork
_budget_shared = False  # in a worker: its share of the run's read budget taken


def rendered_units(loader: UnitLoader, sa_version: str | None, render: Render,
                   min_units: int | None = None) -> Iterator[_Piece]:
    """(status, rendered text) of every service of the tree with a network dependency, in name order; in worker
    processes from `min_units` units on (default PARALLEL_MIN_UNITS)."""
    cpus = _cpus() if WORKERS is None else set()
    before = _cpu_times(cpus) if cpus else None  # idle CPUs are measured while the index is built (_usable_cpus)
    names = loader.service_names()  # builds the index and the name map here, before any fork
    workers = WORKERS if WORKERS is not None else _usable_cpus(cpus, before, _cpu_times(cpus))
    threshold = PARALLEL_MIN_UNITS if min_units is None else min_units
    with loader.fs.holding_root():  # one descriptor of the root for the run's reads (the workers inherit it)
        if workers < 2 or len(names) < threshold or "fork" not in multiprocessing.get_all_start_methods():
            yield from _render(loader, names, sa_version, render)
            return
        yield from _parallel(loader, names, sa_version, render, workers)


def _render(loader: UnitLoader, names: Sequence[str], sa_version: str | None, render: Render) -> Iterator[_Piece]:
    for result in iter_tree(loader, sa_version, names):
        view = unit_deps_view(result)
        yield view.status, render(view)


def _work(names: Sequence[str]) -> tuple[list[_Piece], tuple[Refusal, ...]]:
    """In a worker: the slice rendered, and the guest files the read gate refused meanwhile (the parent reports
    them with its own at the end of the run)."""
    global _budget_shared
    assert _job is not None, "a worker runs only in a process forked by _parallel()"
    loader, sa_version, render, workers = _job
    if not _budget_shared:
        loader.fs.share_budget(workers)
        _budget_shared = True
    before = len(loader.fs.refusals)
    pieces = list(_render(loader, names, sa_version, render))
    return pieces, loader.fs.refusals[before:]


def _parallel(loader: UnitLoader, names: Sequence[str], sa_version: str | None, render: Render,
              workers: int) -> Iterator[_Piece]:
    global _job
    slices = _slices(names, workers)
    for stream in (sys.stdout, sys.stderr):  # a worker flushes what it inherited when it ends: nothing, then
        stream.flush()
    _job = (loader, sa_version, render, workers)
    gc.freeze()  # what exists now is out of the workers' collections: they would walk (and so copy) all of it, for
    try:  # nothing (the index lives as long as they do); 5 % of their CPU time on the 10,000-unit root
        pool = multiprocessing.get_context("fork").Pool(workers)
    finally:
        gc.unfreeze()  # here, after the fork: this process collects as before
    _job = None  # the workers have their copy; this process keeps no reference
    pending: deque[AsyncResult[tuple[list[_Piece], tuple[Refusal, ...]]]] = deque()

    def collect() -> list[_Piece]:
        pieces, refused = pending.popleft().get()
        loader.fs.note_refused(refused)
        return pieces

    try:
        for part in slices:
            pending.append(pool.apply_async(_work, (part,)))
            if len(pending) >= 2 * workers:
                yield from collect()
        while pending:
            yield from collect()
        pool.close()
    finally:
        pool.terminate()  # after close(): the workers have finished; after an error: stop them now
        pool.join()


def _slices(names: Sequence[str], workers: int) -> list[Sequence[str]]:
    """Slices of SLICE names, smaller towards the end (a quarter of what is left per worker, at least a tenth of
    SLICE): the workers finish together, not one waiting for the other's last long slice."""
    slices = []
    start = 0
    smallest = max(1, SLICE // 10)
    while start < len(names):
        size = max(smallest, min(SLICE, (len(names) - start) // (4 * workers)))
        slices.append(names[start:start + size])
        start += size
    return slices


def _cpus() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(idle, all) clock ticks of these CPUs since boot (/proc/stat); None where it cannot be read."""
    try:
        with open("/proc/stat", "rb") as stat_file:
            lines = stat_file.read().splitlines()
    except OSError:
        return None
    idle = total = 0
    for line in lines:
        fields = line.split()
        if not fields or not fields[0].startswith(b"cpu") or not fields[0][3:].isdigit():
            continue
        if int(fields[0][3:]) in cpus:
            ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
            idle += ticks[3] + ticks[4]
            total += sum(ticks)
    return (idle, total) if total else None


def _usable_cpus(cpus: set[int], before: tuple[int, int] | None, after: tuple[int, int] | None) -> int:
    """CPUs this process may use that are not busy with other work (like `make -l`): a second worker on a CPU
    another program keeps busy only competes with it, and the run takes longer than in one process.

    Busy is measured while this process built the index (`before` and `after`, /proc/stat: this process kept one
    CPU busy, the others' idle time is what is free now), not by the load average: that remembers the last
    minute, and a second run right after the first would take the first's workers for other work and use one
    CPU. Without /proc/stat, or over too short a time to tell (under two clock ticks a CPU), the load average."""
    count = len(cpus)
    if before is not None and after is not None and after[1] - before[1] >= 2 * count:
        idle = count * (after[0] - before[0]) / (after[1] - before[1])  # CPUs idle, on average, meanwhile
        return max(1, min(count, int(idle + 1.5)))  # them, and the one this process kept busy
    try:
        busy = os.getloadavg()[0] - 1.0  # this process is running: it counts in the load already
    except OSError:
        busy = 0.0
    return max(1, min(count, int(count - max(busy, 0.0) + 0.5)))
