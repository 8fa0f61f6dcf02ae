"""Both D-Bus transports fail with ONE BackendError: one line naming the bus (and unit) and what to do, never a
binding's exception. Fast and without root: real pystemd and dbus-python against sockets nobody serves, and the
bindings' own exception objects; the cases that need a real systemd are in tests/integration/test_live_systemd.py."""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpreflight import cli
from mailpreflight.errors import MailpreflightError
from mailpreflight.live import backend
from mailpreflight.live.backend import BackendError, open_backend
from mailpreflight.live.reload import daemon_reload

KINDS = ("pystemd", "dbus-python", "auto")


def needs(kind: str) -> None:
    for module in {"pystemd": ("pystemd",), "dbus-python": ("dbus",), "auto": ("pystemd", "dbus")}[kind]:
        pytest.importorskip(module)


@pytest.fixture
def dead_socket(tmp_path: Path) -> Iterator[str]:
    """A socket file that exists but where nobody listens: connect() is refused."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    yield f"unix:path={path}"


def one_line(exc: MailpreflightError) -> str:
    text = str(exc)
    assert "\n" not in text and "\x1b" not in text, text
    assert "Traceback" not in text and "DBusBaseError" not in text and "dbus.exceptions" not in text, text
    return text


@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_socket_is_one_backend_error(kind: str, dead_socket: str) -> None:
    needs(kind)
    with pytest.raises(BackendError) as caught:
        open_backend(kind, user=True, address=dead_socket)
    text = one_line(caught.value)
    assert text.startswith(f"cannot talk to systemd on the user bus {dead_socket}: ")
    assert "Connection refused" in text
    assert "DBUS_SESSION_BUS_ADDRESS" in (caught.value.hint or "")  # what to do
    for binding in ("pystemd", "dbus-python"):
        assert (f"{binding}: " in text) == (kind in ("auto", binding)), text


@pytest.mark.parametrize("kind", KINDS)
def test_no_socket_at_all_on_the_system_bus(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs(kind)
    address = f"unix:path={tmp_path}/none/system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    with pytest.raises(BackendError) as caught:
        open_backend(kind)
    text = one_line(caught.value)
    assert f"the system bus {address}" in text and "No such file or directory" in text
    assert "check --root" in (caught.value.hint or "")


def test_the_explain_command_exits_3_with_one_line(dead_socket: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    needs("auto")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", dead_socket)
    for kind in KINDS:
        assert cli.main(["explain", "--user", "--backend", kind, "spamd.service"]) == 3
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith(f"mailpreflight: cannot talk to systemd on the user bus {dead_socket}: "), err


def block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """As if the module were not installed: importing it raises ModuleNotFoundError."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_no_binding_installed(monkeypatch: pytest.MonkeyPatch, dead_socket: str) -> None:
    block(monkeypatch, "pystemd", "dbus")
    with pytest.raises(BackendError) as caught:
        open_backend("auto", user=True, address=dead_socket)
    text = one_line(caught.value)
    assert "pystemd is not installed; dbus-python is not installed" in text
    assert "pip install 'mailpreflight[live]'" in text


def test_auto_falls_back_to_dbus_python_when_pystemd_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                                dead_socket: str) -> None:
    needs("dbus-python")
    block(monkeypatch, "pystemd")
    with pytest.raises(BackendError, match="dbus-python: NoServer: Failed to connect to socket") as caught:
        open_backend("auto", user=True, address=dead_socket)
    assert "pystemd: " not in one_line(caught.value)


def test_a_broken_binding_says_why_it_cannot_be_imported(monkeypatch: pytest.MonkeyPatch, dead_socket: str) -> None:
    block(monkeypatch, "pystemd")
    monkeypatch.setitem(sys.modules, "pystemd", types.ModuleType("pystemd"))
    monkeypatch.setitem(sys.modules, "pystemd.dbusexc", types.ModuleType("pystemd.dbusexc"))  # no DBusBaseError
    with pytest.raises(BackendError, match=r"pystemd cannot be imported \(cannot import name 'DBusBaseError'"):
        open_backend("pystemd", user=True, address=dead_socket)


def test_an_unknown_backend_name() -> None:
    with pytest.raises(BackendError, match="unknown D-Bus backend 'sdbus'"):
        open_backend("sdbus")


