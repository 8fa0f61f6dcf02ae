"""`mailpreflight firewall`: the outgoing allow-list the mail units really need (what `deps` found), as an
nftables ruleset, an iptables-restore file, or a firewalld script — each rule saying who needs it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.model import Dependency, DepKind, FirewallRule

DEFAULT_PORTS = {DepKind.HTTP: 80, DepKind.HTTPS: 443}


def _endpoint(dep: Dependency) -> tuple[str, str, int] | None:
    if dep.kind in (DepKind.HTTP, DepKind.HTTPS):
        netloc = dep.target.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, port = netloc, DEFAULT_PORTS[dep.kind]
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else port
        elif netloc.count(":") == 1:
            host, _, text = netloc.partition(":")
            port = int(text) if text.isdigit() else port
        return "tcp", host, port
    if dep.kind in (DepKind.TCP, DepKind.UDP):
        host, _, port_text = dep.target.rpartition(":")
        return (dep.kind.value, host.strip("[]"), int(port_text)) if port_text.isdigit() else None
    return None


def allow_list(results: Iterable[UnitDeps], resolvers: Iterable[str]) -> list[FirewallRule]:
    """One rule per (protocol, host, port); DNS becomes UDP and TCP 53 to the resolvers. A dependency on any host
    (postfix's direct delivery, `*:25`) becomes a rule by port alone, saying why."""
    users: dict[tuple[str, str, int], list[str]] = {}
    why: dict[tuple[str, str, int], str] = {}
    servers = list(resolvers)

    def add(protocol: str, host: str, port: int, user: str, reason: str = "") -> None:
        users.setdefault((protocol, host, port), []).append(user)
        if reason:
            why.setdefault((protocol, host, port), f"{user}: {reason}")

    for result in results:
        for entry in result.commands:
            user = f"{result.unit.id} {entry.command.tool}"
            for dep in entry.dependencies:
                if dep.kind is DepKind.DNS:
                    for server in servers:
                        add("udp", server, 53, user)
                        add("tcp", server, 53, user)
                    continue
                endpoint = _endpoint(dep)
                if endpoint is not None:
                    add(*endpoint, user, dep.note if dep.any_host else "")
    rules = [FirewallRule(protocol, host, port, tuple(who), why.get((protocol, host, port), ""))
             for (protocol, host, port), who in users.items()]
    return sorted(rules, key=lambda r: (r.port != 53, r.host, r.port, r.protocol))


def unknown_endpoints(results: Iterable[UnitDeps]) -> list[str]:
    """What the list cannot hold because it is not known before the service runs: sa-update's mirrors when no
    MIRRORED.BY is cached (a fresh install), and the host serving MIRRORED.BY when sa-update must fetch it (named
    by the TXT answer of mirrors.<channel>). One sentence each, saying what to do."""
    notes: list[str] = []
    for result in results:
        for entry in result.commands:
            plan = entry.plan
            if plan is None or plan.args.install or plan.args.forcemirror:
                continue
            who = f"{result.unit.id} sa-update ({entry.command.source})"
            run = " ".join(entry.command.argv)
            if entry.command.user not in (None, "root", "0"):
                run = f"runuser -u {entry.command.user} -- {run}"
            for channel in plan.channels:
                if not channel.mirrors:
                    notes.append(f"{who}: no cached {channel.mirrored_by}, so the mirrors of channel "
                                 f"{channel.channel} are not known and none is allowed: sa-update fetches the list "
                                 "from the URL that TXT " + channel.mirrors_query + " names, then the rules from "
                                 f"the mirrors in it; run `{run}` once on the server (it caches the list), then "
                                 "run this `mailpreflight firewall` again — or allow the mirror hosts of that "
                                 "MIRRORED.BY yourself")
                elif channel.needs_mirror_refresh:
                    notes.append(f"{who}: {channel.mirrored_by} is older than a week, so sa-update fetches it "
                                 "again from the URL that TXT " + channel.mirrors_query + " names, a host not "
                                 f"known here; run `{run}` once on the server, then run this `mailpreflight "
                                 "firewall` again")
    return notes


def unresolved_names(rules: list[FirewallRule], addresses: dict[str, list[str]] | None) -> list[str]:
    """Host names with no looked-up addresses (firewalld's rich rules take addresses only)."""
    return [r.host for r in rules if r.family is None and not r.any_host
            and (addresses is None or r.host not in addresses)]


def resolve(rules: list[FirewallRule]) -> tuple[dict[str, list[str]], str]:
    """Current A/AAAA addresses of every name (the system resolver), and when they were looked up."""
    addresses: dict[str, list[str]] = {}
    for rule in rules:
        if rule.family is None and not rule.any_host and rule.host not in addresses:
            try:
                infos = socket.getaddrinfo(rule.host, None, type=socket.SOCK_STREAM)
                addresses[rule.host] = sorted({str(info[4][0]) for info in infos})
            except (OSError, UnicodeError):
                addresses[rule.host] = []
    return addresses, time.strftime("%Y-%m-%d %H:%M:%S %Z")
