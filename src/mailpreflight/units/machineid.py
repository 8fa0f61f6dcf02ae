"""A root's /etc/machine-id, read as systemd reads it (sd_id128_get_machine(): id128_read() with
ID128_FORMAT_PLAIN, then sd_id128_from_string(), systemd 252): 32 hexadecimal digits in either case, optionally
followed by one newline and nothing else; the UUID form (8-4-4-4-12), which other id files may hold, is refused
for this one. An empty file and `uninitialized` are what first-boot images ship (the id is made at first boot), and
all zeros is no id: each leaves the id unknown, silently. Anything else is a guest's bad value: reported, and
unknown too. A known id is always 32 lowercase hexadecimal digits (sd_id128_to_string(), what %m gives), so
it is safe in a file name, an error message or any output; a guest's raw value never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpreflight.access.bounded import GuestFileRefused
from mailpreflight.access.rootfs import RootFS

PATH = "/etc/machine-id"
READ_LIMIT = 4096  # systemd reads at most 38 bytes; anything this big is not an id
_HEX = "[0-9a-fA-F]"
_ID = re.compile(rf"({_HEX}{{32}})\n?\Z")
_FIRST_BOOT = ("", "uninitialized", "uninitialized\n")


@dataclass(frozen=True)
class MachineId:
    """The root's machine id as systemd would read it: 32 lowercase hex digits or None when unknown, and why a value
    that is there was not used."""

    value: str | None  # 32 lowercase hex digits, or None: unknown
    problem: str | None = None  # why a value that is there is not used (one line, the raw value quoted short)


def parse_machine_id(text: str) -> MachineId:
    """The contents of /etc/machine-id (decoded, undecodable bytes replaced) -> the id, or why not."""
    if text in _FIRST_BOOT:
        return MachineId(None)
    found = _ID.match(text)
    if found is None:
        return MachineId(None, f"{PATH} is not a machine ID (32 hexadecimal digits, as systemd writes it): "
                               f"{quoted(text)}; the host's machine ID is taken as unknown")
    value = found.group(1).lower()
    return MachineId(None if value == "0" * 32 else value)


def read_machine_id(fs: RootFS) -> MachineId:
    """The root's machine id; a missing file is unknown, an unreadable one unknown and reported (by the gate
    when it refuses the file: too big, not a regular file, ...)."""
    try:
        data = fs.read_bytes(PATH, READ_LIMIT)
    except (FileNotFoundError, GuestFileRefused):  # the gate reports what it refuses (too big, a FIFO, ...)
        return MachineId(None)
    except OSError as exc:
        return MachineId(None, f"{PATH} cannot be read ({exc.strerror or exc}); the host's machine ID is taken "
                               "as unknown")
    return parse_machine_id(data.decode("utf-8", "replace"))


def quoted(text: str, most: int = 40) -> str:
    """A guest's value as a message shows it: quoted with every unprintable character escaped, at most `most`
    characters of it, and its length when it is longer."""
    shown = repr(text[:most])
    return shown if len(text) <= most else f"{shown}... ({len(text):,} characters)"
