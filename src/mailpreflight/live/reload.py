"""Ask systemd to reload its units (daemon-reload) over the same transport as `explain`: pystemd first,
dbus-python if pystemd is not installed, on the system bus or the user manager's bus."""

from __future__ import annotations

from mailpreflight.live.backend import BackendError, open_backend


def daemon_reload(user: bool = False, kind: str = "auto", address: str | None = None) -> None:
    """Returns once systemd has reloaded (Manager.Reload replies when done). Raises BackendError, one line:
    which bus, why, and to run `systemctl daemon-reload` yourself."""
    by_hand = f"run `systemctl{' --user' if user else ''} daemon-reload` yourself"
    try:
        backend = open_backend(kind, user, address)
    except BackendError as exc:
        hint = f"install the live extra (pip install 'mailpreflight[live]') or {by_hand}" \
            if exc.cause == "missing" else by_hand
        raise BackendError(exc.message, cause=exc.cause, hint=hint) from exc
    try:
        backend.reload()
    except BackendError as exc:
        raise BackendError(exc.message, cause=exc.cause, hint=by_hand) from exc
    finally:
        backend.close()
