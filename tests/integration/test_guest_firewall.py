"""`check --root DIR --guest-firewall`, the whole command as an admin runs it, on the network lab.

The command runs inside the lab's mail namespace (`nsenter --net`, same mount namespace as the host), which is
its "host": it probes the lab's DNS and mirrors from there, and classifies the probes' packets in a sealed
namespace of its own. Each test checks the answer, that the host's routing state (forwarding and redirect
sysctls, nft ruleset — of the root namespace and of the command's own) is as before, and that no namespace,
state file or process of the run is left. Then what used to go wrong: SIGKILL (→ `mailpreflight cleanup`),
SIGHUP, a storm of signals during the clean-up, two runs at once, a guest `include` of a host file, a resolver
on the host's loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from netlab import NetLab, unavailable_reason, write_guest_root

from mailpreflight.access.rootfs import RootFS
from mailpreflight.firewall import guest as guestfw
from mailpreflight.firewall import sandbox

REPO = Path(__file__).resolve().parents[2]
SPAMD = "[Service]\nExecStartPre=-/usr/bin/sa-update --updatedir /var/lib/sa-lab\nExecStart=/usr/sbin/spamd\n"
TXT = "TXT 1.0.4.updates.spamassassin.org"
NO_WEB = """#!/usr/sbin/nft -f
flush ruleset
table inet filter {
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" tcp dport { 80, 443 } drop comment "no web from the mail server"
  }
}
"""
NO_DNS = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -o eth0 -p udp -m udp --dport 53 -j DROP
COMMIT
"""
ROUTING_SYSCTL = re.compile(r"^net\.ipv(?:4\.ip_forward|[46]\.conf\.(?:all|default|lo|vmail)\."
                            r"(?:forwarding|accept_redirects|send_redirects)) = .*$", re.M)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    if shutil.which("nsenter") is None or shutil.which("sysctl") is None:
        pytest.skip("needs nsenter (util-linux) and sysctl (procps)")
    with NetLab(tmp_path_factory.mktemp("gfw-lab")) as netlab:
        yield netlab


def guest(lab: NetLab, root: Path, files: dict[str, str]) -> Path:
    """A guest whose spamd runs sa-update; its cached MIRRORED.BY names the lab's mirrors by address, so the
    host's HTTP probes need no libc resolver (the command runs with the host's /etc/resolv.conf)."""
    write_guest_root(root, SPAMD)
    mirrored = root / "var/lib/sa-lab/updates_spamassassin_org/MIRRORED.BY"
    mirrored.parent.mkdir(parents=True)
    mirrored.write_text("".join(f"http://{a}/ weight=5\n" for a in lab.mirror_addrs.values()))
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return root


def command(lab: NetLab, root: Path, *extra: str, resolv: str | None = None) -> list[str]:
    if resolv is None:
        resolv_path = root.parent / f"{root.name}-resolv.conf"
        resolv_path.write_text(f"# the lab's resolver\nnameserver {lab.dns_addr}\n")
        resolv = str(resolv_path)
    return ["nsenter", f"--net=/run/netns/{lab.mail_ns}", sys.executable, "-m", "mailpreflight", "check",
            "spamd.service", "--root", str(root), "--timeout", "2", "--resolv-conf", resolv, "--no-auth",
            "--format", "json", "--guest-firewall", *extra]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=dict(os.environ))


