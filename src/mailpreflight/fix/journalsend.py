"""The guard's warning, into the journal where `journalctl -u UNIT` finds it, whatever the unit's StandardError=.

The guard writes its warning to stderr. When stderr is the journal's stream for this unit (systemd sets
JOURNAL_STREAM=DEV:INODE of that stream, systemd.exec(5)), that is the whole job: journald tags each line with
the unit. When it is not — Debian's spamd.service has StandardError=null, and a booted Debian 12 guest lost the
warning that way — the line is also sent over journald's native protocol (/run/systemd/journal/socket), with
OBJECT_SYSTEMD_UNIT= (OBJECT_SYSTEMD_USER_UNIT= under a user manager) naming the unit: `journalctl -u UNIT`
matches that field in messages from UID 0 (journalctl's add_matches_for_unit), so the line is found even when
journald reads it after the guard has exited and can no longer attribute it by the sender's cgroup.

Standard library only: the guard imports this at every start of the unit.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "mailpreflight"
MESSAGE_MAX = 4096  # characters; one datagram, far below the socket's limit
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}")
UNIT_SUFFIXES = (".service", ".socket", ".mount", ".swap", ".target", ".path", ".timer", ".scope")
USER_MANAGER = re.compile(r"user@\d+\.service")
INVOCATION_ID = re.compile(r"[0-9a-f]{32}")


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """Whether `fd` is the journal stream systemd connected (JOURNAL_STREAM names its device and inode)."""
    dev, sep, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return False
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (int(dev), int(ino))


def own_unit(cgroup_text: str) -> tuple[str, bool] | None:
    """(unit, under a user manager) from /proc/self/cgroup: the innermost path component that is a unit name
    (a slice only groups units). The unified hierarchy (`0::PATH`) first, else the name=systemd one (v1)."""
    paths = {}
    for line in cgroup_text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths["unified"] = path
        elif controllers == "name=systemd":
            paths["v1"] = path
    path = paths.get("unified") or paths.get("v1") or ""
    parts = [p for p in path.split("/") if p]
    for index in range(len(parts) - 1, -1, -1):
        name = parts[index]
        if UNIT_NAME.fullmatch(name) and name.endswith(UNIT_SUFFIXES):
            return name, any(USER_MANAGER.fullmatch(p) for p in parts[:index])
    return None


def entry(message: str, priority: int, unit: str, user: bool, invocation: str = "") -> bytes:
    """One entry of journald's native protocol: KEY=value lines (the message is made one line first). The
    invocation ID lets `explain` find the line among that start's (live/journal.py)."""
    text = " ".join(message.splitlines())[:MESSAGE_MAX]
    field = "OBJECT_SYSTEMD_USER_UNIT" if user else "OBJECT_SYSTEMD_UNIT"
    lines = [f"MESSAGE={text}", f"PRIORITY={priority}", f"SYSLOG_IDENTIFIER={IDENTIFIER}", f"{field}={unit}"]
    if INVOCATION_ID.fullmatch(invocation):
        lines.append(f"OBJECT_SYSTEMD_INVOCATION_ID={invocation}")
    return ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")


def send(message: str, priority: int, environ: Mapping[str, str], socket_path: str = SOCKET,
         cgroup_file: str = "/proc/self/cgroup") -> bool:
    """Send `message` to the journal when this process was started by systemd (INVOCATION_ID set) and its
    stderr is not the journal already. True when sent; False when not needed or not possible (no journald)."""
    if not environ.get("INVOCATION_ID") or stderr_is_journal(environ):
        return False
    try:
        with open(cgroup_file, encoding="utf-8", errors="replace") as f:
            found = own_unit(f.read(65536))
    except OSError:
        return False
    if found is None:
        return False
    unit, user = found
    if user or environ.get("MANAGERPID"):  # MANAGERPID: set by a user manager only (systemd.exec(5))
        user = True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto(entry(message, priority, unit, user, environ.get("INVOCATION_ID", "")), socket_path)
    except OSError:
        return False
    return True
