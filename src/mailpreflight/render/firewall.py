"""`mailpreflight firewall` output: nftables, iptables-restore and firewalld forms of the allow-list.
A pure function of the FirewallRule data (docs/firewall.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mailpreflight.model import FirewallRule
from mailpreflight.render.escape import clean

NOT_KNOWN = "NOT IN THIS LIST (not known before the service runs): "


def _comments(text: str, indent: str = "") -> list[str]:
    """Comment lines of guest-derived text: one line each, never a raw line break (it would end the comment)."""
    return [f"{indent}# {line}" for line in text.replace("\r", " ").split("\n")]


def _notes(notes: Sequence[str], indent: str = "") -> list[str]:
    return [line for note in notes for line in _comments(NOT_KNOWN + note, indent)]


def render_nft(rules: list[FirewallRule], addresses: dict[str, list[str]] | None = None, when: str = "",
               notes: Sequence[str] = ()) -> str:
    """A complete table: outgoing policy drop, loopback and replies allowed, then the allow-list. `notes`: what
    the list lacks because it cannot be known here (comment lines at the top)."""
    lines = ["# mailpreflight outgoing allow-list for the mail services (load with: nft -f FILE)", *_notes(notes),
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
        if rule.any_host:
            lines += _comments(f"{rule.protocol}/{rule.port} to any host: {rule.why}", "    ")
            lines.append(f"    {match} accept {comment}")
        elif rule.family == "4":
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


def render_iptables(rules: list[FirewallRule], addresses: dict[str, list[str]] | None = None, when: str = "",
                    notes: Sequence[str] = ()) -> str:
    """iptables-restore input (IPv4): OUTPUT policy DROP, loopback and replies allowed, then the list."""
    lines = ["# mailpreflight outgoing allow-list (load with: iptables-restore FILE)", *_notes(notes), "*filter",
             ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT DROP [0:0]", "-A OUTPUT -o lo -j ACCEPT",
             "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for rule in rules:
        if rule.family == "6":
            continue  # IPv6 belongs in ip6tables-restore
        if rule.any_host:
            lines += _comments(f"{rule.protocol}/{rule.port} to any host: {rule.why}")
            lines.append(f"-A OUTPUT -p {rule.protocol} --dport {rule.port} -m comment --comment "
                         f'"{rule.comment}" -j ACCEPT')
            continue
        targets = [rule.host]
        if rule.family is None and addresses is not None:
            targets = [a for a in addresses.get(rule.host, []) if ":" not in a]
            lines.append(f"# {rule.host} resolved {when}: {', '.join(targets) or 'no IPv4 address'}")
        for target in targets:
            lines.append(f"-A OUTPUT -p {rule.protocol} -d {target} --dport {rule.port} -m comment --comment "
                         f'"{rule.comment}" -j ACCEPT')
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_firewalld(rules: list[FirewallRule], addresses: dict[str, list[str]] | None = None, when: str = "",
                     notes: Sequence[str] = ()) -> str:
    """A firewall-cmd script: a policy from the host to any zone, default REJECT, one rich rule per address.
    firewalld rich rules take addresses only: the caller makes sure every name was resolved (--resolve)."""
    lines = ["#!/bin/sh", "# mailpreflight outgoing allow-list for firewalld (run as root)", *_notes(notes),
             "set -e",
             "firewall-cmd --permanent --new-policy mailpreflight-out",
             "firewall-cmd --permanent --policy mailpreflight-out --add-ingress-zone HOST",
             "firewall-cmd --permanent --policy mailpreflight-out --add-egress-zone ANY",
             "firewall-cmd --permanent --policy mailpreflight-out --set-target REJECT"]
    for rule in rules:
        if rule.any_host:
            lines += _comments(f"{rule.protocol}/{rule.port} to any host: {rule.why}")
            lines.append(f"# {rule.comment}")
            for family in ("ipv4", "ipv6"):
                rich = f'rule family="{family}" port port="{rule.port}" protocol="{rule.protocol}" accept'
                lines.append(f"firewall-cmd --permanent --policy mailpreflight-out --add-rich-rule='{rich}'")
            continue
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


# -- check --guest-firewall: what the guest's own rules do to the probes' packets ---------------------------------


def guest_json(report_json: str, config: str, kind: str, uplink: str, resolvers: Sequence[str],
               endpoints: Sequence[Mapping[str, Any]]) -> str:
    document = json.loads(report_json)
    document["guest_firewall"] = {"config": config, "kind": kind, "interface": uplink,
                                  "resolvers": list(resolvers), "endpoints": list(endpoints)}
    return json.dumps(document, indent=2, ensure_ascii=False)


def guest_text(report_text: str, config: str, kind: str, uplink: str, endpoints: Sequence[Mapping[str, Any]]) -> str:
    lines = [report_text, "", clean(f"behind the guest's own firewall ({config}, {kind}; packets out of {uplink}):")]
    for e in endpoints:
        rule = e["blocking_rule"] or ("" if e["guest"] in ("passes", "not classified") else "a rule nft's tracer "
                                                                                          "did not name")
        note = f" (the guest's rules: {e['guest']})" if e["verdict"] == "unreachable anyway" else ""
        lines.append(clean(f"  {e['kind']:5} {e['target']:55} {e['verdict']}{note}" + (f"  <- {rule}" if rule else "")))
    blocked = [e for e in endpoints if e["guest"] in ("blocked", "partly blocked")]
    if blocked:
        lines.append(f"  -> {len(blocked)} endpoint(s) the services need are blocked by the guest's own rules")
    return "\n".join(lines)