def verdicts(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    assert done.returncode in (0, 1, 2), done.stderr
    return {e["target"]: e for e in json.loads(done.stdout)["guest_firewall"]["endpoints"]}


def host_state(lab: NetLab) -> dict[str, str]:
    """Routing sysctls and the nft ruleset of the root namespace and of the command's own (the lab's mail ns)."""
    state = {}
    for where, prefix in (("root", []), ("mail", ["ip", "netns", "exec", lab.mail_ns])):
        sysctl = subprocess.run([*prefix, "sysctl", "-a"], capture_output=True, text=True, timeout=60).stdout
        state[f"{where} sysctl"] = "\n".join(sorted(ROUTING_SYSCTL.findall(sysctl)))
        state[f"{where} nft"] = subprocess.run([*prefix, "nft", "list", "ruleset"], capture_output=True, text=True,
                                               timeout=60, check=True).stdout
    assert "net.ipv4.ip_forward" in state["root sysctl"] and "net.ipv6.conf.all.forwarding" in state["mail sysctl"]
    return state


def ours() -> set[str]:
    """Our namespaces and state files on this host."""
    names = {n for n in os.listdir(sandbox.NETNS_DIR) if n.startswith(sandbox.PREFIX)} \
        if os.path.isdir(sandbox.NETNS_DIR) else set()
    states = {f"state {n}" for n in os.listdir(sandbox.STATE_DIR)} if os.path.isdir(sandbox.STATE_DIR) else set()
    return names | states


def test_nft_rules_block_http_and_the_host_stays_as_it_was(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    before, leftovers = host_state(lab), ours()
    done = run(command(lab, root))
    found = verdicts(done)
    assert found[TXT]["verdict"] == "allowed"
    assert found[TXT]["packets"] == [{"proto": "udp", "address": lab.dns_addr, "port": 53, "verdict": "passes",
                                      "rule": ""}]
    mirror_files = [t for t in found if t.startswith("http://")]
    assert len(mirror_files) == 4  # two mirrors, .tar.gz and .asc each
    for target in mirror_files:
        entry = found[target]
        assert entry["verdict"] == "blocked by the guest's firewall", entry
        assert str(entry["blocking_rule"]).startswith("inet filter output rule oifname \"eth0\"")
        assert "no web from the mail server" in str(entry["blocking_rule"])  # nft's tracer names the guest's rule
        assert [(p["proto"], p["port"]) for p in entry["packets"]] == [("tcp", 80)]  # type: ignore[attr-defined]
    assert done.returncode == 1  # the check itself is ok; what the guest blocks is a warning
    jsonschema.validate(json.loads(done.stdout), json.loads((REPO / "docs/schemas/check.schema.json").read_text()))
    assert host_state(lab) == before
    assert ours() == leftovers


def test_iptables_rules_block_dns_and_an_unreachable_mirror_is_unreachable_anyway(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/iptables/rules.v4": NO_DNS})
    lab.firewall("mirror1-drop")  # the host cannot reach mirror1 at all
    try:
        found = verdicts(run(command(lab, root, "--format", "json")))
    finally:
        lab.firewall("open")
    assert found[TXT]["verdict"] == "blocked by the guest's firewall"
    assert str(found[TXT]["blocking_rule"]).startswith("ip filter OUTPUT rule ")
    assert "udp dport 53" in str(found[TXT]["blocking_rule"]) and "drop" in str(found[TXT]["blocking_rule"])
    mirror1, mirror2 = lab.mirror_addrs["mirror1"], lab.mirror_addrs["mirror2"]
    assert {found[t]["verdict"] for t in found if t.startswith(f"http://{mirror1}/")} == {"unreachable anyway"}
    assert {found[t]["guest"] for t in found if t.startswith(f"http://{mirror1}/")} == {"passes"}
    assert {found[t]["verdict"] for t in found if t.startswith(f"http://{mirror2}/")} == {"allowed"}


def test_text_output_names_the_rule(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    argv = command(lab, root)
    done = run([*argv[:argv.index("--format")], "--guest-firewall"])
    assert done.returncode == 1, done.stderr
    assert "behind the guest's own firewall (/etc/nftables.conf, nft; packets out of eth0):" in done.stdout
    assert re.search(r"blocked by the guest's firewall\s+<- inet filter output rule .*no web from the mail server",
                     done.stdout)
    assert "-> 4 endpoint(s) the services need are blocked by the guest's own rules" in done.stdout


def test_the_guests_own_interface_names(lab: NetLab, tmp_path: Path) -> None:
    """Rules for `ens3` (not eth0) and an input rule naming another interface by index, which must exist for
    the ruleset to load at all."""
    rules = NO_WEB.replace('oifname "eth0"', 'oifname "ens3"').replace(
        "  chain output {", '  chain input {\n    type filter hook input priority 0; iif "ens4" accept\n  }\n'
                            "  chain output {")
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": rules})
    done = run(command(lab, root))
    found = verdicts(done)
    assert json.loads(done.stdout)["guest_firewall"]["interface"] == "ens3"
    assert {found[t]["verdict"] for t in found if t.startswith("http")} == {"blocked by the guest's firewall"}
    other = verdicts(run(command(lab, root, "--guest-interface", "eth1")))  # the rules say nothing of eth1
    assert {other[t]["verdict"] for t in other if t.startswith("http")} == {"allowed"}


def test_a_guest_include_is_read_inside_the_guest_never_on_the_host(lab: NetLab, tmp_path: Path) -> None:
    # the same absolute path names a file on the host (which would block DNS) and one in the guest (blocks web)
    host_file = tmp_path / "host-secret.nft"
    host_file.write_text('table inet host_secret {\n chain o {\n  type filter hook output priority 0;\n'
                         '  udp dport 53 drop comment "HOST SECRET"\n }\n}\n')
    main = f'flush ruleset\ninclude "{host_file}"\n'
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": main, str(host_file): NO_WEB.split("\n", 2)[2]})
    done = run(command(lab, root))
    found = verdicts(done)
    assert found[TXT]["verdict"] == "allowed"  # the host's file was not loaded
    assert all(found[t]["verdict"] == "blocked by the guest's firewall" for t in found if t.startswith("http"))
    assert "HOST SECRET" not in done.stdout + done.stderr
    # the file only on the host: refused before anything runs, one line naming the guest's file and line
    (root / str(host_file).lstrip("/")).unlink()
    done = run(command(lab, root))
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"/etc/nftables.conf:2: include \"{host_file}\": {host_file} does not exist in the guest" in done.stderr
    assert "HOST SECRET" not in done.stdout + done.stderr


def test_rules_that_do_not_load_are_named_by_guest_file_and_line(lab: NetLab, tmp_path: Path) -> None:
    bad_nft = guest(lab, tmp_path / "nft", {
        "/etc/nftables.conf": 'flush ruleset\ninclude "nftables.d/*.nft"\n',
        "/etc/nftables.d/out.nft": "table inet t {\n  chain o {\n    tcp dport 80 bogus\n  }\n}\n"})
    done = run(command(lab, bad_nft))
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("mailpreflight: /etc/nftables.d/out.nft:3: the guest's ruleset does not load: "
                                  "syntax error")
    bad_iptables = guest(lab, tmp_path / "ipt", {"/etc/iptables/rules.v4": NO_DNS.replace(
        "-j DROP", "-j NO-SUCH-CHAIN")})
    done = run(command(lab, bad_iptables))
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    # iptables-nft-restore finds it at COMMIT and names that line
    assert done.stderr.startswith("mailpreflight: /etc/iptables/rules.v4:6: the guest's rules do not load: ")
    assert "Chain 'NO-SUCH-CHAIN' does not exist" in done.stderr


def test_a_resolver_on_the_hosts_loopback_is_refused_before_probing(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    resolv = tmp_path / "loopback-resolv.conf"
    resolv.write_text("search lab.test\nnameserver 127.0.0.1\n")
    started = time.monotonic()
    done = run(command(lab, root, resolv=str(resolv)))
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr == (f"mailpreflight: {resolv}:2: nameserver 127.0.0.1 is a resolver on this host's loopback: "
                           "the guest's DNS packets would go to other servers (name the nameservers the guest will "
                           "ask: --resolv-conf FILE)\n")
    assert time.monotonic() - started < 10


# --- interrupted runs -------------------------------------------------------------------------------------------


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def mid_run(proc: subprocess.Popen[str], before: set[str], want: str = "",
            timeout: float = 90) -> tuple[str, list[int]]:
    """Wait until the run has its namespace with a process of its inside (nft loading, or the tracer; with
    `want`, one whose command line has it): the namespace's name and those processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for name in sorted(ours() - before):
            if name.startswith(sandbox.PREFIX):
                pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                                       text=True).stdout.split()]
                if pids and (not want or any(want in cmdline(pid) for pid in pids)):
                    return name, pids
        time.sleep(0.002)
    raise AssertionError(f"the run never reached its namespace: exit {proc.poll()}, "
                         f"{proc.stderr.read() if proc.stderr else ''}")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def gone(name: str, pids: list[int]) -> bool:
    """No namespace, no state file, none of the processes that were inside (given a moment to be reaped)."""
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    ident = name.removeprefix(sandbox.PREFIX)
    return (not os.path.lexists(f"{sandbox.NETNS_DIR}/{name}")
            and not os.path.lexists(f"{sandbox.STATE_DIR}/{ident}.json")
            and not any(Path(f"/proc/{pid}").exists() for pid in pids))


def test_a_killed_run_leaves_its_namespace_and_cleanup_removes_it(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    before = ours()
    proc = start(command(lab, root))
    name, pids = mid_run(proc, before, want="nft monitor trace")
    proc.kill()
    proc.communicate(timeout=30)
    state = Path(sandbox.STATE_DIR, f"{name.removeprefix(sandbox.PREFIX)}.json")
    assert os.path.lexists(f"{sandbox.NETNS_DIR}/{name}") and state.exists()  # SIGKILL: nothing could be done
    assert any("nft monitor trace" in cmdline(pid) for pid in pids)  # and the tracer lives on
    done = run([sys.executable, "-m", "mailpreflight", "cleanup", "--dry-run"])
    assert done.returncode == 0 and f"would remove network namespace {name} (its run was killed)" in done.stdout
    assert os.path.lexists(f"{sandbox.NETNS_DIR}/{name}") and state.exists()
    done = run([sys.executable, "-m", "mailpreflight", "cleanup"])
    assert done.returncode == 0, done.stderr
    assert f"removed network namespace {name} (its run was killed)" in done.stdout
    assert gone(name, pids)
    assert ours() == before
    again = run([sys.executable, "-m", "mailpreflight", "cleanup"])
    assert again.returncode == 0 and name not in again.stdout


def test_sighup_mid_run_removes_everything(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    before, state = ours(), host_state(lab)
    proc = start(command(lab, root))
    name, pids = mid_run(proc, before)
    proc.send_signal(signal.SIGHUP)  # the SSH session dropped
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and out == ""
    assert err == "mailpreflight: interrupted by SIGHUP; the guest firewall's namespace was removed\n"
    assert gone(name, pids) and ours() == before
    assert host_state(lab) == state


def test_signals_during_the_clean_up_do_not_cut_it_short(lab: NetLab, tmp_path: Path) -> None:
    root = guest(lab, tmp_path / "root", {"/etc/nftables.conf": NO_WEB})
    before = ours()
    proc = start(command(lab, root))
    name, pids = mid_run(proc, before)
    storm = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    sent = 0
    while proc.poll() is None:  # kill, Ctrl-C, hang-up, kill... until it is gone (send_signal skips a dead one)
        proc.send_signal(storm[sent % 3])
        sent += 1
        time.sleep(0.001)
    proc.communicate(timeout=30)
    assert sent > 3
    assert gone(name, pids) and ours() == before


def test_cleanup_removes_what_the_route_through_the_host_design_left(lab: NetLab) -> None:
    """Before the sealed design a killed run left `mpguest-PID`, /etc/netns/mpguest-PID, the NAT table
    `ip mailpreflight_guest_PID` and ip_forward=1. Here in the lab's mail namespace (cleanup's nft and sysctl
    are those of the namespace it runs in)."""
    pid = next(p for p in range(4_000_000, 1, -1) if not Path(f"/proc/{p}").exists())
    name, etc = f"mpguest-{pid}", Path(f"/etc/netns/mpguest-{pid}")
    in_mail = ["ip", "netns", "exec", lab.mail_ns]
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        subprocess.run([*in_mail, "nft", "-f", "-"], check=True, text=True, timeout=30, input=(
            f"table ip mailpreflight_guest_{pid} {{\n chain post {{\n  type nat hook postrouting priority 100;\n"
            "  ip saddr 198.19.254.0/30 masquerade\n }\n}\n"))
        subprocess.run([*in_mail, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=30)
        done = run(["nsenter", f"--net=/run/netns/{lab.mail_ns}", sys.executable, "-m", "mailpreflight", "cleanup"])
        assert done.returncode == 1, done.stderr  # a warning: ip_forward cannot be put back by anyone but the admin
        assert f"removed network namespace {name} (left by an older mailpreflight)" in done.stdout
        assert f"removed {etc}" in done.stdout
        assert f"removed nft table ip mailpreflight_guest_{pid} (NAT left by an older mailpreflight)" in done.stdout
        assert "net.ipv4.ip_forward is 1" in done.stderr and "sysctl -w net.ipv4.ip_forward=0" in done.stderr
        assert not os.path.lexists(f"/run/netns/{name}") and not etc.exists()
        tables = subprocess.run([*in_mail, "nft", "list", "tables"], capture_output=True, text=True, timeout=30)
        assert "mailpreflight_guest" not in tables.stdout
    finally:
        subprocess.run([*in_mail, "sysctl", "-qw", "net.ipv4.ip_forward=0"], timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(etc, ignore_errors=True)


def test_two_runs_at_once_each_get_their_own_answer(lab: NetLab, tmp_path: Path) -> None:
    web = guest(lab, tmp_path / "web", {"/etc/nftables.conf": NO_WEB})
    dns = guest(lab, tmp_path / "dns", {"/etc/iptables/rules.v4": NO_DNS})
    before = ours()
    first = start(command(lab, web))
    name, _ = mid_run(first, before)
    first.send_signal(signal.SIGSTOP)  # the first run holds its namespace while the second one runs entirely
    try:
        second = run(command(lab, dns))
        assert os.path.lexists(f"{sandbox.NETNS_DIR}/{name}")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    first_found = verdicts(subprocess.CompletedProcess(first.args, first.returncode, out, err))
    second_found = verdicts(second)
    assert first_found[TXT]["verdict"] == "allowed"
    assert second_found[TXT]["verdict"] == "blocked by the guest's firewall"
    web_targets = [t for t in first_found if t.startswith("http")]
    assert {first_found[t]["verdict"] for t in web_targets} == {"blocked by the guest's firewall"}
    assert {second_found[t]["verdict"] for t in web_targets} == {"allowed"}
    assert ours() == before


# --- without the lab ------------------------------------------------------------------------------------------


def test_unsupported_or_missing_configuration(tmp_path: Path) -> None:
    (tmp_path / "etc/firewalld/zones").mkdir(parents=True)
    with pytest.raises(guestfw.MailpreflightError, match="not supported"):
        guestfw.find_ruleset(RootFS(str(tmp_path)))


def test_cli_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/quiet.service").write_text("[Service]\nExecStart=/bin/true\n")
    done = subprocess.run([sys.executable, "-m", "mailpreflight", "check", "--root", str(tmp_path), "quiet.service",
                           "--guest-firewall"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 3 and "no supported guest firewall configuration" in done.stderr
    assert "Traceback" not in done.stderr
