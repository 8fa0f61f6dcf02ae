"""Load-time `%` specifiers (systemd.unit(5) "Specifiers"; specifier.c, unit-printf.c of systemd 252).

`%%` is a literal `%`; `%` before a letter or digit that systemd does not know makes the setting invalid;
`%` before anything else, or at the very end, stays as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.unitname import UnitName, path_unescape, unescape

PATH_MAX = 4096
LONG_LINE_MAX = 1024 * 1024

# Values that exist only on a running host. Offline (--root) they are unknown until the guest boots:
# they are kept unexpanded and reported, never guessed.
HOST_ONLY = {"b": "boot ID", "v": "kernel release"}


class SpecifierError(ValueError):
    """systemd refuses the setting (-EBADSLT, -ENAMETOOLONG, a bad escape in the name)."""


@dataclass(frozen=True)
class ManagerContext:
    """What the expanding manager knows about itself and its host.

    `dirs` maps %t %S %C %L %E %T %V to the manager's runtime, state, cache, log, config and temp dirs;
    `user` maps %u %U %g %G %h %s; `host` may hold H l m b v a o w B W M A. A missing host value is
    unknown (offline analysis): the specifier is left as written and noted in `unknown_seen`.
    """

    dirs: Mapping[str, str]
    user: Mapping[str, str]
    host: Mapping[str, str] = field(default_factory=dict)


def system_manager(host: Mapping[str, str] | None = None) -> ManagerContext:
    """The system manager (PID 1) running as root."""
    return ManagerContext(
        dirs={"t": "/run", "S": "/var/lib", "C": "/var/cache", "L": "/var/log", "E": "/etc",
              "T": "/tmp", "V": "/var/tmp"},
        # %s: root's shell as systemd was built (Debian and openSUSE: /bin/bash; upstream's default /bin/sh).
        user={"u": "root", "U": "0", "g": "root", "G": "0", "h": "/root", "s": "/bin/bash"},
        host=dict(host or {}),
    )


def user_manager(env: Mapping[str, str], user: Mapping[str, str], host: Mapping[str, str] | None = None
                 ) -> ManagerContext:
    """A `systemd --user` manager: its dirs follow the XDG variables it was started with."""
    home = env.get("HOME", user.get("h", "/"))
    state = env.get("XDG_STATE_HOME", f"{home}/.local/state")
    return ManagerContext(
        dirs={"t": env.get("XDG_RUNTIME_DIR", f"/run/user/{user.get('U', '0')}"), "S": state,
              "C": env.get("XDG_CACHE_HOME", f"{home}/.cache"), "L": f"{state}/log",
              "E": env.get("XDG_CONFIG_HOME", f"{home}/.config"),
              "T": env.get("TMPDIR", "/tmp"), "V": env.get("TMPDIR", "/var/tmp")},
        user={**user, "h": home},
        host=dict(host or {}),
    )


def host_facts_live(machine_id: str | None) -> dict[str, str]:
    """Host values of the machine we run on (live analysis); `machine_id`: its validated /etc/machine-id
    (units/machineid.py), None when unknown."""
    uname = os.uname()  # platform.machine() and .release() are these
    facts: dict[str, str] = {"a": _architecture(uname.machine), "v": uname.release}
    if machine_id:
        facts["m"] = machine_id
    host = RootFS("/")  # read through the gate like any file a unit names: never a FIFO, at most 4 KiB
    for letter, path in (("H", "/proc/sys/kernel/hostname"), ("b", "/proc/sys/kernel/random/boot_id")):
        text = host.read_text(path, 4096)
        if text is None:
            continue
        value = text.strip()
        facts[letter] = value.replace("-", "") if letter == "b" else value
    if "H" in facts:
        facts["l"] = facts["H"].split(".")[0]
    return facts


def host_facts_from_files(hostname: str | None, machine_id: str | None,
                          os_release: Mapping[str, str]) -> dict[str, str]:
    """Host values of an offline guest, from its /etc/hostname, /etc/machine-id (validated: units/machineid.py)
    and os-release."""
    facts: dict[str, str] = {}
    if hostname:
        facts["H"], facts["l"] = hostname, hostname.split(".")[0]
    if machine_id:
        facts["m"] = machine_id
    for letter, key in (("o", "ID"), ("w", "VERSION_ID"), ("B", "BUILD_ID"), ("W", "VARIANT_ID"),
                        ("M", "IMAGE_ID"), ("A", "IMAGE_VERSION")):
        facts[letter] = os_release.get(key, "")
    return facts


def _architecture(machine: str) -> str:
    names = {"x86_64": "x86-64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "ppc64le": "ppc64-le",
             "s390x": "s390x", "riscv64": "riscv64", "armv7l": "arm"}
    return names.get(machine, machine)


def _last_component(prefix: str) -> str:
    return prefix[prefix.rfind("-") + 1:]


def _unescaped_last_component(prefix: str) -> str:
    last = _last_component(prefix)
    if not last:
        # systemd 252 hits an assertion here and PID 1 aborts while loading the unit.
        raise ValueError("systemd 252 crashes expanding %J when the unit prefix ends in '-'")
    return unescape(last)


# The unit's own specifiers (systemd.unit(5), "Specifiers"), from its name.
_UNIT_SPECIFIERS: dict[str, Callable[[UnitName], str]] = {
    "n": lambda name: name.name,
    "N": lambda name: name.name[: -len(name.type) - 1],
    "p": lambda name: name.prefix,
    "P": lambda name: unescape(name.prefix),
    "i": lambda name: name.instance or "",
    "I": lambda name: unescape(name.instance or ""),
    "j": lambda name: _last_component(name.prefix),
    "J": lambda name: _unescaped_last_component(name.prefix),
    "f": lambda name: path_unescape(name.instance if name.instance else name.prefix),
    "d": lambda name: f"/run/credentials/{name.name}",
}


UNIT_FREE_MAX = 1024  # characters of a value without `%` the parsers remember (execline, environ): 256 each


class NoSpecifiers:
    """What Expander.expand() does with a text without `%`, for any unit: parsers of a value no unit can change
    remember what they made of it (units/execline.py, units/environ.py: `_unit_free`)."""

    def expand(self, text: str, max_length: int = LONG_LINE_MAX) -> str:
        if len(text) >= max_length:
            raise SpecifierError("result too long")
        return text


@dataclass
class Expander:
    """Expands specifiers for one unit; remembers specifiers left unexpanded because they are unknown."""

    name: UnitName
    manager: ManagerContext
    unknown_seen: set[str] = field(default_factory=set)

    def expand(self, text: str, max_length: int = LONG_LINE_MAX) -> str:
        if "%" not in text:
            if len(text) >= max_length:
                raise SpecifierError("result too long")
            return text
        out: list[str] = []
        start, length = 0, len(text)
        while True:  # the text between specifiers is copied at once
            pos = text.find("%", start)
            if pos < 0:
                out.append(text[start:])
                break
            out.append(text[start:pos])
            if pos + 1 == length:
                out.append("%")  # a stray % at the very end stays
                break
            letter = text[pos + 1]
            start = pos + 2
            if letter == "%":
                out.append("%")
            elif letter in _UNIT_SPECIFIERS:
                try:
                    out.append(_UNIT_SPECIFIERS[letter](self.name))
                except ValueError as exc:
                    raise SpecifierError(f"cannot resolve %{letter}: {exc}") from exc
            elif letter in self.manager.dirs:
                out.append(self.manager.dirs[letter])
            elif letter in self.manager.user:
                out.append(self.manager.user[letter])
            elif letter in "HlmbvaowBWMA":
                value = self.manager.host.get(letter)
                if value is None:
                    self.unknown_seen.add(letter)
                    out.append("%" + letter)
                else:
                    out.append(value)
            elif letter.isascii() and letter.isalnum():
                raise SpecifierError(f"unknown specifier %{letter}")
            else:
                out.append("%" + letter)
        result = "".join(out)
        if len(result) >= max_length:
            raise SpecifierError("result too long")
        return result
