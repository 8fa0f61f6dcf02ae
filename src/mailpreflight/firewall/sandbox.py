"""The sealed network namespace `check --guest-firewall` classifies packets in (docs/firewall.md).

One namespace per run, nothing of it on the host but its name in /run/netns: a veth pair whose both ends are
inside (the guest's outgoing interface, named as its rules name it, and a sink), the default routes point at a
gateway whose permanent neighbour entry is a MAC no interface has, so every packet that leaves is discarded by
the sink. The
guest's rules are loaded there, then a table of ours: a chain at the lowest output priority marks our packets
for nft's tracer, a chain at the highest postrouting priority records each packet that got that far (it
passed every guest chain). No forwarding, no NAT, no host sysctl, no host table, no host interface.

Around it: a lock (/run/mailpreflight/guestfw.lock) under which each run registers a state file it keeps
locked while it lives (so `mailpreflight cleanup` knows a killed run's leftovers from a live run's), names and
addresses drawn per run, and SIGINT/SIGTERM/SIGHUP noted instead of acted on from setup to the end of the
clean-up, which runs with them blocked: a second Ctrl-C or a dropped SSH session cannot cut it short.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType

from mailpreflight.errors import MailpreflightError

PREFIX = "mailpreflight-gfw-"
NAME = re.compile(r"mailpreflight-gfw-(\d+-[0-9a-f]{12})")
NETNS_DIR = "/run/netns"  # where `ip netns` keeps its names
RUN_DIR = "/run/mailpreflight"
LOCK_FILE = f"{RUN_DIR}/guestfw.lock"
STATE_DIR = f"{RUN_DIR}/guestfw"
GUEST_IF, SINK_IF = "eth0", "mpsink"  # the guest side's default name (guest.interfaces() picks the real one)
INTERFACE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
SINK_MAC = "02:00:00:00:00:01"  # the gateways' neighbour entries: no interface has it, the sink drops the frames
GATEWAY6 = "fe80::1"
TABLE = "mailpreflight_classify"  # only ever inside the sealed namespace
FIRST_PORT = 40000  # our packets' source ports: FIRST_PORT + index; the canaries just below
READY_PORT, END_PORT = 39999, 39998
MAX_PACKETS = 512
CANARY = ("192.0.2.1", 9)  # TEST-NET-1, discard: a packet that shows the tracer is listening
TRACE_WAIT = 3.0  # s for the tracer to show a packet
BATCH = 16  # packets between waits for the tracer (its netlink buffer must not overflow)
MONITOR_LIFETIME = 300  # s: the tracer dies by itself even when we are killed with SIGKILL
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLONE_NEWNET = 0x40000000
# legacy: what mailpreflight before the sealed design left after a SIGKILL or SIGHUP
LEGACY_NAMESPACE = re.compile(r"mpguest-(\d+)")
LEGACY_TABLE = re.compile(r"^table ip (mailpreflight_guest_(\d+))$", re.M)


@dataclass(frozen=True)
class Packet:
    """One packet a probe sends: what the guest's rules are asked about."""

    proto: str  # tcp | udp
    address: str
    port: int
    payload: bytes = b""


@dataclass(frozen=True)
class PacketVerdict:
    passes: bool
    rule: str  # the guest rule that dropped or rejected it, as nft's tracer names it ("" when passed or unknown)


@dataclass(frozen=True)
class Load:
    """One command that loads (part of) the guest's rules in the namespace, the text it reads on stdin, and
    how to turn its stderr into the error the admin sees (guest file:line)."""

    argv: tuple[str, ...]
    text: str
    error: Callable[[str], MailpreflightError]


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; the guest firewall's namespace was removed")
        self.signum = signum


class SignalGuard:
    """SIGINT, SIGTERM and SIGHUP (a dropped SSH session) are noted, never acted on at once: the run stops at its
    next step (`check`), and `blocked()` keeps them out of the clean-up altogether."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def check(self) -> None:
        if self.received:
            raise Interrupted(self.received[0])

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # what came meanwhile is noted now


@dataclass(frozen=True)
class Run:
    """Names and addresses of one run: a /30 of 198.19.0.0/16 and a random ULA /64."""

    id: str
    namespace: str
    address4: str
    gateway4: str
    address6: str

    @classmethod
    def new(cls) -> Run:
        token = secrets.token_bytes(6)
        ident = f"{os.getpid()}-{token.hex()}"
        base = ipaddress.IPv4Address("198.19.0.0") + 4 * (int.from_bytes(token[:2], "big") % 16384)
        address6 = ipaddress.IPv6Address(b"\xfd" + token[1:] + bytes(9) + b"\x02")
        return cls(ident, PREFIX + ident, str(base + 2), str(base + 1), str(address6))


@dataclass
class _State:
    """A run's state file, locked for as long as the run lives (the kernel drops the lock when it dies)."""

    path: str
    fd: int

    def close(self, keep: bool = False) -> None:
        """Unlocks; `keep` leaves the file for `mailpreflight cleanup` (the namespace could not be removed)."""
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)


