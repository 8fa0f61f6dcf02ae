"""The generated allow-list on the namespace lab: locked down, the real sa-update fails; with the allow-list
loaded, `check` goes green and the real sa-update succeeds; nothing else became reachable. The other formats
load as they are (`iptables-restore --test`, `sh -n` for the firewalld script)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from netlab import MIRROR_HOSTS, NetLab, unavailable_reason, write_guest_root

REPO = Path(__file__).resolve().parents[2]
MAILPREFLIGHT = str(REPO / ".venv/bin/mailpreflight")
LOCKDOWN = ("table inet mailpreflight_out {\n chain output {\n  type filter hook output priority 0; policy drop;\n"
            '  oif "lo" accept\n  ct state established,related accept\n }\n}\n')


def guest(tmp_path: Path, lab: NetLab) -> Path:
    assert lab.signing_key is not None
    root = write_guest_root(tmp_path / "root", (
        "[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\nTimeoutStartSec=120\n"
        f'ExecStartPre=/bin/bash -c "sa-update --gpgkey {lab.signing_key.fingerprint} --gpghomedir '
        f'{lab.gpghomedir} --updatedir /var/lib/sa-lab || true"\nExecStart=/usr/sbin/spamd\n'),
        resolv_conf=f"nameserver {lab.dns_addr}\n")
    lab.seed_updatedir(root / "var/lib/sa-lab", mirrors=MIRROR_HOSTS)  # a fresh cached mirror list
    return root


def nft(lab: NetLab, ruleset: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", lab.mail_ns, "nft", "-f", "-"], input=ruleset, text=True,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_allow_list_opens_exactly_what_sa_update_needs(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    with NetLab(tmp_path / "lab") as lab:
        root = guest(tmp_path, lab)
        made = lab.run([MAILPREFLIGHT, "firewall", "--root", str(root), "spamd.service", "--format", "nft",
                        "--resolve"], timeout=60)
        assert made.returncode == 0, made.stderr
        allow = made.stdout
        assert "udp dport 53" in allow and "mirror1.lab.test" in allow  # names kept in comments, sets resolved
        syntax = subprocess.run(["ip", "netns", "exec", lab.mail_ns, "nft", "-c", "-f", "-"], input=allow,
                                text=True, capture_output=True, timeout=30)
        assert syntax.returncode == 0, syntax.stderr

        nft(lab, LOCKDOWN)
        locked = lab.sa_update([], root / "var/lib/sa-lab")
        assert locked.returncode == 4, locked

        nft(lab, "delete table inet mailpreflight_out\n" + allow)
        report = lab.run([MAILPREFLIGHT, "check", "--root", str(root), "spamd.service", "--format", "json",
                          "--timeout", "3"], timeout=60)
        verdict = json.loads(report.stdout)["units"][0]
        assert verdict["start"]["predicted"] == "ok", verdict
        sa = next(c for c in verdict["commands"] if c["tool"] == "sa-update")
        assert (sa["predicted"], sa["predicted_exit"]) == ("ok", "0"), sa
        opened = lab.sa_update([], root / "var/lib/sa-lab")
        assert opened.returncode == 0, opened

        # nothing else: the channel's MIRRORED.BY server (.1, port 80) was not needed and stays closed
        probe = lab.run(["python3", "-c", f"import socket; socket.create_connection(('{lab.dns_addr}', 80), 2)"],
                        timeout=30)
        assert probe.returncode != 0 and ("PermissionError" in probe.stderr or "timed out" in probe.stderr)


@pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables not installed")
def test_iptables_and_firewalld_outputs_load(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    with NetLab(tmp_path / "lab") as lab:
        root = guest(tmp_path, lab)
        made = lab.run([MAILPREFLIGHT, "firewall", "--root", str(root), "--format", "iptables"], timeout=60)
        assert made.returncode == 0, made.stderr
        test = subprocess.run(["ip", "netns", "exec", lab.mail_ns, "iptables-restore", "--test"],
                              input=made.stdout, text=True, capture_output=True, timeout=30)
        assert test.returncode == 0, (test.stderr, made.stdout)
        script = lab.run([MAILPREFLIGHT, "firewall", "--root", str(root), "--format", "firewalld", "--resolve"],
                         timeout=60)
        assert script.returncode == 0, script.stderr
        assert "--add-rich-rule='rule family=\"ipv4\" destination address=\"" in script.stdout
        assert subprocess.run(["sh", "-n"], input=script.stdout, text=True, timeout=10).returncode == 0
        names = lab.run([MAILPREFLIGHT, "firewall", "--root", str(root), "--format", "firewalld"], timeout=60)
        assert names.returncode == 3 and "--resolve" in names.stderr
    assert socket.AF_INET  # the lab ran only inside its own namespaces
