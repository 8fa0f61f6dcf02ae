"""`check --root DIR --guest-firewall`: will the GUEST's own outgoing rules let its services through?

The guest's ruleset (nftables file or iptables-save file) is loaded into a throwaway network namespace with
the real nft/iptables engine; that namespace reaches the network through the host (or, in tests, through a
lab namespace); the same `check` then runs inside it and outside, and each endpoint is reported as allowed,
blocked by the guest's rules, or unreachable anyway. Everything is removed afterwards, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError

NFT_FILES = ("/etc/nftables.conf", "/etc/sysconfig/nftables.conf")
IPTABLES_FILES = ("/etc/iptables/rules.v4", "/etc/sysconfig/iptables")
UNSUPPORTED = ("/etc/firewalld/zones", "/etc/ufw/user.rules")
RULESET_LIMIT = 4 * 1024 * 1024
SUBNET = "198.19.254"  # benchmark range: the sandbox link between the guest namespace and its uplink
# Marks every outgoing packet for nft's tracer before the guest's chains see it, so `nft monitor trace`
# can name the rule that drops it.
TRACE_TABLE = ("table inet mailpreflight_trace {\n chain out {\n  type filter hook output priority -500;\n"
               "  meta nftrace set 1\n }\n}\n")
_PACKET = re.compile(r"^trace id (\S+) .* packet: .*?ip6? daddr (\S+) .*?(tcp|udp) .*?dport (\d+)")
_VERDICT = re.compile(r"^trace id (\S+) (\S+ \S+ \S+) (rule .* \(verdict (?:drop|reject)\)|policy drop)")


@dataclass(frozen=True)
class GuestRuleset:
    kind: str  # nft or iptables
    guest_path: str
    host_path: str
    text: str = ""  # read through the root's gate; what nft/iptables-restore load (from stdin, never the path)


def find_ruleset(fs: RootFS) -> GuestRuleset:
    for kind, paths in (("nft", NFT_FILES), ("iptables", IPTABLES_FILES)):
        for path in paths:
            resolved = fs.chase(path)
            if resolved is not None and fs.lstat(resolved) is not None:
                try:
                    text = fs.read_bytes(path, RULESET_LIMIT).decode("utf-8", "replace")
                except OSError as exc:
                    raise MailpreflightError(f"the guest's ruleset ({path}) cannot be read: {exc.strerror or exc}",
                                             file=fs.host(resolved)) from exc
                return GuestRuleset(kind, path, fs.host(resolved), text)
    other = [p for p in UNSUPPORTED if fs.chase(p) is not None]
    raise MailpreflightError(
        "no supported guest firewall configuration: looked for " + ", ".join(NFT_FILES + IPTABLES_FILES)
        + (f"; found {', '.join(other)}, which is not supported (firewalld/ufw)" if other else ""))


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise MailpreflightError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def guest_namespace(ruleset: GuestRuleset, uplink_ns: str | None = None,
                    resolv_conf: str = "/etc/resolv.conf") -> Iterator[str]:
    """A namespace whose only way out is a veth to the uplink (the host, or `uplink_ns`), with the guest's
    ruleset loaded. The guest side is named eth0, as most guest rulesets expect."""
    if os.geteuid() != 0:
        raise MailpreflightError("--guest-firewall needs root (network namespaces, nft/iptables)")
    name = f"mpguest-{os.getpid()}"
    host_if, etc = f"mpg{os.getpid() % 100000}h", Path("/etc/netns") / name
    nat_table = f"mailpreflight_guest_{os.getpid()}"
    forwarding: str | None = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, interrupted)
    try:
        _ip("netns", "add", name)
        uplink = ["-n", uplink_ns] if uplink_ns else []
        _ip(*uplink, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip(*uplink, "addr", "add", f"{SUBNET}.1/30", "dev", host_if)
        _ip(*uplink, "link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{SUBNET}.2/30", "dev", "eth0")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "route", "add", "default", "via", f"{SUBNET}.1")
        if uplink_ns is None:  # out through the host: forward and masquerade, undone below
            blocked = _host_forwarding_problem()
            if blocked:
                raise MailpreflightError(f"--guest-firewall: {blocked}; the guest namespace could not reach "
                                         "anything (mailpreflight does not change the host's filter rules)")
            forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
            _nft_host(f"table ip {nat_table} {{\n  chain post {{\n    type nat hook postrouting priority 100;\n"
                      f"    ip saddr {SUBNET}.0/30 masquerade\n  }}\n}}\n")
        etc.mkdir(parents=True, exist_ok=True)  # the host's resolver answers the probes' DNS questions
        shutil.copyfile(resolv_conf, etc / "resolv.conf")
        _load(name, ruleset)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        if uplink_ns:
            subprocess.run(["ip", "-n", uplink_ns, "link", "del", host_if], capture_output=True, timeout=30)
        if forwarding is not None:
            subprocess.run(["nft", "delete", "table", "ip", nat_table], capture_output=True, timeout=30)
            Path("/proc/sys/net/ipv4/ip_forward").write_text(forwarding)
        shutil.rmtree(etc, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def forward_blocked(iptables_forward: str, nft_ruleset: str) -> str | None:
    """Why the host would drop the guest namespace's forwarded packets (a DROP policy on a forward hook), or
    None. Rules that accept some traffic in such a chain are not read: with a DROP policy the guest's own
    link is almost never among them, and we do not change the host's filter rules."""
    if re.search(r"^-P FORWARD DROP$", iptables_forward, re.M):
        return "the host's iptables FORWARD policy is DROP"
    for chain in re.findall(r"chain (\S+) \{[^}]*?hook forward[^}]*?policy drop", nft_ruleset, re.S):
        return f"the host's nft chain {chain} (hook forward) has policy drop"
    return None


