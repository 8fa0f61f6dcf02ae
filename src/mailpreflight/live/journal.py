"""The journal of one start of a unit, read with journalctl (the journal is systemd's, like D-Bus: only live/
touches it)."""

from __future__ import annotations

import json
import shutil
import subprocess

from mailpreflight.live.backend import LiveUnit


def journal(live: LiveUnit, limit: int = 50) -> tuple[str, ...]:
    """The messages of that invocation, if there is a journal at all.

    No `--user` even for a user unit: journald keeps a user unit's messages in system.journal for root and
    system users, with volatile storage and with SplitMode=none, and `--user` reads only user-UID.journal
    files. Without it journalctl reads every journal the caller may read; the invocation ID selects."""
    if not live.invocation_id or set(live.invocation_id) == {"0"} or shutil.which("journalctl") is None:
        return ()
    argv = ["journalctl", "-o", "json", "--no-pager", "-n", str(limit),
            f"_SYSTEMD_INVOCATION_ID={live.invocation_id}",
            # or the guard's own line, sent with that ID when the unit's stderr is not the journal (fix/journalsend.py)
            "+", f"OBJECT_SYSTEMD_INVOCATION_ID={live.invocation_id}", "_UID=0"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    lines = []
    for raw in done.stdout.splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        message = entry.get("MESSAGE") if isinstance(entry, dict) else None
        if isinstance(message, str):  # a message that is not UTF-8 comes as an array of bytes: left out
            lines.append(message)
    return tuple(lines)