def classify(loads: Sequence[Load], packets: Sequence[Packet], uplink: str = GUEST_IF,
             placeholders: Sequence[str] = ()) -> dict[Packet, PacketVerdict]:
    """Load the guest's rules into a sealed namespace of this run, send each packet from there (out of the
    interface `uplink`), and say which got through every guest chain (and, for the others, which rule stopped
    them). `placeholders`: other interfaces the rules name by index (iif, oif, device), which must exist for
    them to load; they stay down. Everything is removed before returning, also on errors and signals; a
    signal then raises Interrupted."""
    preflight(loads)
    names = [uplink, *placeholders]
    bad = [n for n in names if not INTERFACE.fullmatch(n) or n in ("lo", SINK_IF) or n.startswith("mpp")]
    if bad or len(set(names)) != len(names):
        raise MailpreflightError(f"cannot name an interface {bad[0] if bad else uplink!r} in the namespace",
                                 hint="name the guest's outgoing interface with --guest-interface NAME")
    wanted = list(dict.fromkeys(packets))[:MAX_PACKETS]
    with SignalGuard() as guard:
        run = Run.new()
        state = _register(run)
        try:
            guard.check()
            _create(run, uplink, placeholders)
            for load in loads:
                guard.check()
                _load(run.namespace, load)
            guard.check()
            _ip_netns_exec(run.namespace, ("nft", "-f", "-"), _classifier_table(),
                           lambda err: MailpreflightError(f"cannot set up the packet classifier: {err}"))
            verdicts = _send_and_trace(run.namespace, wanted, guard)
        finally:
            with guard.blocked():
                problem = _remove_namespace(run.namespace)
                state.close(keep=problem is not None)
            if problem:
                raise MailpreflightError(problem, hint="try again with `mailpreflight cleanup`")
        guard.check()  # a signal that came during the clean-up: stop now that nothing is left
    return verdicts


def preflight(loads: Sequence[Load]) -> None:
    if os.geteuid() != 0:
        raise MailpreflightError("--guest-firewall needs root (a network namespace, nft)",
                                 hint="run it as root, e.g. sudo mailpreflight check --root DIR --guest-firewall")
    needed = {"ip", "nft", "timeout", *(load.argv[0] for load in loads)}
    missing = sorted(tool for tool in needed if shutil.which(tool) is None)
    if missing:
        raise MailpreflightError(f"--guest-firewall needs {', '.join(missing)}",
                                 hint="apt-get install iproute2 nftables iptables coreutils")


def _directories() -> None:
    """/run/mailpreflight and its guestfw/ must be ours: directories owned by root, writable by root only."""
    for path, mode in ((RUN_DIR, 0o755), (STATE_DIR, 0o700)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise MailpreflightError(f"{path} is not a directory owned and writable only by root: refused",
                                     hint=f"look at it (ls -ld {path}) and remove it if it is not ours")


@contextlib.contextmanager
def _locked(timeout: float = 10.0) -> Iterator[None]:
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MailpreflightError(f"{LOCK_FILE} has been held by another mailpreflight for more than "
                                             f"{timeout:g} s", hint="try again in a moment") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _register(run: Run) -> _State:
    _directories()
    with _locked():
        path = f"{STATE_DIR}/{run.id}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = {"namespace": run.namespace, "pid": os.getpid(), "started": time.time(),
                  "addresses": [run.address4, run.address6]}
        os.write(fd, (json.dumps(record) + "\n").encode())
    return _State(path, fd)