@pytest.mark.parametrize("kind", KINDS)
def test_reload_fails_with_the_same_error_saying_to_reload_by_hand(kind: str, dead_socket: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    needs(kind)
    with pytest.raises(BackendError) as caught:
        daemon_reload(user=True, kind=kind, address=dead_socket)
    text = one_line(caught.value)
    assert f"the user bus {dead_socket}" in text and "run `systemctl --user daemon-reload` yourself" in text
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", dead_socket)
    with pytest.raises(BackendError, match=r"run `systemctl daemon-reload` yourself"):
        daemon_reload(kind=kind)


def test_pystemd_errors_are_translated() -> None:
    dbusexc = pytest.importorskip("pystemd.dbusexc")
    cases = [  # as pystemd raises them: DBusError(negative errno, error name or None, message)
        (dbusexc.DBusError(-22, b"org.freedesktop.DBus.Error.InvalidArgs", b"Unit name a b is not valid."),
         "InvalidArgs", "Unit name a b is not valid.", "bad-name"),
        (dbusexc.DBusError(-113, b"org.freedesktop.DBus.Error.ServiceUnknown", b"The name is not activatable"),
         "ServiceUnknown", "The name is not activatable", "no-systemd"),
        (dbusexc.DBusError(-13, b"org.freedesktop.DBus.Error.AccessDenied", b"Access denied"),
         "AccessDenied", "Access denied", "denied"),
        (dbusexc.DBusError(-110, b"org.freedesktop.DBus.Error.NoReply", b"Method call timed out"),
         "NoReply", "Method call timed out", "timeout"),
        (dbusexc.DBusError(-2, None, "Could not open a bus to DBus"),
         "FileNotFound", "Could not open a bus to DBus: No such file or directory", "connect"),
        (dbusexc.DBusError(-104, None, "Failed to read message"),
         "", "Failed to read message: Connection reset by peer", "connect"),
        (dbusexc.DBusError(-107, b"System.Error.ENOTCONN", b"Transport endpoint is not connected"),
         "", "Transport endpoint is not connected", "connect"),  # sd-bus: the bus daemon refused our Hello
        (dbusexc.DBusError(-5, b"com.example.Weird", b"odd"), "Weird", "odd", "other"),
    ]
    for exc, name, text, category in cases:
        failure = backend._pystemd_failure(exc)
        assert (failure.name, failure.text, backend._category(failure)) == (name, text, category), exc


def test_dbus_python_errors_are_translated() -> None:
    exceptions = pytest.importorskip("dbus.exceptions")
    cases = [
        (exceptions.DBusException("Unit x.service not loaded.", name="org.freedesktop.systemd1.NoSuchUnit"),
         "NoSuchUnit", "not-found"),
        (exceptions.DBusException("no owner", name="org.freedesktop.DBus.Error.NameHasNoOwner"),
         "NameHasNoOwner", "no-systemd"),
        (exceptions.DBusException("Unknown method", name="org.freedesktop.DBus.Error.UnknownMethod"),
         "UnknownMethod", "foreign"),
        (exceptions.DBusException("bye", name="org.freedesktop.DBus.Error.Disconnected"), "Disconnected", "connect"),
        (exceptions.DBusException("no name at all"), "", "other"),
    ]
    for exc, name, category in cases:
        failure = backend._dbus_python_failure(exc)
        assert (failure.name, failure.text, backend._category(failure)) == (name, exc.get_dbus_message(), category)


def test_a_hostile_answer_becomes_one_clean_line() -> None:
    answer = "Unit \x1b[2J\x1b]0;owned\x07evil.service\nnot valid\r\u2028\u202e" + "x" * 400
    cleaned = backend._one_line(answer)
    assert "\x1b" not in cleaned and "\n" not in cleaned and "\u2028" not in cleaned and "\u202e" not in cleaned
    assert cleaned.startswith("Unit [2J ]0;owned evil.service not valid") and len(cleaned) == 300


def test_reload_without_any_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    block(monkeypatch, "pystemd", "dbus")
    with pytest.raises(BackendError) as caught:
        daemon_reload()
    assert caught.value.cause == "missing"
    assert one_line(caught.value).endswith(
        "(install the live extra (pip install 'mailpreflight[live]') or run `systemctl daemon-reload` yourself)")
