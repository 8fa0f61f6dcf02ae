"""`guard`: run one network ExecStartPre so that it can neither fail nor hang the unit's start.

An installed drop-in rewrites `ExecStartPre=sa-update ...` as
`ExecStartPre=-/ABS/PATH/mailpreflight guard --timeout S -- sa-update ...`. The command runs in its own
process group with stdin from /dev/null and our stdout/stderr inherited; at the deadline the whole group gets
SIGTERM, then SIGKILL after --grace. A failure or a timeout is reported as ONE journald warning line (the
`<4>` prefix of sd-daemon(3)), with a quick probe of the command's endpoints when there is budget for it.

Guard runs at every service start, so this module imports only the standard library at the top; the probe
machinery (requests, dnspython, the dependency rules) is imported only when a failure needs a diagnosis.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from mailpreflight.deps.guardline import (  # guard's command line, also read by deps
    UsageError,
    build_parser,  # noqa: F401 (the man page and completion take guard's parser from here)
    ok_statuses,
    parse_args,
)

if TYPE_CHECKING:
    from mailpreflight.model import Dependency, ProbeResult

USAGE_ERROR = 3
TIMED_OUT = 124  # as coreutils timeout(1)
CANNOT_EXECUTE, NOT_FOUND = 126, 127  # as a POSIX shell
WARNING, NOTICE = "<4>", "<5>"  # journald priority prefixes (sd-daemon(3)); StandardError=journal parses them
MAX_PROBES = 8
RESOLV_CONF = "/etc/resolv.conf"
# Probe errors that mean "could not reach it" (model.ProbeResult lists every class). nxdomain, no-answer,
# http-status and the like are answers: reported as "failing", except a TXT without answer (below).
UNREACHABLE = frozenset({"dns-timeout", "servfail", "dns-refused", "name-not-resolved", "refused", "blocked-locally",
                         "connect-timeout", "read-timeout", "unreachable", "udp-no-reply", "deadline"})


class Outcome(NamedTuple):
    """How the command ended."""

    returncode: int | None  # as Popen has it: negative = killed by that signal; None = never started
    elapsed: float
    timed_out: bool = False
    killed: bool = False  # SIGKILL was needed after the grace period
    stopped_by: int | None = None  # a signal guard itself received and passed on
    error: str | None = None  # why it could not be started (strerror)
    errnum: int = 0  # its errno

    @property
    def status(self) -> int:
        """The exit status a shell would report: 128+N for signal N, 124 timeout, 126/127 cannot run."""
        if self.error is not None:
            return NOT_FOUND if self.errnum == errno.ENOENT else CANNOT_EXECUTE
        if self.timed_out:
            return TIMED_OUT
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        assert self.returncode is not None
        return 128 - self.returncode if self.returncode < 0 else self.returncode


class _Stopped(BaseException):
    """Raised by our SIGTERM/SIGINT handler wherever the main thread is waiting (a BaseException so that no
    `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --- running the command ----------------------------------------------------------------------------------


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # ESRCH: every member is gone already
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Is any process of the group still running? killpg(0) also counts zombies, which an init that does not
    reap (containers) keeps around: where /proc is readable, zombies do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: a member exists
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state, _, group = handle.read().rsplit(b")", 1)[1].split()[:3]  # after "pid (comm)"
            if int(group) == pgid and state not in (b"Z", b"X"):
                return True
        except (OSError, ValueError):  # gone meanwhile, or not the format expected
            continue
    return False


def _stop_group(process: subprocess.Popen[bytes], signum: int, grace: float) -> bool:
    """Send signum to the group, give it `grace` seconds, then SIGKILL what is left. True if SIGKILL was sent."""
    pgid = process.pid  # start_new_session: the leader's pid is the group's id
    _signal_group(pgid, signum)
    end = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    # the leader may go first and leave members (a backgrounded child) still running
    while process.returncode is not None and _group_alive(pgid) and time.monotonic() < end:
        time.sleep(0.05)
    if process.returncode is None or _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)  # a process in uninterruptible sleep must not hang us either
        return True
    return False


def run_command(argv: Sequence[str], timeout: float, grace: float) -> Outcome:
    """Run argv (no shell, PATH search as execvp) in its own process group; never longer than timeout+grace
    (+1 s for a process that ignores even SIGKILL), and stopped with us when we receive SIGTERM/SIGINT."""
    started = time.monotonic()
    # Handlers first, so that no instant is left in which SIGTERM/SIGINT kills guard but not its command: one
    # that comes before the command exists is remembered, and the command stopped as soon as it does.
    pending: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, _frame: pending.append(number))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            # Own session: at the deadline the whole group (sa-update and its curl/gpg children) can be stopped
            # without signalling ourselves. stdout/stderr are inherited: output goes to the journal unchanged.
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            return Outcome(None, time.monotonic() - started, error=exc.strerror or str(exc), errnum=exc.errno or 0)
        except ValueError as exc:  # a NUL byte in argv
            return Outcome(None, time.monotonic() - started, error=str(exc), errnum=errno.EINVAL)
        for handled in previous:
            signal.signal(handled, _raise_stopped)
        try:
            if pending:
                raise _Stopped(pending[0])
            returncode = process.wait(timeout)
            return Outcome(returncode, time.monotonic() - started)
        except subprocess.TimeoutExpired:
            timed_out, signum = True, int(signal.SIGTERM)
        except _Stopped as stop:
            timed_out, signum = False, stop.signum
        for handled in previous:  # stopping now; a second signal must not interrupt the clean-up
            signal.signal(handled, signal.SIG_IGN)
        killed = _stop_group(process, signum, grace)
        return Outcome(process.returncode, time.monotonic() - started, timed_out=timed_out, killed=killed,
                       stopped_by=None if timed_out else signum)
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)


# --- diagnosis ----------------------------------------------------------------------------------------------


def _probe_order(dep: Dependency) -> int:
    from mailpreflight.model import DepKind

    # DNS first: when names do not resolve, nothing else can work, and DNS probes are the quickest.
    return {DepKind.DNS: 0, DepKind.HTTP: 1, DepKind.HTTPS: 1, DepKind.TCP: 2}[dep.kind]


def dependencies(argv: Sequence[str], env: Mapping[str, str]) -> list[Dependency]:
    """What the registry rules say the commands argv runs need, at most MAX_PROBES, DNS first. The commands are
    found as `deps` finds them: through wrappers, `sh -c` scripts and script files, so that `bash -c "sa-update ||
    true"` is probed as sa-update. UDP endpoints are left out: one datagram without a reply cannot tell a drop
    from a silent server. So are URLs the tool fetches through a proxy: the rules list the proxy itself (TCP),
    which is what the tool connects to."""
    from mailpreflight.model import DepKind

    wanted: dict[tuple[str, str], Dependency] = {}
    for dep in sorted((d for d in _needs(argv, env)[1] if d.kind is not DepKind.UDP and "via proxy" not in d.note),
                      key=_probe_order):
        wanted.setdefault((dep.kind.value, dep.target), dep)
    return list(wanted.values())[:MAX_PROBES]


_found: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], tuple[list[str], list[Dependency]]] = {}


def _needs(argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], list[Dependency]]:
    """(the programs argv runs that need the network, in order; what they need). Guard does not know its unit:
    the host's tree is all the rules get (an ExecStartPre is start work whatever Type= says; whom it runs as is
    the process's own business). Found once per failure: subject() asks first, and the diagnosis, forked after
    it, inherits the answer."""
    key = (tuple(argv), tuple(sorted(env.items())))
    if key not in _found:
        _found[key] = _find_needs(argv, env)
    return _found[key]


def _find_needs(argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], list[Dependency]]:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.deps.base import RuleContext
    from mailpreflight.deps.discover import discover_argv
    from mailpreflight.deps.registry import command_rules, rule_for

    fs = RootFS("/")
    context = RuleContext(fs)
    rules = command_rules()
    tools: list[str] = []
    found: list[Dependency] = []
    for command in discover_argv(argv, fs, env):
        needed = rule_for(command.tool, rules).dependencies(command, context)
        if needed and command.tool not in tools:
            tools.append(command.tool)
        found += needed
    return tools, found


def subject(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The name the warning gives the command: its program, or, for a shell or wrapper around network programs,
    those programs and what runs them (`sa-update (run by bash -c)`): the admin greps for sa-update."""
    try:
        tools = _needs(argv, env)[0]
    except Exception:  # naming must never turn into a failing guard
        tools = []
    return named(argv, tools)


def named(argv: Sequence[str], tools: Sequence[str]) -> str:
    """`sa-update (run by bash -c)` for `bash -c "sa-update || true"` whose network program is sa-update; the
    program's own name when that is the one (or none is known). The in-guest form says the same (fix/inguest.py)."""
    name = os.path.basename(argv[0]) if argv else "?"
    if not tools or list(tools) == [name]:
        return name
    how = name
    for word in argv[1:]:
        if not word.startswith("-") or word.startswith("--"):
            break
        if "c" in word[1:]:
            how = f"{name} -c"
            break
    return f"{', '.join(tools)} (run by {how})"


def probe(deps: Sequence[Dependency], budget: float, resolv_conf: str = RESOLV_CONF) -> list[ProbeResult]:
    """Probe deps concurrently; returns within about `budget` seconds (unfinished ones are `deadline`)."""
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.probes import dns
    from mailpreflight.probes.resolvconf import read_resolv_conf
    from mailpreflight.probes.runner import ProbeRunner
    from mailpreflight.probes.tasks import probe_task

    resolver = dns.resolver_for(read_resolv_conf(RootFS("/"), os.path.abspath(resolv_conf), resolv_conf))
    timeout = max(budget * 0.8, 0.1)  # let the probes' own timeouts name the error before the runner's deadline
    runner = ProbeRunner(budget)
    try:
        results = runner.run({(dep.kind, dep.target): probe_task(dep, resolver, timeout) for dep in deps})
    finally:
        runner.close()
    found: list[ProbeResult] = [results[(dep.kind.value, dep.target)] for dep in deps
                                if (dep.kind.value, dep.target) in results]
    return found


def summarize(results: Sequence[ProbeResult], budget: float) -> str:
    if not results:
        return "no network endpoint known to probe"

    def named(result: ProbeResult) -> str:
        error = f"no answer within {budget:g} s" if result.error == "deadline" else result.error
        return f"{result.target} ({error})"

    down = [r for r in results if not r.ok and r.error in UNREACHABLE]
    # A TXT question without an answer is how sa-update learns there is nothing new (sa-update.raw l.560-567).
    failing = [r for r in results if not r.ok and r.error not in UNREACHABLE
               and not (r.target.startswith("TXT ") and r.error in ("nxdomain", "no-answer"))]
    parts = []
    if down:
        parts.append("unreachable: " + ", ".join(named(r) for r in down))
    if failing:
        parts.append("failing: " + ", ".join(named(r) for r in failing))
    return "; ".join(parts) or f"all {len(results)} endpoints probed answered"


def diagnose(argv: Sequence[str], env: Mapping[str, str], budget: float, resolv_conf: str = RESOLV_CONF) -> str:
    """One phrase naming the endpoints argv could not reach. In-process; never raises."""
    started = time.monotonic()
    try:
        deps = dependencies(argv, env)
        if not deps:
            return "no network endpoint known to probe"
        remaining = budget - (time.monotonic() - started)
        if remaining <= 0.05:
            return "no diagnosis (no time left to probe)"
        return summarize(probe(deps, remaining, resolv_conf), remaining)
    except Exception:  # a broken probe machinery must not turn into a failing guard
        return "no diagnosis"


def diagnose_within(argv: Sequence[str], env: Mapping[str, str], budget: float,
                    resolv_conf: str = RESOLV_CONF) -> str:
    """diagnose() in a forked child, killed at the budget: a probe thread stuck in getaddrinfo() or a crash in
    the probe libraries can then neither delay guard's exit (Python joins pool threads at exit) nor raise."""
    import select

    started = time.monotonic()
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return "no diagnosis"
    if pid == 0:  # the child: never return into the caller's code
        code = 1
        try:
            os.close(read_end)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            # leave time to write the answer before the parent gives up
            text = diagnose(argv, env, budget - (time.monotonic() - started) - 0.15, resolv_conf)
            os.write(write_end, text.encode("utf-8", "replace"))
            code = 0
        finally:
            os._exit(code)  # no atexit, no joining of probe threads still stuck
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        while (left := budget - (time.monotonic() - started)) > 0:
            readable, _, _ = select.select([read_end], [], [], left)
            if not readable:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)  # gone already, or over budget
        os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    return text if text else "no diagnosis"