def _run(argv: Sequence[str], text: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Children get a session of their own: the terminal's Ctrl-C and hang-up reach us, not them."""
    try:
        return subprocess.run(list(argv), input=text, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True, stdin=None if text is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise MailpreflightError(f"{' '.join(argv[:6])} did not finish within {timeout:g} s") from exc


def _create(run: Run, uplink: str, placeholders: Sequence[str]) -> None:
    ns = run.namespace
    done = _run(["ip", "netns", "add", ns])
    if done.returncode != 0:
        raise MailpreflightError(f"cannot create the network namespace {ns}: {done.stderr.strip()}")
    batch = (f"link set lo up\n"
             f"link add {uplink} type veth peer name {SINK_IF}\n"
             f"link set {SINK_IF} up\n"
             f"link set {uplink} up\n"
             f"address add {run.address4}/30 dev {uplink}\n"
             f"address add {run.address6}/64 dev {uplink} nodad\n"
             f"neighbour add {run.gateway4} lladdr {SINK_MAC} dev {uplink} nud permanent\n"
             f"neighbour add {GATEWAY6} lladdr {SINK_MAC} dev {uplink} nud permanent\n"
             f"route add default via {run.gateway4} dev {uplink}\n"
             f"route add default via {GATEWAY6} dev {uplink}\n"
             + "".join(f"link add {name} type veth peer name mpp{n}\n" for n, name in enumerate(placeholders)))
    done = _run(["ip", "-n", ns, "-batch", "-"], batch)
    if done.returncode != 0:
        raise MailpreflightError(f"cannot set up the links of {ns}: {done.stderr.strip()}")


def _ip_netns_exec(namespace: str, argv: Sequence[str], text: str,
                   error: Callable[[str], MailpreflightError], timeout: float = 60) -> str:
    done = _run(["ip", "netns", "exec", namespace, *argv], text, timeout)
    if done.returncode != 0:
        raise error(done.stderr.strip() or f"exit status {done.returncode}")
    return done.stdout


def _load(namespace: str, load: Load) -> None:
    _ip_netns_exec(namespace, load.argv, load.text, load.error)


def _classifier_table() -> str:
    ports = f"{END_PORT}-{FIRST_PORT + MAX_PACKETS}"
    return (f"table inet {TABLE} {{\n"
            f"  set passed {{ type inet_proto . inet_service; size 65535; flags dynamic; }}\n"
            f"  chain first {{\n"
            f"    type filter hook output priority -2147483648; policy accept;\n"
            f"    meta l4proto {{ tcp, udp }} th sport {ports} meta nftrace set 1\n"
            f"  }}\n"
            f"  chain last {{\n"
            f"    type filter hook postrouting priority 2147483647; policy accept;\n"
            f"    meta l4proto {{ tcp, udp }} th sport {ports} add @passed {{ meta l4proto . th sport }}\n"
            f"  }}\n"
            f"}}\n")


# --- sending and tracing ------------------------------------------------------------------------------------

_PACKET_LINE = re.compile(r"^trace id (\S+) \S+ \S+ \S+ packet: .*?\b(tcp|udp) sport (\d+)\b")
_VERDICT_LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (?:rule (.*) \(verdict (\w+)[^)]*\)|policy (\w+))")
_STOPS = ("drop", "reject", "queue")


@dataclass
class _Trace:
    """What `nft monitor trace` printed so far, read without blocking."""

    fd: int
    buffer: bytes = b""
    lines: list[str] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)

    def pump(self, seconds: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(seconds, 0))
        if not ready:
            return
        data = os.read(self.fd, 1 << 16)
        if not data:
            time.sleep(max(seconds, 0))  # the tracer ended: nothing more will come
            return
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            packet = _PACKET_LINE.match(line)
            if packet:
                self.seen.add((packet.group(2), int(packet.group(3))))

    def wait_for(self, key: tuple[str, int], seconds: float, guard: SignalGuard) -> bool:
        deadline = time.monotonic() + seconds
        while key not in self.seen:
            guard.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.pump(min(remaining, 0.05))
        return True

    def blocking_rules(self) -> dict[tuple[str, int], str]:
        """(proto, source port) -> the first guest rule (or policy) that dropped, rejected or queued it."""
        keys: dict[str, tuple[str, int]] = {}
        found: dict[tuple[str, int], str] = {}
        for line in self.lines:
            packet = _PACKET_LINE.match(line)
            if packet:
                keys.setdefault(packet.group(1), (packet.group(2), int(packet.group(3))))
                continue
            verdict = _VERDICT_LINE.match(line)
            if not verdict or verdict.group(1) not in keys or verdict.group(3) == TABLE:
                continue
            trace_id, family, table, chain, rule, rule_verdict, policy = verdict.groups()
            if (rule_verdict or policy) in _STOPS:
                text = f"rule {rule}" if rule is not None else f"policy {policy}"
                found.setdefault(keys[trace_id], f"{family} {table} {chain} {text}")
        return found


