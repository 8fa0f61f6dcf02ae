"""Run probes concurrently under one overall deadline (threads, no signals): a check whose every endpoint is
black-holed takes about one probe timeout, not the sum. Identical probes run once."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TextIO

from mailpreflight.model import DepKind, ProbeResult, ProbeStatus

MAX_WORKERS = 64
Task = Callable[[], ProbeResult]


class ProbeRunner:
    """Keeps every result by (kind, target); asking twice for the same probe runs it once."""

    def __init__(self, deadline_s: float, progress: TextIO | None = None) -> None:
        self.deadline = time.monotonic() + deadline_s
        self.results: dict[tuple[str, str], ProbeResult] = {}
        self._pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="probe")
        self._progress = progress if progress is not None and progress.isatty() else None
        self._lock = threading.Lock()
        self._done = 0
        self._started = 0

    def run(self, tasks: Mapping[tuple[DepKind, str], Task]) -> dict[tuple[str, str], ProbeResult]:
        """Run the tasks not yet run, wait for them (or the deadline), and return every result so far."""
        pending: dict[Future[ProbeResult], tuple[str, str]] = {}
        for (kind, target), task in tasks.items():
            key = (kind.value, target)
            if key in self.results or key in pending.values():
                continue
            pending[self._pool.submit(task)] = key
            self._started += 1
        while pending:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            finished, _ = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                self.results[key] = _safe_result(future, key)
                self._done += 1
            self._report()
        for future, key in pending.items():  # past the deadline: say so instead of waiting
            future.cancel()
            self.results[key] = ProbeResult(DepKind(key[0]), key[1], ProbeStatus.FAIL, "deadline",
                                            "not finished before the overall --deadline", 0.0)
        return self.results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._progress is not None:
            self._progress.write("\r\033[K")
            self._progress.flush()

    def _report(self) -> None:
        if self._progress is None:
            return
        left = max(0.0, self.deadline - time.monotonic())
        self._progress.write(f"\rprobing: {self._done}/{self._started} done, deadline in {left:4.0f} s")
        self._progress.flush()


def _safe_result(future: Future[ProbeResult], key: tuple[str, str]) -> ProbeResult:
    try:
        return future.result()
    except Exception as exc:
        return ProbeResult(DepKind(key[0]), key[1], ProbeStatus.FAIL, "error", f"probe failed: {exc!r}", 0.0)


def progress_stream() -> TextIO | None:
    return sys.stderr if sys.stderr.isatty() else None
