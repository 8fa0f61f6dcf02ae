"""What systemd itself holds about a unit, over D-Bus (pystemd or dbus-python), decoded into the project's own
dataclasses: no bytes and no binding types leak out, and no binding exception either -- every failure of either
transport (cannot import, cannot connect, systemd absent, an error reply, an answer of the wrong type) becomes one
BackendError naming the bus, the unit and what to do. The files backend (offline, --root) has the same shape
without runtime state."""

from __future__ import annotations

import contextlib
import errno
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailpreflight.errors import MailpreflightError
from mailpreflight.model import ExecRun
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
    """systemd cannot be reached or answered something unexpected: the only error live/ raises. `cause` says
    which kind of failure: missing (no binding), connect, no-systemd, foreign (not the systemd this tool knows),
    denied, timeout, bad-name, not-found or other."""

    def __init__(self, message: str, *, cause: str = "other", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


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


class _CallFailed(Exception):
    """A transport's failure, free of binding types: the D-Bus error name (short form, e.g. "ServiceUnknown"; ""
    for a local failure), its message, and the errno (positive, 0 if none). Never leaves this module."""

    def __init__(self, name: str, text: str, number: int = 0) -> None:
        super().__init__(f"{name}: {text}" if name else text)
        self.name = name
        self.text = text
        self.number = number


_CONNECT_NAMES = {"FileNotFound", "ConnectionRefused", "NoServer", "BadAddress", "NoNetwork", "Disconnected",
                  "IOError", "AddressInUse"}
_CONNECT_ERRNOS = {errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE,
                   errno.ENOTSOCK, errno.EADDRNOTAVAIL}
_NO_SYSTEMD_NAMES = {"ServiceUnknown", "NameHasNoOwner"}
_FOREIGN_NAMES = {"UnknownObject", "UnknownInterface", "UnknownMethod", "UnknownProperty", "InvalidSignature",
                  "Signature"}
_DENIED_NAMES = {"AccessDenied", "AuthFailed", "InteractiveAuthorizationRequired"}
_TIMEOUT_NAMES = {"NoReply", "Timeout", "TimedOut"}


def _category(failure: _CallFailed) -> str:
    if failure.name in _NO_SYSTEMD_NAMES:
        return "no-systemd"
    if failure.name in _FOREIGN_NAMES:
        return "foreign"
    if failure.name in _DENIED_NAMES or (not failure.name and failure.number in (errno.EACCES, errno.EPERM)):
        return "denied"
    if failure.name in _TIMEOUT_NAMES or (not failure.name and failure.number == errno.ETIMEDOUT):
        return "timeout"
    if failure.name in _CONNECT_NAMES or (not failure.name and failure.number in _CONNECT_ERRNOS):
        return "connect"
    if failure.name == "NoSuchUnit":
        return "not-found"
    if failure.name == "InvalidArgs":
        return "bad-name"
    return "other"


def _hint(category: str, user: bool, unit: str = "") -> str:
    """What to do, in one line, for a failure of that category."""
    ctl = "systemctl --user" if user else "systemctl"
    offline = "for a guest's disk use `mailpreflight check --root DIR`"
    if category == "connect":
        if user:
            return ("run as the unit's user, with its user manager running and DBUS_SESSION_BUS_ADDRESS or "
                    f"XDG_RUNTIME_DIR leading to its bus; {offline}")
        return f"run on the host, where systemd is PID 1 and dbus runs, or set DBUS_SYSTEM_BUS_ADDRESS; {offline}"
    if category == "no-systemd":
        if user:
            return ("no systemd user manager owns this bus: point DBUS_SESSION_BUS_ADDRESS at the manager's own bus "
                    "($XDG_RUNTIME_DIR/bus) or drop --user for a system unit")
        return f"systemd is not running on this bus, is it PID 1? {offline}"
    if category == "foreign":
        return "what answers as org.freedesktop.systemd1 here is not a systemd 243 or newer; use `mailpreflight check`"
    if category == "denied":
        return "run as root for a system unit, or as the unit's user with --user"
    if category == "timeout":
        return f"systemd did not answer in time, busy or hung: retry, or see `{ctl} status`"
    if category == "bad-name":
        return f"give a valid unit name such as spamd.service; `{ctl} list-unit-files` lists them"
    if category == "not-found":
        return f"check the name with `{ctl} list-unit-files`, or {'drop' if user else 'add'} --user"
    return f"see `{ctl} status {unit}`" if unit else f"see `{ctl} status`"


def _one_line(text: str, limit: int = 300) -> str:
    """A server's (or the environment's) text made safe for one line of a terminal: no control characters."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bus_address(user: bool) -> str:
    if user:
        address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        return address or f"unix:path={runtime}/bus"
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


def _where(user: bool, address: str) -> str:
    return f"the {'user' if user else 'system'} bus {_one_line(address, 120)}"


class _Transport(Protocol):
    """Plain Python values out; _CallFailed (never a binding's exception) on any failure."""

    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any: ...
    def get(self, path: str, iface: str, prop: str, sig: str) -> Any: ...
    def close(self) -> None: ...


class BusBackend:
    """Reads a unit through a transport (and asks for a daemon-reload); the two bindings differ only in the
    transport. Every failure is a BackendError naming the bus and the unit."""

    name = "bus"

    def __init__(self, transport: _Transport, user: bool = False, address: str = "") -> None:
        self._transport = transport
        self.user = user
        self.where = _where(user, address)

    def unit(self, name: str) -> LiveUnit:
        try:
            return self._unit(name)
        except _CallFailed as failure:
            category = _category(failure)
            raise BackendError(f"systemd on {self.where}: cannot read unit {_one_line(name)}: "
                               f"{_one_line(str(failure))}", cause=category,
                               hint=_hint(category, self.user, _one_line(name))) from failure

    def reload(self) -> None:
        """daemon-reload (Manager.Reload): the reply comes once the reload is complete."""
        try:
            self._transport.call(MANAGER_PATH, MANAGER_IFACE, "Reload", "")
        except _CallFailed as failure:
            category = _category(failure)
            category = "other" if category == "bad-name" else category
            raise BackendError(f"systemd on {self.where}: daemon-reload failed: {_one_line(str(failure))}",
                               cause=category, hint=_hint(category, self.user)) from failure

    def close(self) -> None:
        self._transport.close()

    def _unit(self, name: str) -> LiveUnit:
        t = self._transport
        path = t.call(MANAGER_PATH, MANAGER_IFACE, "LoadUnit", "s", name)
        if not isinstance(path, str) or not path.startswith(MANAGER_PATH + "/"):
            raise _CallFailed("Signature", f"LoadUnit answered {_one_line(repr(path), 80)}, not a unit object path")
        props = {k: t.get(path, UNIT_IFACE, k, sig) for k, sig in UNIT_PROPS.items()}
        if props["LoadState"] == "not-found":
            raise BackendError(f"systemd on {self.where} has no unit {_one_line(name)} (LoadState=not-found)",
                               cause="not-found", hint=_hint("not-found", self.user))
        service = props["Id"].endswith(".service") and props["LoadState"] == "loaded"
        sprops = {k: t.get(path, SERVICE_IFACE, k, sig) for k, sig in SERVICE_PROPS.items()} if service else {}
        runs: dict[str, tuple[ExecRun, ...]] = {}
        for key in EXEC_KEYS if service else ():
            plain = t.get(path, SERVICE_IFACE, key, EXEC_SIG)
            extended = t.get(path, SERVICE_IFACE, key + "Ex", EXEC_EX_SIG)
            if [p[:2] for p in plain] != [e[:2] for e in extended]:
                raise _CallFailed("Inconsistent", f"{key} and {key}Ex disagree")
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
        from pystemd.dbusexc import DBusBaseError
        from pystemd.dbuslib import DBusAddress, apply_signature

        self._error: type[Exception] = DBusBaseError
        self._apply_signature = apply_signature
        self._bus = DBusAddress(address.encode())  # an explicit address: never the wrong bus by default
        try:
            self._bus.open()
        except DBusBaseError as exc:
            raise _pystemd_failure(exc) from exc

    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any:
        try:
            reply = self._bus.call_method(DEST.encode(), path.encode(), iface.encode(), method.encode(),
                                          self._apply_signature(sig.encode(), list(args)) if sig else [])
        except self._error as exc:
            raise _pystemd_failure(exc) from exc
        return _plain(reply.body[0] if isinstance(reply.body, list | tuple) and len(reply.body) == 1
                      else reply.body)

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        try:  # sd_bus_get_property() fails with ENXIO when the variant is not of type `sig`
            return _plain(self._bus.get_property(DEST.encode(), path.encode(), iface.encode(), prop.encode(),
                                                 sig.encode()), keep_bytes=sig == "ay")
        except self._error as exc:
            failure = _pystemd_failure(exc)
            if failure.number == errno.ENXIO and not failure.name:
                raise _CallFailed("Signature", f"{iface}.{prop} is not of type {sig}") from exc
            raise failure from exc

    def close(self) -> None:
        self._bus.close()


def _pystemd_failure(exc: Exception) -> _CallFailed:
    """pystemd's DBusBaseError: the D-Bus error name is only kept for the base class, subclasses carry it in
    their class name (DBusServiceUnknownError); local failures (connect) carry only a negative errno."""
    raw = getattr(exc, "err_name", b"") or b""
    name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    cls = type(exc).__name__
    if not name and cls != "DBusBaseError" and cls.startswith("DBus") and cls.endswith("Error"):
        name = cls[4:-5]
    # sd-bus names a bare errno System.Error.EXXX: a local failure like the nameless ones
    name = "" if name.startswith("System.Error.") else name.rsplit(".", 1)[-1]
    message = getattr(exc, "err_message", b"") or b""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    number = getattr(exc, "errno", 0)
    number = abs(number) if isinstance(number, int) else 0
    if number and name in ("", "FileNotFound", "ConnectionRefused"):  # a local failure: the errno says why
        with contextlib.suppress(ValueError):
            reason = os.strerror(number)
            text = text if reason in text else f"{text}: {reason}" if text else reason
    return _CallFailed(name, text or cls, number)


def _plain(value: Any, keep_bytes: bool = False) -> Any:
    if isinstance(value, bytes):
        return value if keep_bytes else value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _DbusPython:
    def __init__(self, address: str) -> None:
        import dbus.bus
        import dbus.exceptions

        self._error: type[Exception] = dbus.exceptions.DBusException
        try:
            self._conn = dbus.bus.BusConnection(address)
        except dbus.exceptions.DBusException as exc:
            raise _dbus_python_failure(exc) from exc

    def call(self, path: str, iface: str, method: str, sig: str, *args: Any) -> Any:
        try:
            return _plain_dbus(self._conn.call_blocking(DEST, path, iface, method, sig, args))
        except self._error as exc:
            raise _dbus_python_failure(exc) from exc

    def get(self, path: str, iface: str, prop: str, sig: str) -> Any:
        try:
            value = self._conn.call_blocking(DEST, path, "org.freedesktop.DBus.Properties", "Get", "ss",
                                             (iface, prop), byte_arrays=sig == "ay")
        except self._error as exc:
            raise _dbus_python_failure(exc) from exc
        got = _signature(value)
        if got != sig and not (sig == "ay" and isinstance(value, bytes | bytearray)):
            raise _CallFailed("Signature", f"{iface}.{prop} is of type {got}, not {sig}")
        return _plain_dbus(value)

    def close(self) -> None:
        self._conn.close()


def _dbus_python_failure(exc: Exception) -> _CallFailed:
    get_name = getattr(exc, "get_dbus_name", None)
    get_message = getattr(exc, "get_dbus_message", None)
    name = (get_name() if callable(get_name) else None) or ""
    text = (get_message() if callable(get_message) else None) or str(exc)
    short = str(name).rsplit(".", 1)[-1]
    return _CallFailed(short, str(text))


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


BACKENDS = ("pystemd", "dbus-python")


def open_backend(kind: str = "auto", user: bool = False, address: str | None = None) -> BusBackend:
    """pystemd first, dbus-python if pystemd is not installed (or cannot connect); `kind` forces one.
    Raises BackendError, one line: which bus, why, and what to do."""
    target = address or bus_address(user)
    where = _where(user, target)
    if kind not in ("auto", *BACKENDS):
        raise BackendError(f"unknown D-Bus backend {_one_line(kind, 40)!r}", hint="use auto, pystemd or dbus-python")
    missing: list[str] = []
    failed: list[tuple[str, _CallFailed]] = []
    factories: tuple[tuple[str, type[_Pystemd] | type[_DbusPython]], ...] = (
        ("pystemd", _Pystemd), ("dbus-python", _DbusPython))
    for name, factory in factories:
        if kind not in ("auto", name):
            continue
        try:
            transport = factory(target)
        except ImportError as exc:
            absent = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == name.split("-")[0]
            missing.append(f"{name} is not installed" if absent
                           else f"{name} cannot be imported ({_one_line(str(exc), 120)})")
            continue
        except _CallFailed as failure:
            failed.append((name, failure))
            continue
        backend = BusBackend(transport, user, target)
        backend.name = name
        return backend
    if failed:
        reasons = "; ".join(f"{name}: {_one_line(str(failure), 160)}" for name, failure in failed)
        raise BackendError(f"cannot talk to systemd on {where}: {reasons}", cause=_category(failed[0][1]),
                           hint=_hint(_category(failed[0][1]), user))
    raise BackendError(f"cannot talk to systemd on {where}: {'; '.join(missing)}", cause="missing",
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
