"""`check --guest-firewall`: the guest's own nftables ruleset, loaded into a throwaway namespace that reaches
the lab, blocks HTTP; the mirrors are reported as blocked by it, DNS as allowed; nothing is left behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from netlab import MIRROR_HOSTS, NetLab, unavailable_reason, write_guest_root

from mailpreflight.access.rootfs import RootFS
from mailpreflight.firewall import guest as guestfw

REPO = Path(__file__).resolve().parents[2]
GUEST_RULES = """#!/usr/sbin/nft -f
flush ruleset
table inet filter {
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" tcp dport { 80, 443 } drop comment "no web from the mail server"
  }
}
"""


def test_guest_rules_block_http(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    with NetLab(tmp_path / "lab") as lab:
        assert lab.signing_key is not None
        root = write_guest_root(tmp_path / "root", "[Service]\nExecStartPre=-/usr/bin/sa-update --updatedir "
                                "/var/lib/sa-lab\nExecStart=/usr/sbin/spamd\n")
        (root / "etc/nftables.conf").write_text(GUEST_RULES)
        lab.seed_updatedir(root / "var/lib/sa-lab", mirrors=MIRROR_HOSTS)
        argv = ["spamd.service", "--root", str(root), "--timeout", "2"]
        outside = lab.run([str(REPO / ".venv/bin/mailpreflight"), "check", *argv, "--format", "json"], timeout=60)
        resolv = tmp_path / "lab-resolv.conf"
        resolv.write_text(f"nameserver {lab.dns_addr}\n")
        ruleset = guestfw.find_ruleset(RootFS(str(root)))
        assert (ruleset.kind, ruleset.guest_path) == ("nft", "/etc/nftables.conf")
        with guestfw.guest_namespace(ruleset, uplink_ns=lab.inet_ns, resolv_conf=str(resolv)) as namespace:
            inside = guestfw.check_inside(namespace, argv)
        verdicts = {e["target"]: e["verdict"] for e in guestfw.compare(json.loads(outside.stdout), inside)}
        assert verdicts["TXT 1.0.4.updates.spamassassin.org"] == "allowed"
        mirror_files = [t for t in verdicts if t.startswith("http://mirror1.lab.test/")]
        assert mirror_files and all(verdicts[t] == "blocked by the guest's firewall" for t in mirror_files)
        rules = {e["target"]: e["blocking_rule"] for e in guestfw.compare(json.loads(outside.stdout), inside)}
        assert 'no web from the mail server' in rules[mirror_files[0]]  # nft's tracer names the guest's rule
        assert rules[mirror_files[0]].startswith("inet filter output rule")
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert namespace not in listed and not Path("/etc/netns", namespace).exists()


def test_unsupported_or_missing_configuration(tmp_path: Path) -> None:
    (tmp_path / "etc/firewalld/zones").mkdir(parents=True)
    with pytest.raises(guestfw.MailpreflightError, match="not supported"):
        guestfw.find_ruleset(RootFS(str(tmp_path)))


def test_cli_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/quiet.service").write_text("[Service]\nExecStart=/bin/true\n")
    done = subprocess.run([str(REPO / ".venv/bin/mailpreflight"), "check", "--root", str(tmp_path), "quiet.service",
                           "--guest-firewall"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "no supported guest firewall configuration" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("iptables, nft, expected", [
    ("-P FORWARD ACCEPT\n", "", None),
    ("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n", "", "the host's iptables FORWARD policy is DROP"),
    ("", "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n"
         "\t}\n}\n", "the host's nft chain forward (hook forward) has policy drop"),
    ("", "table inet filter {\n\tchain fwd {\n\t\ttype filter hook forward priority filter; policy accept;\n"
         "\t}\n\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n\t}\n}\n", None),
])
def test_host_forward_policy(iptables: str, nft: str, expected: str | None) -> None:
    assert guestfw.forward_blocked(iptables, nft) == expected
