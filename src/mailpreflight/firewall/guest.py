"""`check --root DIR --guest-firewall`: will the GUEST's own outgoing rules let its services' packets out?

Whether a rule lets a packet out depends on the packet only, not on the world. So nothing is routed: the host
probes the endpoints as `check` always does; every packet those probes send (each DNS query to each resolver
the guest would ask, a TCP SYN to each address of each HTTP(S)/TCP endpoint, each UDP datagram) is then sent
once more inside a sealed namespace of this run that holds the guest's rules (sandbox.py), where nft's tracer
names the rule that stops it; both answers together give, per endpoint: allowed, blocked by the guest's
firewall (rule X), or unreachable anyway. The guest's files are read through RootFS only; nft reads nothing
itself (nftinclude.py resolves `include`s inside the guest). See docs/firewall.md.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.message
import dns.name
import dns.rdatatype

from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError
from mailpreflight.firewall import nftinclude
from mailpreflight.firewall.sandbox import GUEST_IF, INTERFACE, Load, Packet, PacketVerdict, classify

NFT_FILES = ("/etc/nftables.conf", "/etc/sysconfig/nftables.conf")
IPTABLES_FILES = (("/etc/iptables/rules.v4", "/etc/iptables/rules.v6"),  # (IPv4, IPv6)
                  ("/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"))
UNSUPPORTED = ("/etc/firewalld/zones", "/etc/ufw/user.rules")
MAX_RULES_BYTES = 4 * 1024 * 1024
STUB_RESOLVER = "127.0.0.53"  # systemd-resolved's stub: its upstreams are in STUB_UPSTREAMS
STUB_UPSTREAMS = "/run/systemd/resolve/resolv.conf"
MAX_NAMES = 64
DEFAULT_PORTS = {"http": 80, "https": 443}
Endpoint = tuple[str, str]  # (kind, target), as in check's JSON report

_COMMENTS = re.compile(r'"[^"]*"|#[^\n]*')
_NFT_INTERFACE = re.compile(r'\b(oifname|oif|iifname|iif|devices|device)\s*(?:!=|==|=)?\s*'
                            r'(\{[^}]*\}|"[^"]*"|[A-Za-z0-9_.\-*]+)')
_IPT_OUT = re.compile(r"(?:^|\s)(?:-o|--out-interface)\s+(?:!\s+)?([A-Za-z0-9_.\-+]+)", re.M)
_NFT_ERROR = re.compile(r"^/dev/stdin:(\d+):\S*:? Error: (.*)$", re.M)
_RESTORE_LINE = re.compile(r"\bline:? (\d+)")


@dataclass(frozen=True)
class GuestRuleset:
    kind: str  # nft or iptables
    guest_path: str  # the file that is loaded (for iptables the IPv4 one, or the IPv6 one when alone)
    text: str  # nft: with every include inlined; iptables: the IPv4 file
    origins: tuple[tuple[str, int], ...] = ()  # nft: the guest file and line of each line of text
    v6_path: str | None = None  # iptables: the IPv6 file, loaded with ip6tables-restore
    v6_text: str = ""

    def loads(self) -> list[Load]:
        """The commands that load it in the sealed namespace: nft checks (-c) before it loads."""
        if self.kind == "nft":
            return [Load(("nft", "-c", "-f", "-"), self.text, self._nft_error),
                    Load(("nft", "-f", "-"), self.text, self._nft_error)]
        loads = []
        if self.text:
            loads.append(Load((_restore("iptables"),), self.text, _restore_error(self.guest_path)))
        if self.v6_path:
            loads.append(Load((_restore("ip6tables"),), self.v6_text, _restore_error(self.v6_path)))
        return loads

    def interfaces(self) -> tuple[str, list[str]]:
        """The guest's outgoing interface as its rules name it (the name most often matched as the output
        interface; eth0 when they name none), and the other interfaces they name by index (iif, oif, device),
        which must exist for the rules to load."""
        outgoing: list[str] = []
        indexed: list[str] = []
        if self.kind == "nft":
            text = _COMMENTS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", self.text)
            for keyword, value in _NFT_INTERFACE.findall(text):
                names = _names(value)
                outgoing += names if keyword in ("oif", "oifname") else []
                indexed += names if keyword in ("oif", "iif", "device", "devices") else []
        else:
            outgoing = [name for text in (self.text, self.v6_text) for name in _IPT_OUT.findall(text)]
        concrete = [re.sub(r"[*+]$", "0", name) for name in outgoing if name != "lo"]
        concrete = [name for name in concrete if INTERFACE.fullmatch(name)]
        uplink = max(concrete, key=concrete.count) if concrete else GUEST_IF
        others = [n for n in dict.fromkeys(indexed) if n not in ("lo", uplink) and INTERFACE.fullmatch(n)]
        return uplink, others[:16]

    def _nft_error(self, stderr: str) -> MailpreflightError:
        found = _NFT_ERROR.search(stderr)
        if found is None:
            return MailpreflightError(f"the guest's ruleset does not load: {_first_line(stderr)}", file=self.guest_path)
        path, line = self.origins[int(found.group(1)) - 1] if int(found.group(1)) <= len(self.origins) else (
            self.guest_path, 0)
        return MailpreflightError(f"the guest's ruleset does not load: {found.group(2)}", file=path, line=line,
                                  hint=f"check it with: nft -c -f {path} (on the guest)")


def _names(value: str) -> list[str]:
    """Interface names in `"eth0"`, `eth0` or `{ "eth0", wg0 }` (not `vmap`, a $variable or a @set)."""
    words = value.strip("{}").split(",") if value.startswith("{") else [value]
    words = [w.strip().strip('"') for w in words]
    return [w for w in words if w and w not in ("vmap", "map", "type", "typeof")]


def _restore(family: str) -> str:
    """The nf_tables flavour first: nft's tracer then sees its rules and can name the one that drops."""
    return next((tool for tool in (f"{family}-nft-restore", f"{family}-restore") if shutil.which(tool)),
                f"{family}-restore")


