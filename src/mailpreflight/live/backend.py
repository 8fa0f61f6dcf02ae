"""What systemd itself holds about a unit, over D-Bus (pystemd or dbus-python), decoded into the project's own
dataclasses: no bytes and no binding types leak out. The files backend (offline, --root) has the same shape
without runtime state."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailpreflight.errors import MailpreflightError
from mailpreflight.units.execline import EXEC_KEYS, PREFIX_FLAGS
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.timeouts import start_timeout
from mailpreflight.units.unit import service_type

DEST = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
EXEC_SIG = "a(sasbttttuii)"  # path, argv, ignore, start realtime/monotonic, exit realtime/monotonic, pid, code, status
EXEC_EX_SIG = "a(sasasttttuii)"  # the same with the prefix flags as strings
UNIT_PROPS = {"Id": "s", "LoadState": "s", "ActiveState": "s", "SubState": "s", "FragmentPath": "s",
              "DropInPaths": "as", "Wants": "as", "After": "as", "InvocationID": "ay", "NeedDaemonReload": "b"}
SERVICE_PROPS = {"Result": "s", "TimeoutStartUSec": "t", "Environment": "as", "ExecMainCode": "i",
                 "ExecMainStatus": "i", "Type": "s"}
USEC_INFINITY = 2**64 - 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3


class BackendError(MailpreflightError):
    """systemd cannot be reached or answered something unexpected."""


@dataclass(frozen=True)
class ExecRun:
    """One Exec command as systemd holds it, with what happened the last time it ran."""

    path: str
    argv: tuple[str, ...]
    ignore: bool
    flags: tuple[str, ...]
    start_us: int  # realtime, 0 = never started
    exit_us: int
    pid: int
    code: int  # CLD_EXITED, CLD_KILLED, CLD_DUMPED, 0 = still running or never ran
    status: int  # exit status or signal number


@dataclass(frozen=True)
class LiveUnit:
    id: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    invocation_id: str
    fragment_path: str
    dropin_paths: tuple[str, ...]
    wants: tuple[str, ...]
    after: tuple[str, ...]
    environment: tuple[str, ...]
    timeout_start_s: float | None  # None = infinity
    service_type: str
    need_daemon_reload: bool
    exec: dict[str, tuple[ExecRun, ...]] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def unit(self, name: str) -> LiveUnit: ...


def bus_address(user: bool) -> str:
    if user:
        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        return address or f"unix:path={runtime}/bus"
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


class _Transport(Protocol):
    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any: ...
    def get(self, path: str, iface: str, prop: str, sig: str) -> Any: ...


class _BusBackend:
    """Reads a unit through a transport; the two bindings differ only in the transport."""

    name = "bus"

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    def unit(self, name: str) -> LiveUnit:
        t = self._transport
        path = str(t.call(MANAGER_PATH, MANAGER_IFACE, "LoadUnit", "s", name))
        props = {k: t.get(path, UNIT_IFACE, k, sig) for k, sig in UNIT_PROPS.items()}
        service = props["Id"].endswith(".service") and props["LoadState"] == "loaded"
        sprops = {k: t.get(path, SERVICE_IFACE, k, sig) for k, sig in SERVICE_PROPS.items()} if service else {}
        runs: dict[str, tuple[ExecRun, ...]] = {}
        for key in EXEC_KEYS if service else ():
            plain = t.get(path, SERVICE_IFACE, key, EXEC_SIG)
            extended = t.get(path, SERVICE_IFACE, key + "Ex", EXEC_EX_SIG)
            if [p[:2] for p in plain] != [e[:2] for e in extended]:
                raise BackendError(f"{name}: {key} and {key}Ex disagree")
            runs[key] = tuple(ExecRun(str(p[0]), tuple(str(a) for a in p[1]), bool(p[2]), tuple(str(f) for f in e[2]),
                                      int(p[3]), int(p[5]), int(p[7]), int(p[8]), int(p[9]))
                              for p, e in zip(plain, extended, strict=True))
        timeout = int(sprops.get("TimeoutStartUSec", 0))
        return LiveUnit(
            id=str(props["Id"]), load_state=str(props["LoadState"]), active_state=str(props["ActiveState"]),
            sub_state=str(props["SubState"]), result=str(sprops.get("Result", "")),
            invocation_id=bytes(props["InvocationID"]).hex(), fragment_path=str(props["FragmentPath"]),
            dropin_paths=tuple(str(p) for p in props["DropInPaths"]), wants=tuple(str(w) for w in props["Wants"]),
            after=tuple(str(a) for a in props["After"]),
            environment=tuple(str(e) for e in sprops.get("Environment", [])),
            timeout_start_s=None if timeout in (0, USEC_INFINITY) else timeout / 1e6,
            service_type=str(sprops.get("Type", "")), need_daemon_reload=bool(props["NeedDaemonReload"]),
            exec=runs)


class _Pystemd:
    def __init__(self, address: str) -> None:
        from pystemd.dbuslib import DBusAddress

        self._bus = DBusAddress(address.encode())  # an explicit address: never the wrong bus by default
        self._bus.open()

    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any:
        from pystemd.dbuslib import apply_signature

        reply = self._bus.call_method(DEST.encode(), path.encode(), iface.encode(), method.encode(),
                                      apply_signature(sig.encode(), list(args)) if sig else [])
        return _plain(reply.body[0] if isinstance(reply.body, list | tuple) and len(reply.body) == 1
                      else reply.body)

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        from pystemd.dbusexc import DBusBaseError

        try:  # sd_bus_get_property() fails with ENXIO when the variant is not of type `sig`
            return _plain(self._bus.get_property(DEST.encode(), path.encode(), iface.encode(), prop.encode(),
                                                 sig.encode()), keep_bytes=sig == "ay")
        except DBusBaseError as exc:
            if exc.errno == -errno.ENXIO:
                raise BackendError(f"{iface}.{prop} is not of type {sig}") from exc
            raise


def _plain(value: Any, keep_bytes: bool = False) -> Any:
    if isinstance(value, bytes):
        return value if keep_bytes else value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _DbusPython:
    def __init__(self, address: str) -> None:
        import dbus.bus

        self._conn = dbus.bus.BusConnection(address)

    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any:
        return self._conn.call_blocking(DEST, path, iface, method, sig, args)

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        value = self._conn.call_blocking(DEST, path, "org.freedesktop.DBus.Properties", "Get", "ss", (iface, prop),
                                         byte_arrays=sig == "ay")
        got = _signature(value)
        if got != sig and not (sig == "ay" and isinstance(value, bytes | bytearray)):
            raise BackendError(f"{iface}.{prop}: got {got}, expected {sig}")
        return _plain_dbus(value)


def _signature(value: Any) -> str:
    import dbus

    for cls, code in ((dbus.Boolean, "b"), (dbus.Byte, "y"), (dbus.Int32, "i"), (dbus.UInt32, "u"),
                      (dbus.Int64, "x"), (dbus.UInt64, "t"), (dbus.ObjectPath, "o"), (dbus.String, "s"),
                      (dbus.ByteArray, "ay")):
        if isinstance(value, cls):
            return code
    if isinstance(value, dbus.Array):
        return "a" + (value.signature or (_signature(value[0]) if len(value) else ""))
    if isinstance(value, dbus.Struct):
        return "(" + "".join(_signature(v) for v in value) + ")"
    return "?"


def _plain_dbus(value: Any) -> Any:
    import dbus

    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return [_plain_dbus(v) for v in value]
    return value


def open_backend(kind: str = "auto", user: bool = False, address: str | None = None) -> Backend:
    """pystemd first, dbus-python if pystemd is not installed; `kind` forces one."""
    target = address or bus_address(user)
    errors = []
    for name, factory in (("pystemd", _Pystemd), ("dbus-python", _DbusPython)):
        if kind not in ("auto", name):
            continue
        try:
            transport = factory(target)
        except ImportError:
            errors.append(f"{name} is not installed")
            continue
        except Exception as exc:
            errors.append(f"{name}: {exc}")
            continue
        backend = _BusBackend(transport)
        backend.name = name
        return backend
    raise BackendError(f"cannot reach systemd on {target}: {'; '.join(errors)}",
                       hint="install the live extra (pip install 'mailpreflight[live]') and run on the host, "
                            "or use `check --root` offline")


class FilesBackend:
    """The same shape from the unit files alone (offline, --root): no runtime state, nothing has run."""

    name = "files"

    def __init__(self, loader: UnitLoader) -> None:
        self.loader = loader

    def unit(self, name: str) -> LiveUnit:
        unit = self.loader.load(name)
        timeout = start_timeout(unit, self.loader.fs)
        return LiveUnit(
            id=unit.id, load_state=unit.load_state.value, active_state="unknown", sub_state="unknown", result="",
            invocation_id="", fragment_path=unit.fragment_path or "", dropin_paths=unit.dropin_paths,
            wants=tuple(v for a in unit.values("Unit", "Wants") for v in a.value.split()),
            after=tuple(v for a in unit.values("Unit", "After") for v in a.value.split()),
            environment=tuple(f"{n}={v}" for n, v, _ in unit.environment),
            timeout_start_s=timeout.seconds if timeout.limited else None,
            service_type=service_type(unit).name, need_daemon_reload=False,
            exec={key: tuple(ExecRun(c.path, c.argv, c.ignore_failure, _flags(c.prefixes), 0, 0, 0, 0, 0)
                             for c in unit.exec.get(key, ())) for key in EXEC_KEYS})


def _flags(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """systemd's ExecXxxEx flag names, in systemd's fixed order ('@' has none)."""
    order = ("ignore-failure", "privileged", "no-setuid", "ambient", "no-env-expand", "via-shell")
    names = {PREFIX_FLAGS[p] for p in prefixes if p != "@"}
    return tuple(f for f in order if f in names)
