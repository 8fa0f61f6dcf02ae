"""Ask systemd to reload its units over D-Bus: pystemd first, dbus-python if pystemd is not installed."""

from __future__ import annotations


def daemon_reload(user: bool = False) -> str | None:
    """None when done; otherwise a one-line reason (systemd not reachable, no binding installed)."""
    try:
        from pystemd.dbuslib import DBus
        from pystemd.systemd1 import Manager
    except ImportError:
        return _reload_dbus_python(user)
    try:
        with DBus(user_mode=user) as bus:
            manager = Manager(bus=bus, _autoload=True)
            manager.Manager.Reload()
    except Exception as exc:
        return f"systemd not reachable over D-Bus ({exc}); run `systemctl daemon-reload` yourself"
    return None


def _reload_dbus_python(user: bool) -> str | None:
    try:
        import dbus
    except ImportError:
        return "neither pystemd nor dbus-python is installed (pip install 'mailpreflight[live]'); " \
               "run `systemctl daemon-reload` yourself"
    try:
        bus = dbus.SessionBus() if user else dbus.SystemBus()
        manager = dbus.Interface(bus.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1"),
                                 "org.freedesktop.systemd1.Manager")
        manager.Reload()
    except Exception as exc:
        return f"systemd not reachable over D-Bus ({exc}); run `systemctl daemon-reload` yourself"
    return None
