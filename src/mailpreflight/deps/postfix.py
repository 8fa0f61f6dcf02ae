"""Postfix: the relay hosts main.cf sends mail through.

Facts (postconf(5), postfix(1), postmulti(1)):
- main.cf: `name = value`; a line starting with whitespace continues the previous logical line; empty lines
  and lines whose first non-blank character is `#` are ignored (also inside a continued value); the last
  setting of a name wins. `$name`, `${name}`, `$(name)` expand to other parameters; `${name?text}` gives text
  when name is non-empty, `${name:text}` when it is empty.
- config directory: `-c DIR` (postfix, master), else $MAIL_CONFIG, else /etc/postfix. postmulti `-i NAME`:
  "-" is the default instance; other instances are listed in `multi_instance_directories` of the default
  main.cf, each naming itself with `multi_instance_name` (by convention /etc/postfix-NAME).
- no relayhost (Debian's postinst writes `relayhost =` for "Internet Site") and `default_transport` smtp (the
  default) without a nexthop: mail to other domains goes straight to each recipient domain's MX hosts — an MX
  lookup of any domain, then TCP 25 to any host (postconf(5) relayhost: "the default is to send mail directly
  to the destination"); transport_maps may route some domains elsewhere, not all.
- relayhost / smtp_fallback_relay / a transport nexthop: `host` or `host:port` (MX lookup of host first),
  `[host]` or `[host]:port` (no MX lookup); port 25 unless given (number or service name); since Postfix 3.5
  a list separated by comma or whitespace. `default_transport`/`relay_transport` = `transport:nexthop`
  (no nexthop = no fixed destination); lmtp nexthops are `inet:host:port` (24) or `unix:path` (local).
"""

from __future__ import annotations

import posixpath
import re

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import RuleContext
from mailpreflight.deps.urls import hostport, parse_port, split_hostport, unique
from mailpreflight.model import ANY_HOST, Dependency, DepKind, FoundCommand, Role

DEFAULT_DIR = "/etc/postfix"
SERVICES = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465, "lmtp": 24}
RELAY_SETTINGS = ("relayhost", "smtp_fallback_relay", "fallback_relay")
TRANSPORT_SETTINGS = ("default_transport", "relay_transport")
LOCAL_TRANSPORTS = frozenset({"local", "virtual", "error", "discard", "retry", "pipe", "bsmtp"})
_REFERENCE = re.compile(r"\$(?:\{(\w+)(?:([?:])([^}]*))?\}|\((\w+)(?:([?:])([^)]*))?\)|(\w+))")
MAX_DEPTH = 20
EXPANSION_MAX = 64 * 1024  # characters: a value doubling at each of 20 levels would otherwise take 20 MiB and more


def read_main_cf(text: str) -> dict[str, tuple[str, int]]:
    """name -> (raw value, line where the setting starts). A value continued on many lines is joined once:
    linear in the text (it was copied again for each continuation line)."""
    settings: dict[str, tuple[list[str], int]] = {}  # the value's parts: its first line's, then continuations
    name: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if name is not None:
                settings[name][0].append(stripped)
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not re.fullmatch(r"\w+", key):
            name = None  # postfix warns and ignores a line that is not name = value
            continue
        name = key
        value = value.strip()
        settings[name] = ([value] if value else [], number)
    return {name: (" ".join(parts), start) for name, (parts, start) in settings.items()}


def expand(value: str, settings: dict[str, tuple[str, int]], depth: int = 0) -> str | None:
    """Resolve $references within main.cf; None when one cannot be resolved here: unknown, recursive (postfix
    refuses a parameter that refers to itself, directly or not) or longer than EXPANSION_MAX. Each parameter is
    expanded once per call: a value naming another one many times, at every level, stays linear."""
    return _Expansion(settings).text(value, depth)


class _Expansion:
    def __init__(self, settings: dict[str, tuple[str, int]]) -> None:
        self.settings = settings
        self.done: dict[str, str | None] = {}
        self.active: set[str] = set()

    def name(self, name: str, depth: int) -> str | None:
        if name in self.done:
            return self.done[name]
        raw = self.settings.get(name)
        if raw is None or name in self.active:
            return None
        self.active.add(name)
        resolved = self.text(raw[0], depth + 1)
        self.active.discard(name)
        self.done[name] = resolved
        return resolved

    def text(self, value: str, depth: int) -> str | None:
        if depth > MAX_DEPTH:
            return None
        unresolved = False
        size = len(value)

        def substitute(match: re.Match[str]) -> str:
            nonlocal unresolved, size
            name = match.group(1) or match.group(4) or match.group(7)
            operator = match.group(2) or match.group(5)
            text = match.group(3) if match.group(2) else match.group(6)
            resolved = self.name(name, depth)
            if operator == "?":
                piece = self.text(text or "", depth + 1) or "" if resolved else ""
            elif operator == ":":
                piece = "" if resolved else self.text(text or "", depth + 1) or ""
            else:
                piece = resolved or ""
                unresolved = unresolved or resolved is None
            size += len(piece)
            unresolved = unresolved or size > EXPANSION_MAX
            return "" if unresolved else piece

        result = _REFERENCE.sub(substitute, value)
        return None if unresolved else result


