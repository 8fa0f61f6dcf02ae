"""/etc/resolv.conf as glibc's stub resolver reads it: which nameservers a service's DNS questions go to, and the
`options` lines. One parser for `check`'s probes, sa-update's resolver, the firewall allow-list and guard.

A deliberate copy of glibc's res_vinit_1() (resolv/res_init.c), see docs/design.md: a line starting with `;` or
`#` is a comment; a keyword counts only at the very start of a line and followed by a blank; a `nameserver` line
names one address (the first word; the rest of the line is ignored) that must parse as IPv4 (inet_aton forms,
e.g. 127.1) or IPv6 (a `%scope` suffix is taken off); lines that do not parse are skipped; only the first
MAXNS (3) usable servers are used; none at all means 127.0.0.1. Nothing here imports a third-party module.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailpreflight.errors import MailpreflightError

if TYPE_CHECKING:
    from mailpreflight.access.rootfs import RootFS

RESOLV_CONF = "/etc/resolv.conf"
MAXNS = 3
DEFAULT_NAMESERVER = "127.0.0.1"  # glibc's when resolv.conf names no usable server (or cannot be read)


@dataclass(frozen=True)
class ResolvConf:
    """/etc/resolv.conf as glibc reads it: where it was read, the nameservers it keeps (at most MAXNS) and the words of
    its `options` lines."""

    source: str  # where it was read, for messages
    servers: tuple[str, ...]  # the usable nameservers glibc keeps, in order, at most MAXNS
    options: tuple[str, ...]  # the words of every `options` line, in order ("timeout:2", "attempts:3", "rotate")

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The servers a question goes to: those named, or glibc's default."""
        return self.servers or (DEFAULT_NAMESERVER,)


def _keyword(line: str, keyword: str) -> str | None:
    """The rest of the line after `keyword` and a blank at its start (glibc's MATCH()), else None."""
    if line.startswith(keyword) and line[len(keyword):len(keyword) + 1] in (" ", "\t"):
        return line[len(keyword):]
    return None


def _inet_aton(text: str) -> str | None:
    """inet_aton(3) forms of an IPv4 address as a dotted quad, or None: 1 to 4 parts, each a C number (decimal,
    0octal, 0xhex) starting with a digit; the last part fills the bytes left (glibc's inet_aton_exact())."""
    parts: list[int] = []
    for part in text.split("."):
        if part[:2] in ("0x", "0X"):
            base, digits, allowed = 16, part[2:], "0123456789abcdefABCDEF"
        elif part[:1] == "0":
            base, digits, allowed = 8, part, "01234567"
        else:
            base, digits, allowed = 10, part, "0123456789"
        # a part of more than 12 characters overflows glibc's 32-bit strtoul (0037777777777 is the longest
        # valid one); checked before int(), which refuses strings of more than 4,300 digits by raising
        if not digits or len(digits) > 12 or any(char not in allowed for char in digits):
            return None
        parts.append(int(digits, base))
    if len(parts) > 4 or any(p > 0xFF for p in parts[:-1]) or parts[-1] >= 1 << (8 * (5 - len(parts))):
        return None
    value = parts[-1]
    for index, byte in enumerate(parts[:-1]):
        value |= byte << (24 - 8 * index)
    return str(ipaddress.IPv4Address(value))


def _address(word: str) -> str | None:
    """The nameserver address as glibc takes it: IPv4 first, else IPv6 without its %scope."""
    if (ipv4 := _inet_aton(word)) is not None:
        return ipv4
    host = word.split("%", 1)[0]
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return None
    return host


def parse_resolv_conf(text: str, source: str) -> ResolvConf:
    servers: list[str] = []
    options: list[str] = []
    for row in text.split("\n"):
        line = row.split("\0", 1)[0]  # C strings end at a NUL; a "\r" stays part of the line (and spoils it)
        if line[:1] in (";", "#"):
            continue
        if (rest := _keyword(line, "nameserver")) is not None:
            words = rest.lstrip(" \t").replace("\t", " ").split(" ", 1)
            address = _address(words[0]) if words[0] else None
            if address is not None and len(servers) < MAXNS:
                servers.append(address)
        elif (rest := _keyword(line, "options")) is not None:
            options.extend(rest.split())
    return ResolvConf(source, tuple(servers), tuple(options))


def read_resolv_conf(fs: RootFS, path: str = RESOLV_CONF, source: str | None = None, *,
                     required: bool = False) -> ResolvConf:
    """Read `path` through `fs` (a guest's tree, or RootFS("/") for a file of this host); `source` names it in
    messages. A file that cannot be read counts as empty, as for glibc, unless `required`: then MailpreflightError
    "cannot read SOURCE: why"."""
    try:
        text = fs.read_bytes(path, 1024 * 1024).decode("utf-8", "replace")
    except OSError as exc:
        if required:
            why = exc.strerror or (os.strerror(errno.ENOENT) if isinstance(exc, FileNotFoundError) else str(exc))
            raise MailpreflightError(f"cannot read {source or path}: {why}") from exc
        text = ""
    return parse_resolv_conf(text, source or path)