# --- the verb ------------------------------------------------------------------------------------------------


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe(name: str, outcome: Outcome, timeout: float, grace: float) -> str:
    """What happened, as the start of the warning line."""
    if outcome.error is not None:
        return f"{name} cannot run: {outcome.error}"
    if outcome.timed_out:
        how = f"SIGKILL after {grace:g} s grace" if outcome.killed else "SIGTERM"
        return f"{name} timed out after {outcome.elapsed:.1f} s (limit {timeout:g} s), stopped with {how}"
    assert outcome.returncode is not None
    if outcome.returncode < 0:
        return f"{name} was killed by {_signal_name(-outcome.returncode)} after {outcome.elapsed:.1f} s"
    return f"{name} exited {outcome.returncode} after {outcome.elapsed:.1f} s"


def say(prefix: str, line: str) -> None:
    """One line to stderr with its journald priority prefix; also straight into the journal when stderr is not
    the unit's journal stream (StandardError=null, as Debian's spamd.service has: fix/journalsend.py)."""
    from mailpreflight.fix import journalsend

    print(f"{prefix}mailpreflight guard: {line}", file=sys.stderr, flush=True)
    journalsend.send(f"mailpreflight guard: {line}", int(prefix.strip("<>")), os.environ)


def main(argv: list[str]) -> int:
    """`mailpreflight guard [OPTIONS] -- COMMAND [ARG...]`: exit 0 (with --strict the command's status, 0 when
    it counts as success; 124 on timeout, 126/127 when it cannot run), 3 on a usage error."""
    try:
        options = parse_args(argv)
    except UsageError as exc:
        print(f"mailpreflight guard: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exc:  # --help
        return 0 if exc.code in (0, None) else USAGE_ERROR
    name = os.path.basename(options.command[0])
    outcome = run_command(options.command, options.timeout, options.grace)
    if outcome.stopped_by is not None:  # the unit is being stopped: no diagnosis, just say so
        say(NOTICE, f"{name} stopped by {_signal_name(outcome.stopped_by)} after {outcome.elapsed:.1f} s")
        return outcome.status if options.strict else 0
    failed = (outcome.error is not None or outcome.timed_out
              or outcome.status not in ok_statuses(options.command[0], options.ok_status))
    if not failed:
        return 0
    line = describe(subject(options.command, os.environ), outcome, options.timeout, options.grace)
    if outcome.error is None and options.diagnose_budget > 0:
        line += "; " + diagnose_within(options.command, os.environ, options.diagnose_budget)
    line += f"; exit status {outcome.status} passed on" if options.strict else "; the unit starts anyway"
    say(WARNING, line)
    return outcome.status if options.strict else 0