def config_dir(fs: RootFS, command: FoundCommand) -> str:
    argv = command.argv
    for index, word in enumerate(argv[1:], 1):
        if word == "-c" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("-c") and len(word) > 2 and command.tool != "postmulti":
            return word[2:]
        if word == "-i" and command.tool == "postmulti" and index + 1 < len(argv):
            return instance_dir(fs, argv[index + 1])
    return command.env.get("MAIL_CONFIG") or DEFAULT_DIR


def instance_dir(fs: RootFS, name: str) -> str:
    if name == "-":
        return DEFAULT_DIR
    default = read_main_cf(fs.read_text(posixpath.join(DEFAULT_DIR, "main.cf")) or "")
    listed = default.get("multi_instance_directories", ("", 0))[0]
    for directory in re.split(r"[,\s]+", expand(listed, default) or ""):
        if directory:
            own = read_main_cf(fs.read_text(posixpath.join(directory, "main.cf")) or "")
            if own.get("multi_instance_name", ("", 0))[0] == name:
                return directory
    return f"/etc/{name}" if name.startswith("postfix-") else f"/etc/postfix-{name}"


def destination_deps(value: str, where: str, default_port: int = 25, note: str = "") -> list[Dependency]:
    """Dependencies of one nexthop list: `[host]:port, host, ...`."""
    deps: list[Dependency] = []
    for item in re.split(r"[,\s]+", value):
        if not item:
            continue
        if item.startswith("inet:"):
            item = item[len("inet:"):]
        elif item.startswith("unix:"):
            continue
        bracketed = item.startswith("[")
        parts = split_hostport(item)
        port = parse_port(parts[1], default_port, SERVICES) if parts else None
        if parts is None or port is None:
            continue
        host = parts[0][len("ipv6:"):] if parts[0].lower().startswith("ipv6:") else parts[0]
        text = "; ".join(filter(None, [note, "no MX lookup" if bracketed else
                                       "MX lookup first (the A record when there is no MX)"]))
        if not bracketed:
            deps.append(Dependency(DepKind.DNS, f"MX {host}", Role.RUNTIME, where, note=note))
        deps.append(Dependency(DepKind.TCP, hostport(host, port), Role.RUNTIME, where, note=text))
    return deps


class PostfixRule:
    """postfix/master/postmulti: relayhost, smtp_fallback_relay and transport nexthops from main.cf."""

    tools = frozenset({"postfix", "master", "postmulti"})

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        if command.tool == "master" and "postfix" not in command.argv[0]:
            return []  # another daemon's `master` (Cyrus IMAP's /usr/lib/cyrus/bin/master), not postfix's
        directory = config_dir(context.fs, command)
        path = posixpath.join(directory, "main.cf")
        text = context.fs.read_text(path)
        settings = read_main_cf(text or "")
        if "mydomain" not in settings and "." in settings.get("myhostname", ("", 0))[0]:
            # postconf(5): mydomain defaults to $myhostname minus its first component.
            hostname, line = settings["myhostname"]
            settings["mydomain"] = (hostname.split(".", 1)[1], line)
        deps: list[Dependency] = []
        for name in RELAY_SETTINGS:
            if name in settings:
                raw, line = settings[name]
                value = expand(raw, settings)
                if value:
                    deps.extend(destination_deps(value, f"{path}:{line}", note=name))
        for name in TRANSPORT_SETTINGS:
            if name in settings:
                raw, line = settings[name]
                transport, _, nexthop = (expand(raw, settings) or "").partition(":")
                if nexthop and transport.strip() not in LOCAL_TRANSPORTS:
                    port = 24 if transport.strip() == "lmtp" else 25
                    deps.extend(destination_deps(nexthop, f"{path}:{line}", port, f"{name} {transport.strip()}"))
        if text is not None:
            deps.extend(direct_delivery(settings, path))
        return unique(deps)


def direct_delivery(settings: dict[str, tuple[str, int]], path: str) -> list[Dependency]:
    """No relayhost and the default transport smtp without a nexthop: TCP 25 to any host (the MX hosts of every
    recipient domain), after MX lookups of any domain. [] when mail leaves through a relay or not at all."""
    relay = settings.get("relayhost")
    if relay is not None and (expand(relay[0], settings) is None or expand(relay[0], settings)):
        return []  # a relay host (or one that cannot be expanded here)
    transport_setting = settings.get("default_transport")
    value = expand(transport_setting[0], settings) if transport_setting else "smtp"
    if value is None:
        return []
    transport, _, nexthop = value.partition(":")
    if transport.strip() != "smtp" or nexthop.strip():
        return []
    where = f"{path}:{relay[1]}" if relay else f"{path} (no relayhost)"
    note = ("direct delivery (no relayhost): the MX hosts of every recipient domain"
            + ("; transport_maps may send some domains elsewhere" if "transport_maps" in settings else ""))
    return [Dependency(DepKind.DNS, f"MX {ANY_HOST}", Role.RUNTIME, where, note="MX lookup of each recipient domain"),
            Dependency(DepKind.TCP, hostport(ANY_HOST, 25), Role.RUNTIME, where, note=note)]
