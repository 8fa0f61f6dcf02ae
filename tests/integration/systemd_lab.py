"""A real systemd (user manager) + real D-Bus session bus for integration tests.

Works where PID 1 is not systemd (containers, VMs), as root.  The manager runs in a dedicated child
cgroup, inside private mount + cgroup namespaces, so it can neither see nor adopt host processes:
a user manager moves every process of the cgroup it starts in into <root>/init.scope, which in the
host's root cgroup would mean *every process on the machine*.

Both pystemd and dbus-python are imported lazily so that conftest can skip cleanly without them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import os
import select
import shutil
import struct
import subprocess
import termios
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

SYSTEMD = "/usr/lib/systemd/systemd"
JOURNALD_PATHS = ("/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald")
DEST = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
BINDINGS = ("pystemd", "dbus-python")
EXEC_KEYS = ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost",
             "ExecReload", "ExecStop", "ExecStopPost")
EXEC_SIG = "a(sasbttttuii)"  # path, argv, ignore, start rt/mono, exit rt/mono, pid, code, status
EXEC_EX_SIG = "a(sasasttttuii)"  # same, but flags as strings instead of the ignore bool
UNIT_PROPS = {"Id": "s", "Names": "as", "LoadState": "s", "LoadError": "(ss)",
              "FragmentPath": "s", "DropInPaths": "as"}
SERVICE_PROPS = {"Environment": "as", "EnvironmentFiles": "a(sb)", "TimeoutStartUSec": "t", "Type": "s"}
SERVICE_DEFAULTS: dict[str, Any] = {"Environment": [], "EnvironmentFiles": [], "TimeoutStartUSec": 0,
                                    "Type": ""}

# Runs as: sh -c OUTER sh <cgroup.procs> unshare ... -- moves itself into the lab cgroup, then exec()s,
# so the Popen pid ends up being the manager's pid (sh -> unshare -> sh -> systemd, no forks).
_OUTER = 'echo $$ > "$1" && shift && exec "$@"'
# Runs inside the new namespaces.  Refuses to continue unless the cgroup namespace is private (not
# the launcher's, $4; not PID 1's), we are at its root, and that root is not the host's root cgroup
# (which has no cgroup.events); only then fakes sd_booted() and redirects the manager log, in this
# mount namespace only.  Fail closed: an unreadable ns link (/proc/1/ns/* can be
# EACCES after unshare --mount) must not pass the test, hence the explicit emptiness checks.
_INNER = r"""
set -eu
own=$(readlink /proc/self/ns/cgroup) || own=""
init=$(readlink /proc/1/ns/cgroup 2>/dev/null) || init=""
[ -n "$own" ] && [ -n "$4" ] && [ "$own" != "$4" ] && [ "$own" != "$init" ] \
  || { echo "systemd_lab: refusing: cgroup namespace is not private ($own)" >&2; exit 97; }
grep -qx '0::/' /proc/self/cgroup \
  || { echo "systemd_lab: refusing: not at the root of the private cgroup namespace" >&2; exit 98; }
mount -t cgroup2 cgroup2 /sys/fs/cgroup
[ -e /sys/fs/cgroup/cgroup.events ] \
  || { echo "systemd_lab: refusing: this is the host's root cgroup (no cgroup.events)" >&2; exit 99; }