def _restore_error(path: str) -> Callable[[str], MailpreflightError]:
    def error(stderr: str) -> MailpreflightError:
        found = _RESTORE_LINE.search(stderr)
        return MailpreflightError(f"the guest's rules do not load: {_first_line(stderr)}", file=path,
                                  line=int(found.group(1)) if found else None)
    return error


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def find_ruleset(fs: RootFS) -> GuestRuleset:
    """The guest's outgoing rules as its boot would load them: an nftables file (includes resolved inside the
    guest) or an iptables-save pair (IPv4, IPv6). Raises MailpreflightError naming what is missing."""
    for path in NFT_FILES:
        if _regular(fs, path):
            inlined = nftinclude.inline(fs, path)
            return GuestRuleset("nft", path, inlined.text, tuple(inlined.origins))
    for v4, v6 in IPTABLES_FILES:
        has4, has6 = _regular(fs, v4), _regular(fs, v6)
        if has4 or has6:
            text4 = _iptables_text(fs, v4) if has4 else ""
            text6 = _iptables_text(fs, v6) if has6 else ""
            return GuestRuleset("iptables", v4 if has4 else v6, text4, (), v6 if has6 else None, text6)
    other = [p for p in UNSUPPORTED if fs.chase(p) is not None]
    looked = ", ".join([*NFT_FILES, *(p for pair in IPTABLES_FILES for p in pair)])
    raise MailpreflightError(f"no supported guest firewall configuration: looked for {looked}"
                             + (f"; found {', '.join(other)}, which is not supported (firewalld/ufw)" if other else ""))


def _regular(fs: RootFS, path: str) -> bool:
    resolved = fs.chase(path)
    info = fs.lstat(resolved) if resolved else None
    if info is None:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise MailpreflightError("not a regular file: refused", file=path)
    return True


