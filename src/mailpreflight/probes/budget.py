"""One probe's time budget: `--timeout` is the total for everything the probe does (name resolution,
connect, every read, every redirect hop, a DNS retry over TCP), not a per-socket-read limit that a server
answering one byte every 0.8 s can stretch for ever.

Socket timeouts are set from what is left, and a watchdog (a daemon timer) shuts the probe's sockets down at
the deadline, so a read that keeps receiving a trickle still ends then. What the probe was doing is kept
(`note`), both for its own result and for the runner, which abandons a probe stuck where no socket timeout
reaches (the system resolver, getaddrinfo) and reports that stage as its evidence.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

MIN_SOCKET_TIMEOUT = 0.01  # a socket timeout of 0 would make it non-blocking


class Stage:
    """What a running probe is doing; shared between the probe's thread and the runner."""

    def __init__(self) -> None:
        self.text = "not started"
        self.started: float | None = None


_current = threading.local()


def current_stage() -> Stage | None:
    """The stage slot the runner gave this thread, if a runner runs it."""
    stage = getattr(_current, "stage", None)
    return stage if isinstance(stage, Stage) else None


def set_current_stage(stage: Stage | None) -> None:
    _current.stage = stage


class Budget:
    """Deadline of one probe. Thread-safe: the watchdog expires it from its own thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.stage = "starting"
        self._slot = current_stage()
        self._lock = threading.Lock()
        self._expired = False
        self._sockets: list[socket.socket] = []

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def socket_timeout(self) -> float:
        """What a single blocking socket call may wait now (never 0, which would mean non-blocking)."""
        return max(self.remaining(), MIN_SOCKET_TIMEOUT)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        return self._expired or time.monotonic() >= self.deadline

    def note(self, stage: str) -> None:
        """Record what the probe does now (it becomes the evidence if the budget runs out)."""
        self.stage = stage
        if self._slot is not None:
            self._slot.text = stage

    def watch_socket(self, sock: socket.socket) -> None:
        """Shut `sock` down when the budget runs out. A duplicate descriptor is kept, so this still works after
        the socket object was detached (TLS wrapping) and can never hit a descriptor number reused since."""
        duplicate = sock.dup()
        with self._lock:
            if not self._expired:
                self._sockets.append(duplicate)
                return
        _shutdown(duplicate)  # already out of time: the caller's next read fails at once
        duplicate.close()

    def expire(self) -> None:
        """The deadline: every watched socket is shut down, so blocked reads return at once."""
        with self._lock:  # held while shutting down: release() cannot close one of them meanwhile
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def release(self) -> None:
        """Close the duplicates (the probe is over)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def gave_up(self) -> str:
        """The evidence of a probe that ran out of time: how long, and what it had seen by then."""
        return (f"gave up after {self.elapsed():.1f} s (--timeout {self.seconds:g} s is the total per probe): "
                f"{self.stage}")

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[Budget]:
        """While inside: the budget expires on time even if the probe's thread is blocked in a read."""
        done = threading.Event()

        def watch() -> None:
            from mailpreflight.probes.runner import block_signals

            block_signals()  # the watchdog never takes a signal meant for the main thread
            if not done.wait(self.remaining()):
                self.expire()

        threading.Thread(target=watch, name="probe-watchdog", daemon=True).start()  # never keeps the process alive
        try:
            yield self
        finally:
            done.set()
            self.release()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected (yet, or any more): nothing blocks on it
        sock.shutdown(socket.SHUT_RDWR)
