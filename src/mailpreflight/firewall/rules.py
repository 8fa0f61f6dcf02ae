"""`mailpreflight firewall`: the outgoing allow-list the mail units really need (what `deps` found), as an
nftables ruleset, an iptables-restore file, or a firewalld script — each rule saying who needs it."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailpreflight.deps.analyze import UnitDeps
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Dependency, DepKind

DEFAULT_PORTS = {DepKind.HTTP: 80, DepKind.HTTPS: 443}


@dataclass
class Rule:
    protocol: str  # tcp or udp
    host: str  # a name or an address
    port: int
    users: list[str] = field(default_factory=list)  # "spamd.service: sa-update (file:line)"

    @property
    def family(self) -> str | None:
        """4 or 6 for an address literal, None for a name (resolved by the firewall at load time)."""
        try:
            return str(ipaddress.ip_address(self.host).version)
        except ValueError:
            return None

    @property
    def comment(self) -> str:
        """Who needs it; nft keeps at most 128 bytes of comment."""
        text = ", ".join(dict.fromkeys(self.users)).replace('"', "'")
        return text if len(text.encode()) <= 120 else text.encode()[:116].decode("utf-8", "ignore") + " ..."


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


def allow_list(results: Iterable[UnitDeps], resolvers: Iterable[str]) -> list[Rule]:
    """One rule per (protocol, host, port); DNS becomes UDP and TCP 53 to the resolvers."""
    rules: dict[tuple[str, str, int], Rule] = {}
    servers = list(resolvers)

    def add(protocol: str, host: str, port: int, user: str) -> None:
        rules.setdefault((protocol, host, port), Rule(protocol, host, port)).users.append(user)

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
                    add(*endpoint, user)
    return sorted(rules.values(), key=lambda r: (r.port != 53, r.host, r.port, r.protocol))


def resolve(rules: list[Rule]) -> tuple[dict[str, list[str]], str]:
    """Current A/AAAA addresses of every name (the system resolver), and when they were looked up."""
    addresses: dict[str, list[str]] = {}
    for rule in rules:
        if rule.family is None and rule.host not in addresses:
            try:
                infos = socket.getaddrinfo(rule.host, None, type=socket.SOCK_STREAM)
                addresses[rule.host] = sorted({str(info[4][0]) for info in infos})
            except (OSError, UnicodeError):
                addresses[rule.host] = []
    return addresses, time.strftime("%Y-%m-%d %H:%M:%S %Z")


def render_nft(rules: list[Rule], addresses: dict[str, list[str]] | None = None, when: str = "") -> str:
    """A complete table: outgoing policy drop, loopback and replies allowed, then the allow-list."""
    lines = ["# mailpreflight outgoing allow-list for the mail services (load with: nft -f FILE)",
             "table inet mailpreflight_out {"]
    if addresses:
        for index, (name, found) in enumerate(sorted(addresses.items())):
            for version in ("4", "6"):
                members = [a for a in found if (":" in a) == (version == "6")]
                if members:
                    lines += [f"  # {name}, resolved {when}",
                              f"  set host{index}_v{version} {{ type {'ipv4_addr' if version == '4' else 'ipv6_addr'}; "
                              f"elements = {{ {', '.join(members)} }} }}"]
    lines += ["  chain output {", "    type filter hook output priority 0; policy drop;", '    oif "lo" accept',
              "    ct state established,related accept"]
    names = sorted(addresses) if addresses else []
    for rule in rules:
        match = f"{rule.protocol} dport {rule.port}"
        comment = f'comment "{rule.comment}"'
        if rule.family == "4":
            lines.append(f"    ip daddr {rule.host} {match} accept {comment}")
        elif rule.family == "6":
            lines.append(f"    ip6 daddr {rule.host} {match} accept {comment}")
        elif addresses is not None and rule.host in addresses:
            index = names.index(rule.host)
            found = addresses[rule.host]
            if not found:
                lines.append(f"    # {rule.host} did not resolve: nothing to allow ({rule.comment})")
            if any(":" not in a for a in found):
                lines.append(f"    ip daddr @host{index}_v4 {match} accept {comment}")
            if any(":" in a for a in found):
                lines.append(f"    ip6 daddr @host{index}_v6 {match} accept {comment}")
        else:
            lines.append(f"    ip daddr {rule.host} {match} accept {comment}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def render_iptables(rules: list[Rule], addresses: dict[str, list[str]] | None = None, when: str = "") -> str:
    """iptables-restore input (IPv4): OUTPUT policy DROP, loopback and replies allowed, then the list."""
    lines = ["# mailpreflight outgoing allow-list (load with: iptables-restore FILE)", "*filter",
             ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT DROP [0:0]", "-A OUTPUT -o lo -j ACCEPT",
             "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for rule in rules:
        if rule.family == "6":
            continue  # IPv6 belongs in ip6tables-restore
        targets = [rule.host]
        if rule.family is None and addresses is not None:
            targets = [a for a in addresses.get(rule.host, []) if ":" not in a]
            lines.append(f"# {rule.host} resolved {when}: {', '.join(targets) or 'no IPv4 address'}")
        for target in targets:
            lines.append(f"-A OUTPUT -p {rule.protocol} -d {target} --dport {rule.port} -m comment --comment "
                         f'"{rule.comment}" -j ACCEPT')
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_firewalld(rules: list[Rule], addresses: dict[str, list[str]] | None = None, when: str = "") -> str:
    """A firewall-cmd script: a policy from the host to any zone, default REJECT, one rich rule per address.
    firewalld rich rules take addresses only, so host names need --resolve."""
    unresolved = [r.host for r in rules if r.family is None and (addresses is None or r.host not in addresses)]
    if unresolved:
        raise MailpreflightError(f"firewalld rules need addresses; {unresolved[0]} is a name",
                                 hint="add --resolve to put the current addresses in")
    lines = ["#!/bin/sh", "# mailpreflight outgoing allow-list for firewalld (run as root)", "set -e",
             "firewall-cmd --permanent --new-policy mailpreflight-out",
             "firewall-cmd --permanent --policy mailpreflight-out --add-ingress-zone HOST",
             "firewall-cmd --permanent --policy mailpreflight-out --add-egress-zone ANY",
             "firewall-cmd --permanent --policy mailpreflight-out --set-target REJECT"]
    for rule in rules:
        targets = [rule.host] if rule.family else (addresses or {}).get(rule.host, [])
        if rule.family is None:
            lines.append(f"# {rule.host} resolved {when}: {', '.join(targets) or 'no address'}")
        for target in targets:
            family = "ipv6" if ":" in target else "ipv4"
            rich = (f'rule family="{family}" destination address="{target}" port port="{rule.port}" '
                    f'protocol="{rule.protocol}" accept')
            lines.append(f"# {rule.comment}")
            lines.append(f"firewall-cmd --permanent --policy mailpreflight-out --add-rich-rule='{rich}'")
    lines.append("firewall-cmd --reload")
    return "\n".join(lines) + "\n"
