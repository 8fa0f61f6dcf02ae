"""`deps` over a whole tree, on every core when that pays (docs/design.md, "Performance").

Units are loaded, analysed and rendered in worker processes forked from this one (one per CPU that other work
leaves idle now, by /proc/stat); they inherit the search-path index the parent has built. The names are cut into
slices; a worker takes the next slice nobody has taken, renders it, and writes it itself, straight to the
command's output, when the slice before it is written: the run's few shared facts (the next slice to take, who
took each, how many slices and units are written) lie in a shared mapping behind a lock, and the writer of a slice
wakes the worker of the next. A worker renders ahead by at most PENDING slices while it waits. Nothing of the
output passes through the parent: it writes the document's head and tail, watches the workers, and gets from each
only its worst state and what the read gate refused. A worker that fails or dies ends the run as an internal error
(exit 3), never as a hang. Below PARALLEL_MIN_UNITS, or with fewer than two idle CPUs, it all runs here, one unit
at a time: the same bytes either way.
"""

from __future__ import annotations

import contextlib
import gc
import io
import mmap
import os
import pickle
import select
import signal
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailpreflight.access.ledger import Refusal
from mailpreflight.cli.env import Environment
from mailpreflight.deps.analyze import iter_tree
from mailpreflight.deps.view import unit_deps_view
from mailpreflight.model import Status, UnitDepsView
from mailpreflight.render.deps import Framing, framed
from mailpreflight.units.loader import UnitLoader

PARALLEL_MIN_UNITS = 1000  # below this, forking costs more than the second core gives
SLICE = 250  # names per slice, at most
PENDING = 2  # slices a worker holds rendered while it waits for the one before to be written
WORKERS: int | None = None  # None: one per idle CPU (tests and benchmarks set it)
MAX_WORKERS = 255  # the shared mapping names the worker of a slice in a byte
DRAW_BYTES = 1 << 20  # a worker takes up to 1 MiB and 10,000 directory entries of the run's read budget ahead
DRAW_ENTRIES = 10_000
Render = Callable[[UnitDepsView], str]
_Piece = tuple[Status, str]


def write_tree(loader: UnitLoader, sa_version: str | None, render: Render, framing: Framing, env: Environment,
               min_units: int | None = None) -> Status:
    """Write the document of every service of the tree with a network dependency, in name order, to env's
    stdout; in worker processes from `min_units` units on (default PARALLEL_MIN_UNITS). The worst state."""
    cpus = _cpus() if WORKERS is None else set()
    before = _cpu_times(cpus) if cpus else None  # idle CPUs are measured while the index is built (_usable_cpus)
    names = loader.service_names()  # builds the index and the name map here, before any fork
    workers = WORKERS if WORKERS is not None else _usable_cpus(cpus, before, _cpu_times(cpus))
    threshold = PARALLEL_MIN_UNITS if min_units is None else min_units
    with loader.fs.holding_root():  # one descriptor of the root for the run's reads (the workers inherit it)
        if workers < 2 or len(names) < max(threshold, 1) or not hasattr(os, "fork") or not _pieces_join(env):
            statuses: list[Status] = []
            for chunk in framing_of(_render(loader, names, sa_version, render), framing, statuses):
                env.out(chunk, end="", painted=True)  # the units' text is escaped already; the framing is plain
            return Status.worst(statuses)
        return _parallel(loader, names, sa_version, render, framing, env, workers)


def framing_of(pieces: Iterable[_Piece], framing: Framing, statuses: list[Status]) -> Iterator[str]:
    """The document of these pieces, chunk by chunk (render/deps.py `framed`); their states are appended to
    `statuses` as they pass."""

    def texts() -> Iterator[str]:
        for status, text in pieces:
            statuses.append(status)
            yield text

    return framed(texts(), framing)


def _render(loader: UnitLoader, names: Sequence[str], sa_version: str | None, render: Render) -> Iterator[_Piece]:
    for result in iter_tree(loader, sa_version, names):
        view = unit_deps_view(result)
        yield view.status, render(view)


@dataclass(frozen=True)
class _Job:
    """What every worker is given (inherited at the fork, nothing is sent)."""

    loader: UnitLoader
    sa_version: str | None
    render: Render
    framing: Framing
    slices: list[Sequence[str]]
    workers: int
    output: int  # the descriptor the units are written to
    encoding: str
    errors: str


