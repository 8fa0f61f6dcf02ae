"""How long systemd lets a unit's start take (systemd.service(5) TimeoutStartSec=, systemd-system.conf(5)).

The start timer is re-armed for every ExecStartPre/ExecStart/ExecStartPost command, so each command gets
the whole TimeoutStartSec. Type=oneshot has no start timeout unless one is set in the unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.syntax import parse_unit_file
from mailpreflight.units.unit import Unit, service_type

DEFAULT_START_TIMEOUT = 90.0
_UNITS = {
    "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "second": 1.0,
    "seconds": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0,
    "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0, "w": 604800.0,
    "week": 604800.0, "weeks": 604800.0, "M": 2629800.0, "month": 2629800.0, "months": 2629800.0,
    "y": 31557600.0, "year": 31557600.0, "years": 31557600.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Zµ]*)")


def parse_timespan(text: str) -> float | None:
    """parse_sec(): "90", "1min 30s", "2.5h", "infinity". Returns seconds, inf, or None if invalid."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    total, pos = 0.0, 0
    if not text:
        return None
    while pos < len(text):
        match = _PART.match(text, pos)
        if not match or match.end() == pos:
            return None
        unit = match.group(2) or "s"
        if unit not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    return total


@fast_init
@dataclass(frozen=True)
class StartTimeout:
    """How long systemd lets each start command of a unit take (inf: no timeout), and where that value comes from."""

    seconds: float  # inf: no timeout
    learned_from: str

    @property
    def limited(self) -> bool:
        return self.seconds != float("inf")


def manager_default_start_timeout(fs: RootFS) -> StartTimeout:
    """DefaultTimeoutStartSec= from system.conf and its drop-ins (later files win); read once per RootFS."""
    return fs.memo(("manager_default_start_timeout",), lambda: _manager_default(fs))


def _manager_default(fs: RootFS) -> StartTimeout:
    found = StartTimeout(DEFAULT_START_TIMEOUT, "systemd default")
    paths = ["/etc/systemd/system.conf"]
    for directory in ("/usr/lib/systemd/system.conf.d", "/usr/local/lib/systemd/system.conf.d",
                      "/run/systemd/system.conf.d", "/etc/systemd/system.conf.d"):
        paths += [f"{directory}/{n}" for n in fs.listdir(directory) if n.endswith(".conf")]
    for path in paths:
        try:
            parsed = parse_unit_file(fs.read_bytes(path), path, frozenset({"Manager"}))
        except OSError:
            continue
        for assignment in parsed.assignments:
            if assignment.key == "DefaultTimeoutStartSec":
                seconds = parse_timespan(assignment.value)
                if seconds is not None:
                    found = StartTimeout(seconds or float("inf"), str(assignment.source))
    return found


def start_timeout(unit: Unit, fs: RootFS) -> StartTimeout:
    """The effective per-command start timeout of a service."""
    explicit = None
    for assignment in unit.assignments:
        if assignment.section == "Service" and assignment.key in ("TimeoutStartSec", "TimeoutSec"):
            seconds = parse_timespan(assignment.value) if assignment.value else None
            if seconds is not None:
                explicit = StartTimeout(seconds or float("inf"), str(assignment.source))  # 0 = no timeout
    if explicit is not None:
        return explicit
    kind = service_type(unit)
    if kind.name == "oneshot":
        return StartTimeout(float("inf"), f"Type=oneshot ({kind.origin}): no start timeout")
    return manager_default_start_timeout(fs)