mount -t tmpfs -o mode=0755,size=64m tmpfs /run/systemd  # < 16M free: daemon-reload is refused
mkdir /run/systemd/system
mount --bind "$1" /dev/kmsg
[ -z "${5:-}" ] || . "$6/start-journald.sh"
exec "$2" --user --log-target=kmsg --log-level="$3"
"""
# Sourced by _INNER (journald=True only), in the lab's private mount + cgroup namespaces, after its safety checks
# and before the manager starts: $5 is systemd-journald, $6 the lab's journald dir.
# * Private: journald's sockets (/run/systemd/journal/*), its drop-in (/run/systemd/journald.conf.d) and its
#   volatile storage (/run/log/journal) all live on tmpfs mounted in this namespace only; a tmpfs over
#   /var/log/journal hides (and protects) the host's persistent journal.  Without CAP_AUDIT_READ/CONTROL
#   journald cannot join the kernel's audit multicast group, so it never issues its "enable auditing" call (a
#   host-global setting).  ReadKMsg=no: /dev/kmsg here is the manager-log FIFO.
# * Realistic: journald attaches _SYSTEMD_USER_UNIT and _SYSTEMD_INVOCATION_ID to a user service's messages only
#   if the service's cgroup is below /user.slice/user-UID.slice/user@UID.service and the user manager's
#   invocation:UNIT symlinks are in /run/user/UID/systemd/units/.  So journald stays at the root of the lab
#   cgroup, the manager goes into lab/user.slice/user-UID.slice/user@UID.service (a user manager adopts only its
#   own cgroup), and the lab's XDG_RUNTIME_DIR is bind-mounted on /run/user/UID (on a tmpfs over /run/user).
# journald's parent is the manager, which reaps it: teardown stops journald before the manager exits.
_START_JOURNALD = r"""
uid=$(id -u)
for d in /run/log /run/user; do
  [ -d $d ] || { echo "systemd_lab: refusing: no $d to mount over (journald=True would create it)" >&2; exit 96; }
done
mount -t tmpfs -o mode=0755,size=64m tmpfs /run/log
[ ! -d /var/log/journal ] || mount -t tmpfs -o mode=0755,size=64m tmpfs /var/log/journal
mkdir /run/systemd/journald.conf.d
cp "$6/journald.conf" /run/systemd/journald.conf.d/zz-mailpreflight-lab.conf
SYSTEMD_LOG_TARGET=console setpriv --bounding-set -audit_control,-audit_read,-audit_write "$5" &
echo $! > "$6/journald.pid"
i=0
until [ -S /run/systemd/journal/stdout ] && [ -S /run/systemd/journal/socket ]; do
  kill -0 $! 2>/dev/null || { echo "systemd_lab: systemd-journald exited" >&2; exit 95; }
  i=$((i + 1)); [ $i -lt 1000 ] || { echo "systemd_lab: systemd-journald sockets never appeared" >&2; exit 94; }
  sleep 0.01
done
mount -t tmpfs -o mode=0755,size=1m tmpfs /run/user
mkdir -m 0700 /run/user/$uid
mount --bind "$XDG_RUNTIME_DIR" /run/user/$uid
mkdir -p /sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service
echo $$ > /sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service/cgroup.procs
"""
JOURNALD_CONF = """[Journal]
Storage=volatile
RuntimeMaxUse=16M
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitBurst=0
"""


class LabError(RuntimeError):
    pass


class SignatureError(LabError):
    pass


def cgroup2_mount() -> Path | None:
    """Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split(" ")[4])
    return None


