"""`check --guest-firewall` the way it runs in production: the guest namespace goes out THROUGH THE HOST
(ip_forward on, a masquerade table), not through a lab namespace. The host reaches the lab's "internet"
namespace over a veth of its own and a route to the lab's net only, as a real host reaches the Internet, so
no packet leaves this machine. Afterwards ip_forward, the host's nft tables and the namespaces are as before."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import MIRROR_HOSTS, NetLab, unavailable_reason, write_guest_root

from mailpreflight.access.rootfs import RootFS
from mailpreflight.firewall import guest as guestfw

REPO = Path(__file__).resolve().parents[2]
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
UPLINK = "198.19.253"  # host <-> lab "internet" link (benchmarking range, never routed anywhere else)
GUEST_RULES = """flush ruleset
table inet filter {
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" tcp dport { 80, 443 } drop comment "no web from the mail server"
  }
}
"""


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[NetLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    forward_policy = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    if "-P FORWARD DROP" in forward_policy:
        pytest.skip("the host's FORWARD policy is DROP (e.g. docker): the route-out path needs forwarding")
    with NetLab(tmp_path / "lab") as netlab:
        host_if = f"mpu{os.getpid() % 100000}h"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "vhost", "netns", netlab.inet_ns)
        try:
            sh("ip", "addr", "add", f"{UPLINK}.1/30", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "-n", netlab.inet_ns, "addr", "add", f"{UPLINK}.2/30", "dev", "vhost")
            sh("ip", "-n", netlab.inet_ns, "link", "set", "vhost", "up")
            sh("ip", "route", "add", f"{netlab.net}.0/24", "via", f"{UPLINK}.2")
            yield netlab
        finally:
            subprocess.run(["ip", "route", "del", f"{netlab.net}.0/24"], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)


def test_guest_goes_out_through_the_host(lab: NetLab, tmp_path: Path) -> None:
    root = write_guest_root(tmp_path / "root", "[Service]\nExecStartPre=-/usr/bin/sa-update --updatedir "
                            "/var/lib/sa-lab\nExecStart=/usr/sbin/spamd\n")
    (root / "etc/nftables.conf").write_text(GUEST_RULES)
    lab.seed_updatedir(root / "var/lib/sa-lab", mirrors=MIRROR_HOSTS)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {lab.dns_addr}\n")
    argv = ["spamd.service", "--root", str(root), "--timeout", "2", "--resolv-conf", str(resolv)]
    # from the host, over its route; a private mount namespace gives it the lab's resolver (HTTP probes resolve
    # through libc, i.e. /etc/resolv.conf), as a real host's resolver answers for the Internet
    outside = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"', "sh", str(resolv),
                              str(REPO / ".venv/bin/mailpreflight"), "check", *argv, "--format", "json"],
                             capture_output=True, text=True, timeout=120)
    assert outside.returncode in (0, 1), outside.stderr
    forwarding_before = FORWARD.read_text()
    tables_before = sh("nft", "list", "tables")
    ruleset = guestfw.find_ruleset(RootFS(str(root)))
    with guestfw.guest_namespace(ruleset, resolv_conf=str(resolv)) as namespace:
        assert FORWARD.read_text().strip() == "1"
        assert f"table ip mailpreflight_guest_{os.getpid()}" in sh("nft", "list", "tables")
        inside = guestfw.check_inside(namespace, argv)
    compared = guestfw.compare(json.loads(outside.stdout), inside)
    verdicts = {e["target"]: e["verdict"] for e in compared}
    assert verdicts["TXT 1.0.4.updates.spamassassin.org"] == "allowed"  # DNS went guest -> host -> lab
    mirror_files = [t for t in verdicts if t.startswith("http://mirror1.lab.test/")]
    assert mirror_files and all(verdicts[t] == "blocked by the guest's firewall" for t in mirror_files)
    rules = {e["target"]: e["blocking_rule"] for e in compared}
    assert "no web from the mail server" in rules[mirror_files[0]]
    # everything as before
    assert FORWARD.read_text() == forwarding_before
    assert sh("nft", "list", "tables") == tables_before
    assert namespace not in sh("ip", "netns", "list") and not Path("/etc/netns", namespace).exists()