@dataclass(frozen=True)
class _Result:
    """What a worker sends back when it ends: its worst state, how many units it wrote, what the read gate refused
    (by slice: the parent reports it in name order), or what went wrong and where."""

    worst: Status = Status.OK
    written: int = 0
    refused: tuple[tuple[int, tuple[Refusal, ...]], ...] = ()
    failure: BaseException | None = None
    where: str = ""  # file:line of the failure, in the worker
    trace: str = ""


def _parallel(loader: UnitLoader, names: Sequence[str], sa_version: str | None, render: Render, framing: Framing,
              env: Environment, workers: int) -> Status:
    slices = _slices(names, workers)
    env.out(framing.head, end="", painted=True)
    for stream in (env.stdout, env.stderr):  # before the fork: a worker never writes what it inherited buffered
        stream.flush()
    output = _descriptor(env.stdout)
    with contextlib.ExitStack() as stack:
        spool = None
        if output is None:  # a stream without a descriptor (tests): the workers write to a file, copied here after
            import tempfile

            spool = stack.enter_context(tempfile.TemporaryFile())
            output = spool.fileno()
        job = _Job(loader, sa_version, render, framing, slices, min(workers, len(slices), MAX_WORKERS), output,
                   getattr(env.stdout, "encoding", None) or "utf-8", getattr(env.stdout, "errors", None) or "strict")
        results = _run_workers(job)
        if spool is not None:
            _copy_spool(spool, env.stdout, job.encoding, job.errors)
    for _, refused in sorted((pair for result in results for pair in result.refused), key=lambda pair: pair[0]):
        loader.fs.note_refused(refused)
    written = sum(result.written for result in results)
    env.out(framing.tail if written else framing.empty, end="", painted=True)
    return Status.worst(result.worst for result in results)


class _Board:
    """What the workers share, made before the fork: an anonymous shared mapping (the next slice to take, the
    slices and units written so far, and who took each slice), a pipe holding one byte that is its lock, and a
    pipe per worker through which it is woken when the slice before the one it waits with may have been written."""

    _COUNTERS = struct.Struct("<qqqqq")  # next slice to take, slices written, units written, read budget left
    # (bytes, directory entries: RootFS's when the workers were forked; they draw from it as they read)

    def __init__(self, slices: int, workers: int, budget: tuple[int, int]) -> None:
        self.slices = slices
        self.memory = mmap.mmap(-1, self._COUNTERS.size + slices)  # then a byte a slice: its worker + 1 (0: none)
        self._COUNTERS.pack_into(self.memory, 0, 0, 0, 0, *budget)
        self.lock = os.pipe()
        os.write(self.lock[1], b"\0")
        self.wake = [os.pipe() for _ in range(workers)]
        for _, writer in self.wake:
            os.set_blocking(writer, False)  # a full pipe already holds a wake-up

    def fds(self) -> list[int]:
        return [*self.lock, *(fd for pair in self.wake for fd in pair)]

    def close(self) -> None:
        for fd in self.fds():
            os.close(fd)
        self.memory.close()

    def keep_for(self, worker: int) -> None:
        """In a worker: the ends of the pipes it does not use closed (the others' wake-ups it reads, and its own
        it writes, not): when every other worker has ended, its wait() sees the end of its pipe."""
        for index, (reader, writer) in enumerate(self.wake):
            os.close(writer if index == worker else reader)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[int]]:
        """The counters, changed in place and stored back when the block ends, with the lock held meanwhile."""
        if os.read(self.lock[0], 1) != b"\0":
            raise RuntimeError("the lock of the deps workers is gone")
        try:
            counters = list(self._COUNTERS.unpack_from(self.memory, 0))
            yield counters
            self._COUNTERS.pack_into(self.memory, 0, *counters)
        finally:
            os.write(self.lock[1], b"\0")

    def take(self, worker: int) -> int | None:
        """The next slice nobody has taken, now this worker's; None when all are taken."""
        with self._locked() as counters:
            taken = counters[0]
            if taken >= self.slices:
                return None
            counters[0] = taken + 1
            self.memory[self._COUNTERS.size + taken] = worker + 1
            return taken

    def turn(self, number: int) -> int | None:
        """The units written before slice `number` when it is its turn (the slices before it are written), else
        None."""
        with self._locked() as counters:
            return counters[2] if counters[1] == number else None

    def draw(self, nbytes: int, entries: int) -> tuple[int, int]:
        """Read budget for a worker (RootFS.draw_budget): what it wants and, for fewer trips here, up to
        DRAW_BYTES/DRAW_ENTRIES more but never more than an eighth of what is left (no worker holds much that
        another may need); at most what the run has left."""
        with self._locked() as counters:
            granted = (_grant(counters[3], nbytes, DRAW_BYTES), _grant(counters[4], entries, DRAW_ENTRIES))
            counters[3] -= granted[0]
            counters[4] -= granted[1]
            return granted

    def written(self, number: int, units: int, worker: int) -> None:
        """Slice `number` is written, `units` units in all now: the worker that took the next one is woken."""
        with self._locked() as counters:
            counters[1], counters[2] = number + 1, units
            after = number + 1
            owner = self.memory[self._COUNTERS.size + after] - 1 if after < self.slices else -1
        if owner >= 0 and owner != worker:
            with contextlib.suppress(BlockingIOError):  # a full pipe holds a wake-up already
                os.write(self.wake[owner][1], b"\1")

    def wait(self, worker: int) -> None:
        """Until another worker wakes this one (then it looks again whether its turn has come)."""
        if not os.read(self.wake[worker][0], 1):
            raise RuntimeError("the other deps workers ended while this one waited for its turn")