# ------------------------------------------------------------------------------------------ teardown
class _LogPump:
    """Copies what the manager writes to its fake /dev/kmsg (a FIFO) into the log file.

    Why not bind-mount the log file itself: every process opens /dev/kmsg anew without O_APPEND, so
    messages from forked children ("Failed at step EXEC ...") overwrite the head of the file.
    Records written to a FIFO are atomic and arrive in order.
    """

    def __init__(self, fifo: Path, log: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
        os.mkfifo(fifo, 0o600)
        # O_RDWR: opening never blocks, and the manager's open(O_WRONLY) never blocks either
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._out = log.open("ab")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemd-lab-log", daemon=True)
        self._thread.start()

    def _pending(self) -> int:
        return int(struct.unpack("i", fcntl.ioctl(self._fd, termios.FIONREAD, b"\0" * 4))[0])

    def _run(self) -> None:
        while not (self._stop.is_set() and not self._pending()):
            select.select([self._fd], [], [], 0.05)
            with self._lock, contextlib.suppress(BlockingIOError):
                self._out.write(os.read(self._fd, 1 << 16))
                self._out.flush()

    def sync(self, timeout: float = 1.0) -> None:
        """Return once everything written so far is in the log file."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and self._pending() and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:  # wait out a read that is being written right now
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._out.close()


@dataclass
class _Resources:
    """Everything teardown needs, kept apart from the lab so a finalizer can run without it."""

    cgroup: Path
    env: dict[str, str]
    pump: _LogPump
    proc: subprocess.Popen[bytes] | None = None
    problems: list[str] = field(default_factory=list)
    journald_pidfile: Path | None = None  # journald=True: where the lab's journald wrote its pid


def journald_binary() -> str | None:
    return next((p for p in JOURNALD_PATHS if os.access(p, os.X_OK)), None)


def unavailable_reason(journald: bool = False) -> str | None:
    """Why a lab cannot run here (None: it can); `journald`: also what UserManagerLab(journald=True) needs."""
    if os.geteuid() != 0:
        return "needs root"
    tools = ("unshare", "nsenter", "setpriv", "journalctl") if journald else ("unshare",)
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} (util-linux/systemd) not found"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} not found"
    if journald and journald_binary() is None:
        return "systemd-journald not found"
    if not Path("/usr/lib/systemd/user/dbus.socket").exists():
        return "/usr/lib/systemd/user/dbus.socket missing (install dbus-user-session)"
    for module, dist in (("pystemd", "pystemd"), ("dbus", "dbus-python")):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{dist} not importable ({e})"
    if cgroup2_mount() is None:
        return "no cgroup2 mount"
    return None


def _cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    for procs in cg.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _in_cgroup(pid: int, cg: Path) -> bool:
    """Whether pid is in cg or below it, as seen from the host's cgroup namespace."""
    rel = "/" + str(cg.relative_to(cgroup2_mount() or "/"))
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    return any(ln == f"0::{rel}" or ln.startswith(f"0::{rel}/") for ln in lines)


def _gone(pid: int) -> bool:
    try:  # the state is the field after "(comm)"; a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _stop_journald(res: _Resources) -> None:
    """SIGTERM the lab's journald while the manager (its parent, which reaps it) is still there."""
    try:
        pid = int(res.journald_pidfile.read_text()) if res.journald_pidfile else 0
    except (OSError, ValueError):
        return
    # only that pid if it still is a journald inside the lab cgroup (never a recycled host pid)
    comm = Path(f"/proc/{pid}/comm")
    if pid <= 0 or not comm.exists() or comm.read_text().strip() != "systemd-journal" \
            or not _in_cgroup(pid, res.cgroup):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _teardown(res: _Resources) -> None:
    """Idempotent: graceful exit, then kill whatever is left in the lab cgroup, then remove it."""
    proc = res.proc
    if proc is not None and proc.poll() is None and res.journald_pidfile is not None:
        _stop_journald(res)
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(["systemctl", "--user", "exit"], env={**os.environ, **res.env},
                           capture_output=True, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    if res.cgroup.is_dir():
        if _cgroup_pids(res.cgroup):
            res.problems.append(f"processes left in {res.cgroup}: killed")
            kill = res.cgroup / "cgroup.kill"  # kernel >= 5.14; kills the whole subtree at once
            if kill.exists():
                with contextlib.suppress(OSError):  # a failure shows up as a cgroup left behind
                    kill.write_text("1")
            else:
                for pid in _cgroup_pids(res.cgroup):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
            deadline = time.monotonic() + 5
            while _cgroup_pids(res.cgroup) and time.monotonic() < deadline:
                time.sleep(0.02)
        for dirpath, _, _ in sorted(os.walk(res.cgroup), key=lambda w: -len(w[0])):  # deepest first
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                res.problems.append(f"cannot remove cgroup {dirpath}: {e}")
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # reap it (it was in the cgroup, so it is dead by now)
        if proc.poll() is None:
            res.problems.append(f"manager pid {proc.pid} still running")
    res.pump.close()


# ------------------------------------------------------------------------------------------ bindings
class _Binding(Protocol):
    """The two transports, reduced to what the lab needs; both return plain Python values."""

    def call(self, path: str, iface: str, method: str, sig: str = "", *args: Any, dest: str = DEST) -> Any:
        ...
    def get(self, path: str, iface: str, prop: str, sig: str) -> Any: ...
    def close(self) -> None: ...


def _plain_pystemd(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list | tuple):
        return [_plain_pystemd(x) for x in v]
    return v  # bool / int / float are already plain


class _Pystemd:
    def __init__(self, address: str) -> None:
        from pystemd.dbuslib import DBusAddress

        # NOT DBus(): with no bus pystemd silently talks to the *system* bus; DBusAddress needs no
        # environment variables at all, so os.environ stays untouched.
        self._bus = DBusAddress(address.encode())
        self._bus.open()

    def call(self, path: str, iface: str, method: str, sig: str = "", *args: Any, dest: str = DEST) -> Any:
        from pystemd.dbuslib import apply_signature

        call_args = apply_signature(sig.encode(), list(args)) if sig else []
        reply = self._bus.call_method(dest.encode(), path.encode(), iface.encode(), method.encode(),
                                      call_args)
        return _plain_pystemd(reply.body)

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        from pystemd.dbusexc import DBusBaseError

        try:
            # sd_bus_get_property() enters the variant with `sig` and fails (ENXIO) on any mismatch
            raw = self._bus.get_property(DEST.encode(), path.encode(), iface.encode(), prop.encode(),
                                         sig.encode())
        except DBusBaseError as e:
            if e.errno == -errno.ENXIO:
                raise SignatureError(f"{iface}.{prop}: not of type {sig!r} ({e})") from e
            raise
        return _plain_pystemd(raw)

    def close(self) -> None:
        self._bus.close()


def _dbus_sig(v: Any) -> str:
    """The D-Bus signature of a value as dbus-python unmarshalled it."""
    import dbus

    basic = ((dbus.Boolean, "b"), (dbus.Byte, "y"), (dbus.Int16, "n"), (dbus.UInt16, "q"),
             (dbus.Int32, "i"), (dbus.UInt32, "u"), (dbus.Int64, "x"), (dbus.UInt64, "t"),
             (dbus.Double, "d"), (dbus.ObjectPath, "o"), (dbus.Signature, "g"), (dbus.String, "s"))
    for cls, code in basic:
        if isinstance(v, cls):
            return code
    if isinstance(v, dbus.Array):
        return "a" + (v.signature or _dbus_sig(v[0]))  # arrays from the wire carry their signature
    if isinstance(v, dbus.Struct):
        return "(" + "".join(_dbus_sig(x) for x in v) + ")"
    raise SignatureError(f"unexpected dbus-python value {v!r}")


def _plain_dbus_python(v: Any) -> Any:
    import dbus

    if v is None or isinstance(v, bool):  # None: a method without a reply value
        return v
    if isinstance(v, dbus.Boolean):  # an int subclass, not a bool
        return bool(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, list | tuple):
        return [_plain_dbus_python(x) for x in v]
    raise LabError(f"unexpected dbus-python value {v!r}")


class _DbusPython:
    def __init__(self, address: str) -> None:
        import dbus.bus

        self._conn = dbus.bus.BusConnection(address)  # a private connection to exactly this bus

    def call(self, path: str, iface: str, method: str, sig: str = "", *args: Any, dest: str = DEST) -> Any:
        return _plain_dbus_python(self._conn.call_blocking(dest, path, iface, method, sig, args))

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        v = self._conn.call_blocking(DEST, path, "org.freedesktop.DBus.Properties", "Get", "ss",
                                     (iface, prop))
        got = _dbus_sig(v)
        if got != sig:
            raise SignatureError(f"{iface}.{prop}: got {got!r}, expected {sig!r}")
        return _plain_dbus_python(v)

    def close(self) -> None:
        self._conn.close()


# ------------------------------------------------------------------------------------------ the lab
class UserManagerLab:
    """`systemd --user` + its own session bus, rooted in `workdir`.  Use as a context manager."""

    def __init__(self, workdir: Path, *, log_level: str = "info", netns: str | None = None,
                 journald: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.log_level = log_level
        self.netns = netns  # run the manager (and so its services) inside this network namespace
        # journald=True: a real systemd-journald, private to the lab, runs before the manager starts; its
        # journal is only visible inside the lab's mount namespace (see run_inside() and journalctl())
        self.journald = journald
        self.journald_dir = self.workdir / "journald"
        rt = self.workdir / "run"
        self.env: dict[str, str] = {
            "XDG_RUNTIME_DIR": str(rt),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "XDG_STATE_HOME": str(self.workdir / "state"),
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
            "HOME": str(self.workdir / "home"),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={rt}/bus",
        }
        self.bus_address = self.env["DBUS_SESSION_BUS_ADDRESS"]
        self.unit_dir = self.workdir / "config" / "systemd" / "user"
        self.log_path = self.workdir / "manager.log"
        self.launcher_log = self.workdir / "launcher.log"
        self.start_seconds: float | None = None
        self._bindings: dict[str, _Binding] = {}
        self._refs: set[tuple[str, str]] = set()
        self._res: _Resources | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- lifecycle
    def __enter__(self) -> UserManagerLab:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        if self._res is not None:
            raise LabError("lab already started")
        t0 = time.monotonic()
        rt = Path(self.env["XDG_RUNTIME_DIR"])
        if len(str(rt / "systemd" / "private")) > 100:
            raise LabError(f"workdir path too long for unix sockets: {self.workdir}")
        rt.mkdir(mode=0o700, parents=True, exist_ok=True)
        for key in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "HOME"):
            Path(self.env[key]).mkdir(parents=True, exist_ok=True)
        self.unit_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        journald = journald_binary() if self.journald else None
        if self.journald and journald is None:
            raise LabError(f"journald=True but no systemd-journald in {JOURNALD_PATHS}")

        mnt = cgroup2_mount()
        if mnt is None:
            raise LabError("no cgroup2 mount")
        own = next(ln[3:] for ln in Path("/proc/self/cgroup").read_text().splitlines()
                   if ln.startswith("0::"))
        cgroup = mnt / own.lstrip("/") / f"mailpreflight-lab.{os.getpid()}.{id(self):x}"
        try:
            cgroup.mkdir()  # a fresh child: never the cgroup we (or the host's init) run in
        except OSError as e:
            raise LabError(f"cannot create the lab cgroup {cgroup}: {e}") from e
        if journald:
            self.journald_dir.mkdir(exist_ok=True)
            (self.journald_dir / "journald.pid").unlink(missing_ok=True)
            (self.journald_dir / "journald.conf").write_text(JOURNALD_CONF)
            (self.journald_dir / "start-journald.sh").write_text(_START_JOURNALD)
        self._res = res = _Resources(cgroup=cgroup, env=dict(self.env),
                                     pump=_LogPump(self.workdir / "kmsg.fifo", self.log_path),
                                     journald_pidfile=self.journald_dir / "journald.pid" if journald else None)
        # The safety net: runs on stop(), on garbage collection, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _teardown, res)
        try:
            self._launch(res, journald)
            self._wait_ready(res, t0 + timeout)
        except BaseException:
            self.stop(check=False)
            raise
        self.start_seconds = time.monotonic() - t0

    def _launch(self, res: _Resources, journald: str | None = None) -> None:
        # the manager passes its own environment on to services: keep it minimal and predictable
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               **self.env}
        with self.launcher_log.open("wb") as out:
            res.proc = subprocess.Popen(
                ["/bin/sh", "-c", _OUTER, "sh", str(res.cgroup / "cgroup.procs"),
                 *(["ip", "netns", "exec", self.netns] if self.netns else []),
                 "unshare", "--mount", "--cgroup", "--propagation", "private",
                 "/bin/sh", "-c", _INNER, "sh", str(self.workdir / "kmsg.fifo"), SYSTEMD, self.log_level,
                 os.readlink("/proc/self/ns/cgroup"), *([journald, str(self.journald_dir)] if journald else [])],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True)  # own session: a ^C to pytest does not hit the manager

    def _wait_ready(self, res: _Resources, deadline: float) -> None:
        assert res.proc is not None
        private = Path(self.env["XDG_RUNTIME_DIR"]) / "systemd" / "private"
        state = ""
        while state not in ("running", "degraded"):
            if res.proc.poll() is not None:
                self._fail(f"manager exited with status {res.proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"manager not ready (SystemState={state!r})")
            if private.exists():
                state = self.systemctl("show", "-p", "SystemState", "--value").stdout.strip()
            if state not in ("running", "degraded"):
                time.sleep(0.01)
        # Belt and braces: the manager must sit in the lab cgroup, as seen from the host.
        cg = Path(f"/proc/{res.proc.pid}/cgroup").read_text()
        rel = "/" + str(res.cgroup.relative_to(cgroup2_mount() or "/"))
        pid = res.proc.pid
        if (f"0::{rel}/" not in cg or Path(f"/proc/{pid}/comm").read_text().strip() != "systemd"
                or os.readlink(f"/proc/{pid}/ns/cgroup") == os.readlink("/proc/self/ns/cgroup")):
            self._fail(f"manager pid {pid} is not systemd in a private cgroupns at {rel}: {cg!r}")
        # The session bus is the manager's own dbus.socket/dbus.service (dbus-user-session); the
        # manager registers org.freedesktop.systemd1 once dbus.service is up.
        r = self.systemctl("start", "dbus.service")
        if r.returncode != 0:
            self._fail(f"cannot start dbus.service: {r.stderr.strip()}")
        bus = self._binding("dbus-python")
        while not bus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", DEST,
                           dest="org.freedesktop.DBus"):
            if time.monotonic() > deadline:
                self._fail("org.freedesktop.systemd1 never appeared on the session bus")
            time.sleep(0.01)

    def _fail(self, why: str) -> None:
        launcher = self.launcher_log.read_text(errors="replace").strip()
        tail = "\n".join(self.manager_log().splitlines()[-40:])
        raise LabError(f"systemd lab failed to start: {why}\n--- launcher output ---\n{launcher}"
                       f"\n--- manager log (tail) ---\n{tail}")

    def stop(self, check: bool = True) -> None:
        """Tear down; safe to call twice.  Raises if anything had to be killed or left behind."""
        for b in self._bindings.values():
            with contextlib.suppress(Exception):
                b.close()
        self._bindings.clear()
        self._refs.clear()
        if self._finalizer is None or self._res is None:
            return
        self._finalizer()  # runs _teardown once; later calls (and the atexit hook) are no-ops
        problems, self._res.problems = self._res.problems, []
        if check and problems:
            raise LabError("systemd lab teardown: " + "; ".join(problems))

    # -- helpers
    def manager_log(self) -> str:
        if self._res is not None:
            self._res.pump.sync()
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_bytes().replace(b"\0", b"").decode(errors="replace")
        return ""

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"}
        return subprocess.run(["systemctl", "--user", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    def run_inside(self, argv: list[str], env: dict[str, str] | None = None,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run argv in the manager's mount (and network) namespace -- where the lab's /run/systemd, and with
        journald=True its journal, are -- with the lab's environment.  The process stays in the caller's
        cgroup: only the namespaces are entered, never the lab cgroup."""
        if self._res is None or self._res.proc is None or self._res.proc.poll() is not None:
            raise LabError("the lab is not running")
        pid = self._res.proc.pid
        if not _in_cgroup(pid, self._res.cgroup):
            raise LabError(f"pid {pid} is no longer the lab's manager")
        return subprocess.run(["nsenter", f"--target={pid}", "--mount", *(["--net"] if self.netns else []),
                               "--", *argv],
                              env={**os.environ, **self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def journalctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """journalctl inside the lab (journald=True), reading the lab's private journal."""
        if not self.journald:
            raise LabError("this lab runs no journald (UserManagerLab(..., journald=True))")
        return self.run_inside(["journalctl", "--no-pager", *args])

    def _binding(self, name: str) -> _Binding:
        if name not in BINDINGS:
            raise ValueError(f"binding must be one of {BINDINGS}, not {name!r}")
        if name not in self._bindings:  # one connection per binding, held for the lab's life
            self._bindings[name] = _Pystemd(self.bus_address) if name == "pystemd" else \
                _DbusPython(self.bus_address)
        return self._bindings[name]

    def reload(self) -> None:
        """daemon-reload; the D-Bus reply only comes once the reload is complete."""
        self._binding("dbus-python").call(MANAGER_PATH, MANAGER_IFACE, "Reload")

    def unit_paths(self) -> list[str]:
        paths: list[str] = self._binding("dbus-python").get(MANAGER_PATH, MANAGER_IFACE, "UnitPath", "as")
        return paths

    def _load(self, b: _Binding, unit: str) -> str:
        path: str = b.call(MANAGER_PATH, MANAGER_IFACE, "LoadUnit", "s", unit)  # GetUnit: not if GC'd
        return path

    def properties(self, unit: str, binding: str) -> dict[str, Any]:
        b = self._binding(binding)
        path = self._load(b, unit)
        props: dict[str, Any] = {k: b.get(path, UNIT_IFACE, k, sig) for k, sig in UNIT_PROPS.items()}
        props["Names"] = sorted(props["Names"])
        is_service = props["LoadState"] == "loaded" and props["Id"].endswith(".service")
        props.update({k: b.get(path, SERVICE_IFACE, k, sig) if is_service else SERVICE_DEFAULTS[k]
                      for k, sig in SERVICE_PROPS.items()})
        props["exec"] = {}
        for key in EXEC_KEYS:
            cmds = b.get(path, SERVICE_IFACE, key, EXEC_SIG) if is_service else []
            cmds_ex = b.get(path, SERVICE_IFACE, key + "Ex", EXEC_EX_SIG) if is_service else []
            if [c[:2] for c in cmds] != [c[:2] for c in cmds_ex]:
                raise LabError(f"{unit}: {key} and {key}Ex disagree: {cmds} vs {cmds_ex}")
            props["exec"][key] = [{"path": c[0], "argv": c[1], "ignore": c[2], "flags": x[2]}
                                  for c, x in zip(cmds, cmds_ex, strict=True)]
        return props

    def start_unit(self, unit: str, binding: str = "dbus-python", timeout: float = 30) -> dict[str, Any]:
        b = self._binding(binding)
        path = self._load(b, unit)
        if (binding, unit) not in self._refs:
            # Pin the unit for this connection's life: an inactive unit is garbage-collected right
            # after its job and would be re-loaded with fresh (zeroed) runtime state.
            b.call(path, UNIT_IFACE, "Ref")
            self._refs.add((binding, unit))
        b.call(path, UNIT_IFACE, "ResetFailed")
        job = b.call(MANAGER_PATH, MANAGER_IFACE, "StartUnit", "ss", unit, "replace")  # only queues
        deadline = time.monotonic() + timeout
        while any(j[4] == job for j in b.call(MANAGER_PATH, MANAGER_IFACE, "ListJobs")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} for {unit} still queued after {timeout}s")
            time.sleep(0.005)
        is_service = unit.endswith(".service")
        result: dict[str, Any] = {
            "ActiveState": b.get(path, UNIT_IFACE, "ActiveState", "s"),
            "SubState": b.get(path, UNIT_IFACE, "SubState", "s"),
            "Result": b.get(path, SERVICE_IFACE, "Result", "s") if is_service else "",
            "ExecMainStatus": b.get(path, SERVICE_IFACE, "ExecMainStatus", "i") if is_service else 0,
            "InvocationID": bytes(b.get(path, UNIT_IFACE, "InvocationID", "ay")).hex(),
        }
        # realtime timestamps (µs since the epoch); code is a CLD_* value (1 = exited)
        result["exec_status"] = {
            key: [{"code": c[8], "status": c[9], "pid": c[7], "start_us": c[3], "exit_us": c[5]}
                  for c in (b.get(path, SERVICE_IFACE, key, EXEC_SIG) if is_service else [])]
            for key in EXEC_KEYS}
        return result