def _host_forwarding_problem() -> str | None:
    def output(*argv: str) -> str:
        if shutil.which(argv[0]) is None:
            return ""
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return done.stdout if done.returncode == 0 else ""

    return forward_blocked(output("iptables", "-S", "FORWARD"), output("nft", "list", "ruleset"))


def _nft_host(ruleset: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise MailpreflightError(f"cannot set up forwarding for the guest namespace: {done.stderr.strip()}")


def _load(namespace: str, ruleset: GuestRuleset) -> None:
    argv = ["nft", "-f", "-"] if ruleset.kind == "nft" else ["iptables-restore"]
    done = subprocess.run(["ip", "netns", "exec", namespace, *argv], input=ruleset.text, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise MailpreflightError(f"{ruleset.guest_path}: the guest's ruleset does not load: "
                                 f"{done.stderr.strip().splitlines()[0] if done.stderr.strip() else done.returncode}")


def check_inside(namespace: str, check_argv: list[str]) -> dict[str, Any]:
    """Run the same check inside the guest namespace; its JSON report, with `blocking_rules`: for each
    (address, port) the guest's rule that dropped it, as nft's tracer saw it (empty if it cannot tell)."""
    traced = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=TRACE_TABLE, text=True,
                            capture_output=True, timeout=30).returncode == 0
    monitor = subprocess.Popen(["ip", "netns", "exec", namespace, "nft", "monitor", "trace"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) if traced else None
    try:
        done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "mailpreflight", "check",
                               *check_argv, "--format", "json"], capture_output=True, text=True, timeout=600)
    finally:
        trace = ""
        if monitor is not None:
            monitor.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                trace = monitor.communicate(timeout=10)[0]
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise MailpreflightError(f"check inside the guest namespace failed: {done.stderr.strip()[:200]}") from exc
    report["blocking_rules"] = blocking_rules(trace)
    return report


def blocking_rules(trace: str) -> dict[str, str]:
    """"address:port" -> "table chain rule ..." that dropped or rejected packets to it."""
    packets: dict[str, str] = {}
    found: dict[str, str] = {}
    for line in trace.splitlines():
        packet = _PACKET.match(line)
        if packet and packet.group(1) not in packets:
            packets[packet.group(1)] = f"{packet.group(2)}:{packet.group(4)}"
            continue
        verdict = _VERDICT.match(line)
        if verdict and verdict.group(1) in packets:
            found.setdefault(packets[verdict.group(1)], f"{verdict.group(2)} {verdict.group(3)}")
    return found


def compare(outside: dict[str, Any], inside: dict[str, Any]) -> list[dict[str, str]]:
    """Each endpoint: allowed, blocked by the guest's rules, or unreachable anyway."""
    seen = {(p["kind"], p["target"]): p for p in inside["probes"]}
    addresses: dict[str, list[str]] = {}
    for probe in inside["probes"]:
        rdtype, _, name = probe["target"].partition(" ")
        if probe["kind"] == "dns" and rdtype in ("A", "AAAA"):
            addresses.setdefault(name, []).extend(probe.get("answers", []))
    rules: dict[str, str] = inside.get("blocking_rules", {})
    verdicts = []
    for probe in outside["probes"]:
        behind = seen.get((probe["kind"], probe["target"]))
        if behind is None:
            continue
        if probe["status"] != "ok":
            verdict = "unreachable anyway"
        elif behind["status"] == "ok":
            verdict = "allowed"
        else:
            verdict = "blocked by the guest's firewall"
        rule = ""
        if verdict.startswith("blocked"):
            host, port = _host_port(probe["kind"], probe["target"])
            for address in [host, *addresses.get(host, [])]:
                rule = rules.get(f"{address}:{port}", "")
                if rule:
                    break
        verdicts.append({"kind": probe["kind"], "target": probe["target"], "verdict": verdict,
                         "inside_error": behind.get("error") or "", "outside_error": probe.get("error") or "",
                         "blocking_rule": rule})
    return verdicts


def _host_port(kind: str, target: str) -> tuple[str, int]:
    if kind in ("http", "https"):
        netloc = target.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
        return host, int(port) if port.isdigit() else (443 if kind == "https" else 80)
    if kind == "dns":
        return "", 53
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0