_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}  # blocked while a worker is forked, and while cleaning up


def _grant(left: int, wanted: int, ahead: int) -> int:
    return min(left, wanted + min(ahead, left // 8)) if wanted > 0 else 0


def _run_workers(job: _Job) -> list[_Result]:
    """Fork the workers and wait for every worker's result; on a failure, or when this process is interrupted,
    the workers are killed (they may be waiting for a turn that never comes). The signals that interrupt a run
    are blocked from just before each fork until the child is inside _worker_main's `try` (it never returns into
    this code) and the parent has recorded it (it is always killed and reaped)."""
    board: _Board | None = None
    pids: list[int] = []
    reaped: set[int] = set()
    finished = False
    channels: dict[int, int] = {}  # read end of a worker's result pipe -> its index
    parent = os.getpid()
    try:
        board = _Board(len(job.slices), job.workers, job.loader.fs.budget())
        gc.freeze()  # what exists now is out of the workers' collections (Python's advice for fork without exec: a
        try:  # full collection would walk, and so copy, the index); measured: 0.3 % of the workers' instructions
            for index in range(job.workers):
                reader, writer = os.pipe()
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
                try:
                    pid = os.fork()
                    if pid == 0:  # the worker: it never returns
                        _worker_main(job, index, board, reader, writer, parent, blocked)
                    pids.append(pid)
                    channels[reader] = index
                except BaseException:
                    os.close(reader)
                    raise
                finally:
                    os.close(writer)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        finally:
            gc.unfreeze()  # here, after the forks: this process collects as before
        board.close()
        board = None
        results = _gather(channels, pids, reaped)
        finished = True
        return [results[index] for index in range(job.workers)]
    finally:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # a second Ctrl-C does not leave any behind
        try:
            living = [pid for pid in pids if pid not in reaped]  # not reaped: its number is no other process's
            if not finished:
                for pid in living:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for pid in living:  # once they have sent their results, they end by themselves: they are only reaped
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            for fd in channels:
                os.close(fd)
            if board is not None:
                board.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _gather(channels: dict[int, int], pids: list[int], reaped: set[int]) -> dict[int, _Result]:
    """Each worker's result, read as they come; the first failure is raised (a worker's own exception, with its
    traceback as a note and its place in `mailpreflight_where`), as is a worker that ended without a result."""
    received: dict[int, bytearray] = {reader: bytearray() for reader in channels}
    results: dict[int, _Result] = {}
    poller = select.poll()
    for reader in channels:
        poller.register(reader, select.POLLIN)
    while len(results) < len(channels):
        for reader, _ in poller.poll():
            chunk = os.read(reader, 1 << 16)
            if chunk:
                received[reader] += chunk
                continue
            poller.unregister(reader)
            index = channels[reader]
            data = received.pop(reader)
            result = _unpickle(data)
            if result is None:
                what = "without its result" if not data else "with a result that cannot be read"
                raise RuntimeError(f"deps worker {index + 1} ended {what} ({_ended(pids[index], reaped)})")
            if result.failure is not None:
                failure = result.failure
                failure.add_note(f"in deps worker {index + 1}:\n{result.trace}")
                failure.mailpreflight_where = result.where  # type: ignore[attr-defined]  # cli/app.py says it
                raise failure
            results[index] = result
    return results


def _worker_main(job: _Job, index: int, board: _Board, reader: int, writer: int, parent: int,
                 signals: Iterable[int]) -> None:
    """The whole life of a worker process: its slices, then its result to the parent, then _exit (no cleanup of
    the parent's that it inherited runs here: no atexit, no buffers of the parent's flushed). It is killed when
    the parent dies (a worker waiting for its turn would wait for ever otherwise)."""
    code = 1
    try:
        try:
            _die_with_parent(parent)
            os.close(reader)
            board.keep_for(index)
            signal.pthread_sigmask(signal.SIG_SETMASK, signals)  # a Ctrl-C from now on is reported, as any failure
            result = _write_slices(job, index, board)
        except BaseException as exc:  # any failure goes to the parent, which raises it
            import traceback  # only here: a run without a failure does not import it

            place = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{os.path.basename(place.filename)}:{place.lineno}" if place else ""
            result = _Result(failure=exc, where=where, trace="".join(traceback.format_exception(exc)))
        _write_all(writer, _pickled(result))
        code = 0
    finally:
        os._exit(code)


def _pickled(result: _Result) -> bytes:
    """The result as the parent will read it: an exception that does not come back as it went (it does not
    pickle, or not back) is sent as a RuntimeError saying what it was."""
    try:
        data = pickle.dumps(result)
        back = pickle.loads(data)  # from this process's own pickle
    except Exception:  # it is sent as a RuntimeError below
        back = None
    if back is not None and (result.failure is None or (type(back.failure) is type(result.failure)
                                                         and str(back.failure) == str(result.failure))):
        return data
    failure = RuntimeError(f"{type(result.failure).__name__}: {result.failure}")
    return pickle.dumps(replace(result, failure=failure))


def _die_with_parent(parent: int) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) where there is one (Linux): if the parent dies, so does this worker."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before: nobody would ever read the result
        os._exit(1)


def _write_slices(job: _Job, index: int, board: _Board) -> _Result:
    """Take slices, render each, and write it when its turn comes (the units written before it decide the framing
    between units)."""
    loader = job.loader
    loader.fs.draw_budget(board.draw)  # what it reads comes out of what the workers share
    pending: deque[tuple[int, list[str]]] = deque()  # taken in increasing order: the oldest is the next to write
    refused: list[tuple[int, tuple[Refusal, ...]]] = []
    statuses: list[Status] = []
    written = 0

    def write(keep: int) -> None:
        """Write the oldest pending slices whose turn has come; wait for it while more than `keep` are pending."""
        nonlocal written
        while pending:
            number, texts = pending[0]
            before = board.turn(number)
            if before is None:
                if len(pending) <= keep:
                    return
                board.wait(index)
                continue
            pending.popleft()
            if texts:
                _write_all(job.output, job.framing.units(texts, before).encode(job.encoding, job.errors))
            written += len(texts)
            board.written(number, before + len(texts), index)

    while (number := board.take(index)) is not None:
        seen = len(loader.fs.refusals)
        pieces = list(_render(loader, job.slices[number], job.sa_version, job.render))
        if len(loader.fs.refusals) > seen:
            refused.append((number, loader.fs.refusals[seen:]))
        statuses.extend(status for status, _ in pieces)
        pending.append((number, [text for _, text in pieces]))
        write(PENDING - 1)
    write(0)
    return _Result(Status.worst(statuses), written, tuple(refused))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unpickle(data: bytes | bytearray) -> _Result | None:
    if not data:
        return None
    try:
        result = pickle.loads(data)  # from our own forked worker, through a pipe only it writes
    except Exception:  # a worker killed while it wrote: no result
        return None
    return result if isinstance(result, _Result) else None


def _ended(pid: int, reaped: set[int]) -> str:
    """How a worker that sent nothing ended (it is reaped here)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    reaped.add(pid)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = f"signal {number} ({signal.Signals(number).name})" if number in signal.valid_signals() else (
            f"signal {number}")
        oom = "; out of memory? see `journalctl -k -g oom`" if number == signal.SIGKILL else ""
        return f"killed by {name}{oom}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _pieces_join(env: Environment) -> bool:
    """Does the output's encoding encode pieces that join into what it makes of the whole (not so for one that
    starts with a byte-order mark, utf-16 or utf-8-sig): the workers encode a slice each."""
    encoding = getattr(env.stdout, "encoding", None) or "utf-8"
    try:
        return "ab".encode(encoding) == "a".encode(encoding) + "b".encode(encoding)
    except (LookupError, UnicodeError):
        return False


def _descriptor(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def _copy_spool(spool: Any, stream: Any, encoding: str, errors: str) -> None:
    spool.seek(0)
    text = io.TextIOWrapper(spool, encoding=encoding, errors=errors, newline="")
    try:
        while chunk := text.read(1 << 20):
            stream.write(chunk)
    finally:
        text.detach()


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
