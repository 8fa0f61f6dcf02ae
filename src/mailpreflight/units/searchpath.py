"""Unit search paths (systemd.unit(5) "Unit File Load Path"; path-lookup.c of systemd 252).

`systemd-analyze unit-paths` prints a live system's list; tests compare against it and against the user
manager's own UnitPath property.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.distro import distribution, os_release

__all__ = ["os_release", "search_paths_for", "system_search_paths", "systemd_version", "user_search_paths"]

DEFAULT_SYSTEMD_VERSION = 252
_SHARED_LIB = re.compile(r"libsystemd-(?:shared|core)-(\d+)")


def system_search_paths(split_usr: bool) -> list[str]:
    """The system manager's list, highest priority first. `split_usr`: Debian-built systemd < 255
    also searches /lib/systemd/system (before /usr/lib)."""
    distribution = ["/usr/lib/systemd/system"]
    if split_usr:
        distribution.insert(0, "/lib/systemd/system")
    return [
        "/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
        "/run/systemd/generator.early", "/etc/systemd/system", "/etc/systemd/system.attached",
        "/run/systemd/system", "/run/systemd/system.attached", "/run/systemd/generator",
        "/usr/local/lib/systemd/system", *distribution, "/run/systemd/generator.late",
    ]


def user_search_paths(env: Mapping[str, str]) -> list[str]:
    """A user manager's list, from the XDG variables it runs with."""
    home = env.get("HOME", "/root")
    config = env.get("XDG_CONFIG_HOME", f"{home}/.config")
    runtime = env.get("XDG_RUNTIME_DIR", "/run/user/0")
    data_home = env.get("XDG_DATA_HOME", f"{home}/.local/share")
    data_dirs = [d for d in env.get("XDG_DATA_DIRS", "/usr/local/share:/usr/share").split(":") if d]
    config_dirs = [d for d in env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d]
    return [
        f"{config}/systemd/user.control", f"{runtime}/systemd/user.control", f"{runtime}/systemd/transient",
        f"{runtime}/systemd/generator.early", f"{config}/systemd/user",
        *(f"{d}/systemd/user" for d in config_dirs), "/etc/systemd/user",
        f"{runtime}/systemd/user", "/run/systemd/user", f"{runtime}/systemd/generator",
        f"{data_home}/systemd/user", *(f"{d}/systemd/user" for d in data_dirs),
        "/usr/local/lib/systemd/user", "/usr/lib/systemd/user", f"{runtime}/systemd/generator.late",
    ]


def systemd_version(fs: RootFS) -> int:
    """The tree's systemd version from its private shared library's name; 252 if it cannot be told.
    Debian ships it in the multiarch dir (libsystemd-shared: /usr/lib/x86_64-linux-gnu/systemd/)."""
    multiarch = [f"/usr/lib/{name}/systemd" for name in fs.listdir("/usr/lib") if "-linux-" in name]
    for directory in ("/usr/lib/systemd", "/lib/systemd", "/usr/lib64/systemd", *multiarch):
        for name in fs.listdir(directory):
            match = _SHARED_LIB.match(name)
            if match:
                return int(match.group(1))
    return DEFAULT_SYSTEMD_VERSION


def search_paths_for(fs: RootFS, version: int) -> list[str]:
    """Debian and its derivatives built systemd with a split /usr layout until 255 (the distribution as
    units/distro.py tells it). A tree that does not say what it is gets /lib/systemd/system too when that is a
    real directory of its own."""
    found = distribution(fs)
    if not found.known:
        lib = fs.chase("/lib/systemd/system")
        return system_search_paths(split_usr=lib is not None and lib != fs.chase("/usr/lib/systemd/system"))
    return system_search_paths(split_usr=found.debian and version < 255)