def _iptables_text(fs: RootFS, path: str) -> str:
    try:
        text = fs.read_bytes(path, MAX_RULES_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise MailpreflightError(f"cannot read it: {exc.strerror or exc}", file=path) from exc
    for number, line in enumerate(text.splitlines(), 1):
        if "--object-pinned" in line:  # -m bpf would open a path on the host's bpffs
            raise MailpreflightError("`-m bpf --object-pinned` names a file on the host: refused", file=path,
                                     line=number)
    return text


# --- which resolvers the guest's DNS packets go to ----------------------------------------------------------


def reachable_resolvers(nameservers: Sequence[str], source: str, text: str,
                        stub_upstreams: Sequence[str] | None = None) -> list[str]:
    """The resolvers the guest's DNS queries are sent to, as addresses outside this host. The host's
    systemd-resolved stub (127.0.0.53) stands for its upstreams (`stub_upstreams`, from STUB_UPSTREAMS); any
    other loopback resolver is this host's own, which neither the guest nor a namespace would reach."""
    found: list[str] = []
    for server in nameservers:
        try:
            address = ipaddress.ip_address(server)
        except ValueError:
            raise MailpreflightError(f"nameserver {server!r} is not an address", file=source,
                                     line=_line_of(text, server)) from None
        if not address.is_loopback:
            if _usable(server):  # a link-local one needs the guest's link: its packets cannot be classified
                found.append(server)
            continue
        upstreams = [s for s in stub_upstreams or () if _usable(s) and not ipaddress.ip_address(s).is_loopback]
        if server == STUB_RESOLVER and upstreams:
            found.extend(upstreams)
            continue
        line = _line_of(text, server)
        what = (f"nameserver {server} is a resolver on this host's loopback" if line else
                f"names no nameserver, so the resolver is glibc's default {server}, on this host's loopback")
        raise MailpreflightError(f"{what}: the guest's DNS packets would go to other servers", file=source,
                                 line=line, hint="name the nameservers the guest will ask: --resolv-conf FILE")
    return list(dict.fromkeys(found))


def _line_of(text: str, server: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if words[:1] == ["nameserver"] and server in (w.split("%", 1)[0] for w in words[1:2]):
            return number
    return None


def _usable(address: str) -> bool:
    """A unicast address a packet can be sent to without an interface scope."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_multicast or ip.is_unspecified or ip.is_link_local
                or (ip.is_reserved and ip.version == 4))


# --- which packets each endpoint's probe sends --------------------------------------------------------------


def plan_packets(outside: Mapping[str, Any], resolvers: Sequence[str], timeout: float) -> dict[Endpoint, list[Packet]]:
    """For each probe of the host's check: the packets it sends. Names are resolved by the host, beforehand:
    the answers of the check's own A/AAAA probes, else the host's resolver (all at once, within `timeout`)."""
    probes = [p for p in outside.get("probes", []) if isinstance(p, Mapping)]
    known: dict[str, list[str]] = {}
    for probe in probes:
        rdtype, _, name = str(probe.get("target", "")).partition(" ")
        if probe.get("kind") == "dns" and rdtype in ("A", "AAAA"):
            known.setdefault(name.rstrip(".").lower(), []).extend(
                str(a) for a in probe.get("answers", []) if _usable(str(a)))
    wanted: dict[Endpoint, list[tuple[str, str, int]]] = {}
    for probe in probes:
        kind, target = str(probe.get("kind")), str(probe.get("target"))
        wanted[(kind, target)] = _hostports(kind, target, probe.get("answers", []))
    names = {host.lower() for hostports in wanted.values() for _, host, _ in hostports
             if not _usable(host) and not known.get(host.lower())}
    known.update(resolve_names(sorted(names)[:MAX_NAMES], timeout))
    plan: dict[Endpoint, list[Packet]] = {}
    for (kind, target), hostports in wanted.items():
        if kind == "dns":
            rdtype, _, name = target.partition(" ")
            payload = _dns_query(name, rdtype)
            plan[(kind, target)] = [Packet("udp", server, 53, payload) for server in resolvers]
            continue
        packets = []
        for proto, host, port in hostports:
            addresses = [host] if _usable(host) else known.get(host.lower(), [])
            packets += [Packet(proto, a, port, b"\0" if proto == "udp" else b"") for a in addresses if _usable(a)]
        plan[(kind, target)] = list(dict.fromkeys(packets))
    return plan


def _hostports(kind: str, target: str, answers: Any) -> list[tuple[str, str, int]]:
    if kind in ("http", "https"):
        urls = [target]
        final = answers[0] if isinstance(answers, list) and answers and "://" in str(answers[0]) else None
        if final and final != target:
            urls.append(str(final))  # a redirect to another host: the guest needs that one too
        return [hp for url in urls if (hp := _url_hostport(url))]
    if kind in ("tcp", "udp"):
        host, _, port = target.rpartition(":")
        return [(kind, host.strip("[]"), int(port))] if host and port.isdigit() else []
    return []


def _url_hostport(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    return ("tcp", parts.hostname, port) if parts.hostname and port else None


def _dns_query(name: str, rdtype: str) -> bytes:
    """The query a DNS probe sends (its payload; rules rarely look at it, but some match on names)."""
    try:
        return bytes(dns.message.make_query(dns.name.from_text(name), dns.rdatatype.from_text(rdtype)).to_wire())
    except (dns.exception.DNSException, ValueError):
        return b""


def resolve_names(names: Sequence[str], timeout: float) -> dict[str, list[str]]:
    """getaddrinfo for each name, concurrently; a name not answered within `timeout` has no address. The
    threads are daemons: one stuck in the resolver cannot keep the process alive."""
    found: dict[str, list[str]] = {}

    def lookup(name: str) -> None:
        # signals go to the main thread only: a thread stuck in the resolver must not take the SIGTERM or
        # SIGINT that the clean-up blocks in the main thread (probes/runner.py block_signals, same reason)
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            infos = []
        found[name] = sorted({str(info[4][0]) for info in infos}, key=lambda a: (":" in a, a))

    threads = [threading.Thread(target=lookup, args=(name,), daemon=True, name=f"resolve {name}") for name in names]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    return {name: list(found.get(name, [])) for name in names}


# --- both answers together ------------------------------------------------------------------------------------


def evaluate(ruleset: GuestRuleset, outside: Mapping[str, Any], resolvers: Sequence[str], timeout: float,
             uplink: str) -> list[dict[str, Any]]:
    """Each endpoint of the host's check with its verdict behind the guest's rules, its packets leaving through
    the interface `uplink` (see GuestRuleset.interfaces)."""
    plan = plan_packets(outside, resolvers, timeout)
    placeholders = [name for name in ruleset.interfaces()[1] if name != uplink]
    verdicts = classify(ruleset.loads(), [p for packets in plan.values() for p in packets], uplink, placeholders)
    return combine(outside, plan, verdicts)


def combine(outside: Mapping[str, Any], plan: Mapping[Endpoint, Sequence[Packet]],
            verdicts: Mapping[Packet, PacketVerdict]) -> list[dict[str, Any]]:
    """allowed (the host reaches it and the guest's rules let every packet out), blocked or partly blocked by
    the guest's firewall (the rule that stops it), unreachable anyway (the host does not reach it either:
    `guest` still says what the rules would do), or not classified (no address known)."""
    endpoints = []
    for probe in outside.get("probes", []):
        key = (str(probe.get("kind")), str(probe.get("target")))
        packets = [(p, verdicts[p]) for p in plan.get(key, ()) if p in verdicts]
        passing = sum(1 for _, v in packets if v.passes)
        guest = ("not classified" if not packets else "passes" if passing == len(packets)
                 else "blocked" if passing == 0 else "partly blocked")
        if probe.get("status") != "ok":
            verdict = "unreachable anyway"
        elif guest == "passes":
            verdict = "allowed"
        elif guest == "not classified":
            verdict = "not classified (no address known)"
        else:
            verdict = f"{guest} by the guest's firewall"
        rule = next((v.rule for _, v in packets if not v.passes and v.rule), "")
        endpoints.append({
            "kind": key[0], "target": key[1], "verdict": verdict, "guest": guest, "blocking_rule": rule,
            "outside_error": probe.get("error") or "",
            "packets": [{"proto": p.proto, "address": p.address, "port": p.port,
                         "verdict": "passes" if v.passes else "blocked", "rule": v.rule} for p, v in packets],
        })
    return endpoints