@contextlib.contextmanager
def _entered(namespace: str) -> Iterator[None]:
    """This thread in the namespace, for creating sockets (which stay there); back afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"{NETNS_DIR}/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise MailpreflightError(f"cannot enter the network namespace {namespace}: {os.strerror(code)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise MailpreflightError("cannot return to the host's network namespace: "
                                         f"{os.strerror(ctypes.get_errno())}")
    finally:
        os.close(own)


def _socket(packet: Packet, port: int) -> socket.socket:
    v6 = ":" in packet.address
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                         socket.SOCK_STREAM if packet.proto == "tcp" else socket.SOCK_DGRAM)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if v6 else "0.0.0.0", port))
    sock.setblocking(False)
    return sock


def _send(packet: Packet, sock: socket.socket) -> None:
    """One TCP SYN or one datagram; what the network does with it does not matter (it goes nowhere)."""
    try:
        if packet.proto == "tcp":
            sock.connect_ex((packet.address, packet.port))
        else:
            sock.sendto(packet.payload or b"\0", (packet.address, packet.port))
    except OSError:
        pass  # EPERM: a guest rule dropped it on the way out; the verdict comes from the classifier


def _send_and_trace(namespace: str, packets: list[Packet], guard: SignalGuard) -> dict[Packet, PacketVerdict]:
    monitor = subprocess.Popen(["ip", "netns", "exec", namespace, "timeout", "-s", "KILL", str(MONITOR_LIFETIME),
                                "nft", "monitor", "trace"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    sockets: list[socket.socket] = []
    try:
        assert monitor.stdout is not None
        trace = _Trace(monitor.stdout.fileno())
        canary = Packet("udp", *CANARY)
        with _entered(namespace):
            ready, end = _socket(canary, READY_PORT), _socket(canary, END_PORT)
            sockets += [ready, end]
            made: dict[int, socket.socket] = {}
            for n, packet in enumerate(packets):
                with contextlib.suppress(OSError):  # e.g. no IPv6 in this kernel: that packet stays unclassified
                    made[n] = _socket(packet, FIRST_PORT + n)
                    sockets.append(made[n])
        traced = False
        deadline = time.monotonic() + TRACE_WAIT
        while not traced and time.monotonic() < deadline:  # the tracer subscribes asynchronously
            _send(canary, ready)
            traced = trace.wait_for(("udp", READY_PORT), 0.1, guard)
        for count, n in enumerate(made):
            guard.check()
            _send(packets[n], made[n])
            if traced and (count % BATCH == BATCH - 1 or count == len(made) - 1):
                traced = trace.wait_for((packets[n].proto, FIRST_PORT + n), TRACE_WAIT, guard)
        if traced:
            _send(canary, end)
            trace.wait_for(("udp", END_PORT), TRACE_WAIT, guard)
        passed = _passed(namespace)
    finally:
        for sock in sockets:
            sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(monitor.pid, signal.SIGKILL)
        monitor.wait()
        if monitor.stdout is not None:
            monitor.stdout.close()
    rules = trace.blocking_rules()
    verdicts = {}
    for n in made:
        key = (packets[n].proto, FIRST_PORT + n)
        verdicts[packets[n]] = PacketVerdict(key in passed, "" if key in passed else rules.get(key, ""))
    return verdicts


def _passed(namespace: str) -> set[tuple[str, int]]:
    listing = _ip_netns_exec(namespace, ("nft", "-j", "list", "set", "inet", TABLE, "passed"), "",
                             lambda err: MailpreflightError(f"cannot read the packet classifier: {err}"))
    names = {6: "tcp", 17: "udp"}
    passed = set()
    for item in json.loads(listing).get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            proto, port = element["concat"]
            passed.add((names.get(proto, str(proto)), int(port)))
    return passed


# --- removing: a run's own namespace, or what killed runs left ----------------------------------------------


def _remove_namespace(namespace: str) -> str | None:
    """Kill whatever still runs in the namespace (our tracer), then delete it. None, or what went wrong."""
    if not os.path.lexists(f"{NETNS_DIR}/{namespace}"):
        return None
    try:
        pids = _run(["ip", "netns", "pids", namespace]).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        done = _run(["ip", "netns", "del", namespace])
    except MailpreflightError as exc:
        return f"cannot delete the network namespace {namespace}: {exc}"
    if done.returncode != 0 and os.path.lexists(f"{NETNS_DIR}/{namespace}"):
        return f"cannot delete the network namespace {namespace}: {done.stderr.strip()}"
    return None
