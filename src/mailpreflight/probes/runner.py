"""Run probes concurrently under one overall deadline (threads, no signals): a check whose every endpoint is
black-holed takes about one probe timeout, not the sum. Identical probes run once.

Probes bound themselves (probes/budget.py). The runner is the backstop: a probe still running `GRACE`
seconds past its own timeout — stuck where no socket timeout reaches, like getaddrinfo — gets a `deadline`
result naming what it was doing, and is abandoned. The worker threads are daemons, and nothing joins them at
exit (ThreadPoolExecutor's workers are joined when the interpreter exits): once the report is out, the
process ends, whatever a probe thread is still blocked in.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TextIO

from mailpreflight.model import DepKind, ProbeError, ProbeResult, ProbeStatus
from mailpreflight.probes.budget import Stage, set_current_stage

MAX_WORKERS = 64
GRACE = 0.3  # seconds past a probe's own timeout before the runner gives up on it
Task = Callable[[], ProbeResult]
_Work = tuple[Future[ProbeResult], Task, Stage]


def block_signals() -> None:
    """Called first in every thread we start: signals go to the main thread only. A process-directed signal is
    delivered to any thread that does not block it; one taken by a probe thread would not interrupt the main
    thread's wait, and a signal the main thread blocks (--guest-firewall's clean-up) would get through."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


class DaemonPool:
    """At most `max_workers` daemon threads taking tasks from one queue; `close` never waits for them."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, task: Task, stage: Stage) -> Future[ProbeResult]:
        future: Future[ProbeResult] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the probe pool is closed")
            self._queue.put((future, task, stage))
            if self._idle > 0:
                self._idle -= 1  # that worker takes it
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        block_signals()
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, task, stage = item
            if future.set_running_or_notify_cancel():
                stage.started = time.monotonic()
                set_current_stage(stage)
                try:
                    future.set_result(task())
                except BaseException as exc:  # a probe must not kill its worker; the runner reports it
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                finally:
                    set_current_stage(None)
            with self._lock:
                if self._closed:
                    return
                self._idle += 1

    def close(self) -> None:
        """Idle workers end; running ones are abandoned (daemons: they cannot keep the process alive)."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)


class ProbeRunner:
    """Keeps every result by (kind, target); asking twice for the same probe runs it once.

    `probe_timeout`: each probe's own bound; a probe running longer than that (plus GRACE) is given up."""

    def __init__(self, deadline_s: float, progress: TextIO | None = None, probe_timeout: float | None = None) -> None:
        self.deadline = time.monotonic() + deadline_s
        self.probe_timeout = probe_timeout
        self.results: dict[tuple[str, str], ProbeResult] = {}
        self._pool = DaemonPool(MAX_WORKERS, "probe")
        self._progress = progress if progress is not None and progress.isatty() else None
        self._done = 0
        self._started = 0
        self._pending: dict[Future[ProbeResult], tuple[tuple[str, str], Stage]] = {}
        self._asked: set[tuple[str, str]] = set()  # started and not finished yet

    def start(self, tasks: Mapping[tuple[DepKind, str], Task]) -> None:
        """Start the tasks not yet run or running, without waiting (the next run() waits for them too): `check`
        starts a unit's probes as soon as that unit is analysed, while the next ones are."""
        for (kind, target), task in tasks.items():
            key = (kind.value, target)
            if key in self.results or key in self._asked:
                continue
            if time.monotonic() >= self.deadline:  # nothing new starts after the deadline
                self.results[key] = _past_deadline(key)
                continue
            stage = Stage()
            self._pending[self._pool.submit(task, stage)] = (key, stage)
            self._asked.add(key)
            self._started += 1

    def run(self, tasks: Mapping[tuple[DepKind, str], Task]) -> dict[tuple[str, str], ProbeResult]:
        """Run the tasks not yet run, wait for them and for those start() began (or the deadline), and return
        every result so far."""
        self.start(tasks)
        pending, self._pending, self._asked = self._pending, {}, set()
        while pending:
            now = time.monotonic()
            if now >= self.deadline:
                break
            for future, (key, stage) in list(pending.items()):
                if self._overdue(stage, now):
                    del pending[future]
                    self.results[key] = self._given_up(key, stage, now)
                    self._done += 1
            if not pending:
                break
            finished, _ = wait(pending, timeout=self._next_wake(pending, now), return_when=FIRST_COMPLETED)
            for future in finished:
                key, _ = pending.pop(future)
                self.results[key] = _safe_result(future, key)
                self._done += 1
            self._report()
        for future, (key, _) in pending.items():  # past the deadline: say so instead of waiting
            future.cancel()
            self.results[key] = _past_deadline(key)
        return self.results

    def close(self) -> None:
        self._pool.close()
        if self._progress is not None:
            self._progress.write("\r\033[K")
            self._progress.flush()

    def _overdue(self, stage: Stage, now: float) -> bool:
        return (self.probe_timeout is not None and stage.started is not None
                and now >= stage.started + self.probe_timeout + GRACE)

    def _next_wake(self, pending: Mapping[Future[ProbeResult], tuple[tuple[str, str], Stage]], now: float) -> float:
        """Until the overall deadline, or the first running probe's own bound, whichever comes first."""
        wake = self.deadline
        if self.probe_timeout is not None:
            starts = [stage.started for _, stage in pending.values() if stage.started is not None]
            if len(starts) < len(pending):
                wake = min(wake, now + 0.1)  # a queued probe starts soon: look again then
            if starts:
                wake = min(wake, min(starts) + self.probe_timeout + GRACE)
        return max(wake - now, 0.0)

    def _given_up(self, key: tuple[str, str], stage: Stage, now: float) -> ProbeResult:
        started = stage.started if stage.started is not None else now
        return ProbeResult(DepKind(key[0]), key[1], ProbeStatus.FAIL, ProbeError.DEADLINE,
                           f"no result after {now - started:.1f} s (--timeout {self.probe_timeout:g} s), abandoned "
                           f"while {stage.text}", round(now - started, 3))

    def _report(self) -> None:
        if self._progress is None:
            return
        left = max(0.0, self.deadline - time.monotonic())
        self._progress.write(f"\rprobing: {self._done}/{self._started} done, deadline in {left:4.0f} s")
        self._progress.flush()


def _past_deadline(key: tuple[str, str]) -> ProbeResult:
    return ProbeResult(DepKind(key[0]), key[1], ProbeStatus.FAIL, ProbeError.DEADLINE,
                       "not finished before the overall --deadline", 0.0)


def _safe_result(future: Future[ProbeResult], key: tuple[str, str]) -> ProbeResult:
    try:
        return future.result()
    except Exception as exc:
        return ProbeResult(DepKind(key[0]), key[1], ProbeStatus.FAIL, ProbeError.ERROR, f"probe failed: {exc!r}",
                           0.0)


def progress_stream() -> TextIO | None:
    return sys.stderr if sys.stderr.isatty() else None
