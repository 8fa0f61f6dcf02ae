"""What a service's sandbox lets its processes write and reach (systemd.exec(5), systemd 252).

A booted Debian 12 guest showed why this decides starts: spamd.service has ProtectSystem=full, so a root
sa-update in its ExecStartPre cannot create /etc/spamassassin/sa-update-keys and dies within seconds — the
network never matters (docs/design.md; /work/shared/reference/VM-LAB.md). Read from the unit's own settings:

- ProtectSystem=yes|true: /usr, /boot, /efi read-only; `full`: also /etc; `strict`: the whole tree but the
  API file systems (/dev, /proc, /sys) and the unit's *Directory= (StateDirectory= -> /var/lib/X, ...).
- ProtectHome=yes: /home, /root, /run/user inaccessible; `read-only`: read-only; `tmpfs`: empty, writable.
- ReadOnlyPaths= / ReadWritePaths= / InaccessiblePaths= (the longest matching prefix wins; a `-` prefix only
  ignores a missing path, a `+` one is relative to RootDirectory=).
- PrivateNetwork=yes: only a loopback device; IPAddressDeny=any without a matching IPAddressAllow=: every
  packet refused locally (EPERM); RestrictAddressFamilies= without AF_INET/AF_INET6: no IP sockets at all.
"""

from __future__ import annotations

import ipaddress
import posixpath
from dataclasses import dataclass

from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.loader import Unit
from mailpreflight.units.unit import service_user

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}
_API = ("/dev", "/proc", "/sys")
_DIRECTORIES = {"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache", "LogsDirectory": "/var/log",
                "RuntimeDirectory": "/run", "ConfigurationDirectory": "/etc"}


@fast_init
@dataclass(frozen=True)
class Sandbox:
    """What a service's sandbox settings allow: path rules (read-only, writable or inaccessible, each with its setting),
    why IP traffic cannot leave if it cannot, and the user it runs as."""

    rules: tuple[tuple[str, str, str], ...]  # (path prefix, "ro" | "rw" | "none", where it came from)
    network: str | None  # None: the host's network; else why IP traffic cannot leave (one line)
    user: str | None  # User=, None for root

    def access(self, path: str) -> tuple[str, str]:
        """("rw" | "ro" | "none", why) for a path, by the longest matching rule."""
        best = ("rw", "no sandbox setting covers it", -1)
        for prefix, mode, why in self.rules:
            if _under(path, prefix) and len(prefix) > best[2]:
                best = (mode, why, len(prefix))
        return best[0], best[1]

    def writable(self, path: str) -> tuple[bool, str]:
        mode, why = self.access(path)
        return mode == "rw", why


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _words(unit: Unit, key: str) -> list[tuple[str, str]]:
    """(word, file:line) of a space-separated list setting, resets honoured."""
    return [(word, str(a.source)) for a in unit.values("Service", key) for word in a.value.split()]


def sandbox_of(unit: Unit) -> Sandbox:
    rules: list[tuple[str, str, str]] = []
    protect = unit.last("Service", "ProtectSystem")
    value = (protect.value.strip().lower() if protect else "")
    where = f"ProtectSystem={value} ({protect.source})" if protect else ""
    if value == "strict":
        rules.append(("/", "ro", where))
        rules += [(path, "rw", f"{where}: API file system") for path in _API]
    elif value in _TRUE or value == "full":
        rules += [(path, "ro", where) for path in ("/usr", "/boot", "/efi")]
        if value == "full":
            rules.append(("/etc", "ro", where))
    home = unit.last("Service", "ProtectHome")
    home_value = home.value.strip().lower() if home else ""
    if home and home_value not in _FALSE:
        mode = {"read-only": "ro", "tmpfs": "rw"}.get(home_value, "none")
        rules += [(path, mode, f"ProtectHome={home_value} ({home.source})") for path in ("/home", "/root", "/run/user")]
    for key, mode in (("ReadOnlyPaths", "ro"), ("ReadWritePaths", "rw"), ("InaccessiblePaths", "none")):
        for word, source in _words(unit, key):
            path = word.lstrip("-+")
            if path.startswith("/"):
                rules.append((posixpath.normpath(path), mode, f"{key}={word} ({source})"))
    for key, base in _DIRECTORIES.items():
        for word, source in _words(unit, key):
            name = word.split(":", 1)[0]
            rules.append((posixpath.join(base, name), "rw", f"{key}={word} ({source})"))
    return Sandbox(tuple(rules), _network(unit), service_user(unit))


def _network(unit: Unit) -> str | None:
    private = unit.last("Service", "PrivateNetwork")
    if private and private.value.strip().lower() in _TRUE:
        return f"PrivateNetwork=yes ({private.source}): only a loopback device, every name lookup fails at once"
    families = unit.values("Service", "RestrictAddressFamilies")
    if families:
        words = [w for a in families for w in a.value.split()]
        deny = bool(words) and words[0].startswith("~")
        listed = {w.lstrip("~") for w in words}
        ip_allowed = not ({"AF_INET", "AF_INET6"} <= listed) if deny else bool({"AF_INET", "AF_INET6"} & listed)
        if words and not ip_allowed:
            return (f"RestrictAddressFamilies={' '.join(words)} ({families[-1].source}): no IP socket can be "
                    "opened, every name lookup and connection fails at once")
    deny_words = [w for a in unit.values("Service", "IPAddressDeny") for w in a.value.split()]
    allow_words = [w for a in unit.values("Service", "IPAddressAllow") for w in a.value.split()]
    if any(w in ("any", "0.0.0.0/0", "::/0") for w in deny_words):
        allowed = [w for w in allow_words if w not in ("localhost", "link-local", "multicast") and _global(w)]
        if not allowed:
            source = unit.values("Service", "IPAddressDeny")[-1].source
            return (f"IPAddressDeny=any ({source}) with no IPAddressAllow= beyond localhost: every packet is "
                    "refused locally (EPERM), lookups and connections fail within seconds")
    return None


def _global(word: str) -> bool:
    """An IPAddressAllow= entry that lets packets reach beyond the host (not loopback or link-local)."""
    if word == "any":
        return True
    try:
        network = ipaddress.ip_network(word, strict=False)
    except ValueError:
        return True  # a form we don't know: don't claim the network is sealed
    return not (network.is_loopback or network.is_link_local)
