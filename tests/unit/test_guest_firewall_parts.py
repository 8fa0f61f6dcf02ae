"""The parts of `check --guest-firewall` that need no namespace: the guest's nft includes resolved inside the
guest, the resolvers its DNS packets go to, the packets of each probe, both answers combined, the tracer's
lines, and the signal guard. The sealed namespace itself: tests/integration/test_guest_firewall*.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError
from mailpreflight.firewall import guest as guestfw
from mailpreflight.firewall import nftinclude, sandbox
from mailpreflight.firewall.sandbox import Packet, PacketVerdict


def tree(root: Path, files: dict[str, str]) -> RootFS:
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return RootFS(str(root))


# --- includes -------------------------------------------------------------------------------------------------


def test_includes_are_resolved_as_nft_does_but_inside_the_guest(tmp_path: Path) -> None:
    fs = tree(tmp_path, {
        "/etc/nftables.conf": 'flush ruleset\ninclude "nft.d/*.nft"\ninclude "./srv/extra.nft"; # comment\n'
                              'table inet t {\n  include "/etc/chains/out.nft"\n}\n',
        "/etc/nft.d/b.nft": "table inet b {}\n",
        "/etc/nft.d/a.nft": "table inet a {}\n",
        "/etc/nft.d/.hidden.nft": "table inet hidden {}\n",  # glob's * does not match a leading dot
        "/etc/nft.d/sub.nft/x": "",  # a directory matching the glob: skipped, as nft does
        "/srv/extra.nft": "table inet extra {}\n",  # ./ is nft's working directory: / for nftables.service
        "/etc/chains/out.nft": "chain out {\n  type filter hook output priority 0;\n}\n",
    })
    inlined = nftinclude.inline(fs, "/etc/nftables.conf")
    lines = inlined.text.splitlines()
    assert [line for line in lines if line.startswith("table")] == [
        "table inet a {}", "table inet b {}", "table inet extra {}", "table inet t {"]
    assert "hidden" not in inlined.text and "include" not in inlined.text
    assert inlined.where(lines.index("table inet b {}") + 1) == ("/etc/nft.d/b.nft", 1)
    assert inlined.where(lines.index("table inet t {") + 1) == ("/etc/nftables.conf", 4)
    assert inlined.where(lines.index("  type filter hook output priority 0;") + 1) == ("/etc/chains/out.nft", 2)
    assert inlined.where(lines.index("}") + 1) == ("/etc/chains/out.nft", 3)
    assert inlined.where(len(lines)) == ("/etc/nftables.conf", 6)


def test_a_link_in_the_guest_is_followed_inside_the_guest(tmp_path: Path) -> None:
    host_only = tmp_path / "host-only.nft"  # an absolute path that exists on the host only
    host_only.write_text("table inet host_secret {}\n")
    root = tmp_path / "root"
    fs = tree(root, {"/etc/nftables.conf": 'include "/etc/rules.nft"\n', "/etc/guest.nft": "table inet guest {}\n"})
    (root / "etc/rules.nft").symlink_to("/etc/guest.nft")  # absolute: the guest's /etc, not the host's
    assert "table inet guest {}" in nftinclude.inline(fs, "/etc/nftables.conf").text
    (root / "etc/rules.nft").unlink()
    (root / "etc/rules.nft").symlink_to(host_only)
    with pytest.raises(MailpreflightError) as raised:
        nftinclude.inline(fs, "/etc/nftables.conf")
    assert str(raised.value).startswith('/etc/nftables.conf:1: include "/etc/rules.nft": /etc/rules.nft does not exist')
    assert "host_secret" not in str(raised.value)


@pytest.mark.parametrize("text, expected", [
    ('include "/etc/missing.nft"\n', '/etc/nftables.conf:1: include "/etc/missing.nft": /etc/missing.nft does not '
                                     'exist in the guest (nft would fail: "File not found")'),
    ('# a comment\ninclude\n"/etc/x.nft"\n', "/etc/nftables.conf:2: `include` without a quoted file name after it"),
    ('table inet t {}\n5include "/etc/x"\n', '/etc/nftables.conf:2: include "/etc/x": /etc/x does not exist'),
    ('include "/etc/nftables.conf"\n', "/etc/nftables.conf:1: includes nested more than 16 deep"),
])
def test_refused_includes_name_the_guest_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    fs = tree(tmp_path, {"/etc/nftables.conf": text})
    with pytest.raises(MailpreflightError) as raised:
        nftinclude.inline(fs, "/etc/nftables.conf")
    assert str(raised.value).startswith(expected)


def test_a_glob_without_match_includes_nothing(tmp_path: Path) -> None:
    fs = tree(tmp_path, {"/etc/nftables.conf": 'include "/etc/none/*.nft"\ntable inet t {}\n'})
    assert nftinclude.inline(fs, "/etc/nftables.conf").text.strip() == "table inet t {}"


@pytest.mark.parametrize("text, count", [
    ('include "/a"', 1),
    ('table inet t { include "/a" }', 1),
    ('x ; include \\\n "/a"', 1),
    ('comment "include \\"/a\\""', 0),  # nft's quoted strings have no escapes: the second quote ends it
    ('# include "/a"', 0),
    ('"spans\nlines include" include "/a"', 1),
    ('noinclude "/a"', 0),
    ('include_more "/a"', 0),
    ('include* "/a"', 0),
    ('fe80::1include "/a"', 1),  # an address token, then the keyword
    ('5include "/a"', 1),
    ('$include "/a"', 1),
    ('" include "/a"', 0),  # inside the string that opens at the first quote
])
def test_include_keywords_as_nfts_scanner_sees_them(text: str, count: int) -> None:
    assert len(nftinclude.include_keywords(text)) == count


def test_iptables_files_and_what_is_refused(tmp_path: Path) -> None:
    fs = tree(tmp_path, {"/etc/iptables/rules.v6": "*filter\nCOMMIT\n"})
    ruleset = guestfw.find_ruleset(fs)
    assert (ruleset.kind, ruleset.guest_path, ruleset.text, ruleset.v6_path) == (
        "iptables", "/etc/iptables/rules.v6", "", "/etc/iptables/rules.v6")
    assert [load.argv[0].startswith("ip6tables") for load in ruleset.loads()] == [True]
    tree(tmp_path, {"/etc/iptables/rules.v4": "*filter\n-A OUTPUT -m bpf --object-pinned /sys/fs/bpf/x -j DROP\n"})
    with pytest.raises(MailpreflightError, match=r"^/etc/iptables/rules.v4:2: `-m bpf --object-pinned`"):
        guestfw.find_ruleset(fs)


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/nftables.conf")
    with pytest.raises(MailpreflightError, match=r"^/etc/nftables.conf: not a regular file: refused$"):
        guestfw.find_ruleset(RootFS(str(tmp_path)))


def test_nft_errors_point_into_the_guest(tmp_path: Path) -> None:
    fs = tree(tmp_path, {"/etc/nftables.conf": 'flush ruleset\ninclude "/etc/bad.nft"\n',
                         "/etc/bad.nft": "table inet t {\n  chain c {\n    bogus\n  }\n}\n"})
    ruleset = guestfw.find_ruleset(fs)
    line = ruleset.text.splitlines().index("    bogus") + 1
    error = ruleset.loads()[0].error(f"/dev/stdin:{line}:10-10: Error: syntax error, unexpected newline\n    bogus\n")
    assert str(error) == ("/etc/bad.nft:3: the guest's ruleset does not load: syntax error, unexpected newline "
                          "(check it with: nft -c -f /etc/bad.nft (on the guest))")


# --- resolvers, packets, verdicts ------------------------------------------------------------------------------


def test_resolvers_the_namespace_can_reach() -> None:
    text = "search example.org\nnameserver 192.0.2.53\nnameserver 127.0.0.53\n"
    assert guestfw.reachable_resolvers(["192.0.2.53", "127.0.0.53"], "/etc/resolv.conf", text,
                                       ["192.0.2.53", "2001:db8::53", "127.0.0.1"]) == ["192.0.2.53", "2001:db8::53"]
    with pytest.raises(MailpreflightError) as raised:
        guestfw.reachable_resolvers(["192.0.2.53", "127.0.0.53"], "/etc/resolv.conf", text, None)
    assert str(raised.value) == ("/etc/resolv.conf:3: nameserver 127.0.0.53 is a resolver on this host's loopback: "
                                 "the guest's DNS packets would go to other servers (name the nameservers the guest "
                                 "will ask: --resolv-conf FILE)")
    with pytest.raises(MailpreflightError, match=r"^r:1: nameserver ::1 is a resolver on this host's loopback"):
        guestfw.reachable_resolvers(["::1"], "r", "nameserver ::1\n")
    with pytest.raises(MailpreflightError, match=r"^/mnt/etc/resolv.conf: names no nameserver, so the resolver is "
                                                 r"glibc's default 127.0.0.1, on this host's loopback"):
        guestfw.reachable_resolvers(["127.0.0.1"], "/mnt/etc/resolv.conf", "")  # e.g. a link into the guest's /run
    assert guestfw.reachable_resolvers(["fe80::1", "192.0.2.1"], "r", "") == ["192.0.2.1"]


def report(*probes: tuple[str, str, str, list[str]]) -> dict[str, object]:
    return {"probes": [{"kind": k, "target": t, "status": s, "error": None if s == "ok" else "connect-timeout",
                        "answers": a} for k, t, s, a in probes]}


def test_the_packets_of_each_probe() -> None:
    outside = report(
        ("dns", "A mirror.example", "ok", ["192.0.2.10"]),
        ("dns", "AAAA mirror.example", "ok", ["2001:db8::10"]),
        ("http", "http://mirror.example/x.tar.gz", "ok", ["https://[2001:db8::20]:8443/y", "200"]),
        ("https", "https://192.0.2.30/", "fail", []),
        ("tcp", "localhost:2703", "ok", ["127.0.0.1"]),
        ("udp", "[2001:db8::40]:24441", "ok", []),
    )  # the only name looked up, localhost, is in /etc/hosts: no DNS traffic
    plan = guestfw.plan_packets(outside, ["192.0.2.53", "2001:db8::53"], timeout=5)
    query = plan[("dns", "A mirror.example")]
    assert [(p.proto, p.address, p.port) for p in query] == [("udp", "192.0.2.53", 53), ("udp", "2001:db8::53", 53)]
    assert b"\x06mirror\x07example\x00\x00\x01\x00\x01" in query[0].payload  # the real question, type A
    assert [(p.proto, p.address, p.port) for p in plan[("http", "http://mirror.example/x.tar.gz")]] == [
        ("tcp", "192.0.2.10", 80), ("tcp", "2001:db8::10", 80), ("tcp", "2001:db8::20", 8443)]
    assert [(p.address, p.port) for p in plan[("https", "https://192.0.2.30/")]] == [("192.0.2.30", 443)]
    assert ("tcp", "127.0.0.1", 2703) in [(p.proto, p.address, p.port) for p in plan[("tcp", "localhost:2703")]]
    assert [(p.proto, p.address, p.port) for p in plan[("udp", "[2001:db8::40]:24441")]] == [
        ("udp", "2001:db8::40", 24441)]


def test_both_answers_combined() -> None:
    outside = report(("tcp", "a:1", "ok", []), ("tcp", "b:2", "ok", []), ("tcp", "c:3", "ok", []),
                     ("tcp", "d:4", "fail", []), ("tcp", "e:5", "ok", []))
    p = {name: Packet("tcp", f"192.0.2.{n}", n) for n, name in enumerate("abcd", 1)}
    v6 = Packet("tcp", "2001:db8::3", 3)
    plan = {("tcp", "a:1"): [p["a"]], ("tcp", "b:2"): [p["b"]], ("tcp", "c:3"): [p["c"], v6],
            ("tcp", "d:4"): [p["d"]], ("tcp", "e:5"): []}
    rule = 'inet filter output rule tcp dport 2 drop comment "x"'
    verdicts = {p["a"]: PacketVerdict(True, ""), p["b"]: PacketVerdict(False, rule), p["c"]: PacketVerdict(True, ""),
                v6: PacketVerdict(False, "inet filter output policy drop"), p["d"]: PacketVerdict(False, "")}
    found = {e["target"]: e for e in guestfw.combine(outside, plan, verdicts)}
    assert [(found[t]["verdict"], found[t]["guest"]) for t in ("a:1", "b:2", "c:3", "d:4", "e:5")] == [
        ("allowed", "passes"), ("blocked by the guest's firewall", "blocked"),
        ("partly blocked by the guest's firewall", "partly blocked"), ("unreachable anyway", "blocked"),
        ("not classified (no address known)", "not classified")]
    assert found["b:2"]["blocking_rule"] == rule and found["c:3"]["blocking_rule"] == "inet filter output policy drop"
    assert found["c:3"]["packets"][1] == {"proto": "tcp", "address": "2001:db8::3", "port": 3, "verdict": "blocked",
                                          "rule": "inet filter output policy drop"}


def test_the_tracer_names_the_first_rule_that_stops_a_packet() -> None:
    # lines as nft 1.0.6's `nft monitor trace` prints them (captured in the sealed namespace)
    lines = [
        'trace id 1a27821b inet mailpreflight_classify first packet: oif "eth0" ip saddr 198.19.7.2 ip daddr '
        "198.18.0.3 ip protocol tcp ip length 60 tcp sport 40002 tcp dport 80 tcp flags == syn tcp window 64240 ",
        "trace id 1a27821b inet mailpreflight_classify first rule meta l4proto { tcp, udp } th sport 39998-40512 "
        "meta nftrace set 1 (verdict continue)",
        'trace id 1a27821b inet filter output packet: oif "eth0" ip saddr 198.19.7.2 tcp sport 40002 tcp dport 80',
        "trace id 1a27821b inet filter output rule tcp dport 80 jump web (verdict jump web)",
        'trace id 1a27821b inet filter web rule tcp dport 80 drop comment "no web" (verdict drop)',
        'trace id 88c706c1 inet mailpreflight_classify first packet: oif "eth0" ip daddr 198.18.0.1 udp sport 40001 '
        "udp dport 53 udp length 9",
        "trace id 88c706c1 ip filter OUTPUT rule udp dport 53  counter packets 0 bytes 0 drop (verdict drop)",
        'trace id 5c0b90e0 inet mailpreflight_classify first packet: oif "eth0" ip daddr 198.18.0.4 tcp sport 40003 '
        "tcp dport 443",
        "trace id 5c0b90e0 inet filter output policy drop ",
        'trace id 77777777 inet mailpreflight_classify first packet: oif "eth0" ip daddr 198.18.0.4 tcp sport 40004 '
        "tcp dport 25",
        "trace id 77777777 inet filter output policy accept ",
    ]
    trace = sandbox._Trace(fd=-1, lines=lines)
    assert trace.blocking_rules() == {
        ("tcp", 40002): 'inet filter web rule tcp dport 80 drop comment "no web"',
        ("udp", 40001): "ip filter OUTPUT rule udp dport 53  counter packets 0 bytes 0 drop",
        ("tcp", 40003): "inet filter output policy drop"}


def test_signals_are_noted_and_kept_out_of_the_clean_up() -> None:
    """In a fresh, single-threaded interpreter: a process-directed signal goes to any thread that does not block
    it, and a test session may hold other threads (probe watchdogs) that would take it."""
    code = """
import os, signal
from mailpreflight.firewall import sandbox
previous = signal.getsignal(signal.SIGTERM)
with sandbox.SignalGuard() as guard:
    os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the guard
    assert guard.received == [signal.SIGTERM]
    with guard.blocked():
        os.kill(os.getpid(), signal.SIGHUP)
        assert guard.received == [signal.SIGTERM]  # blocked: not even noted yet
        assert signal.SIGHUP in signal.sigpending()
    assert guard.received == [signal.SIGTERM, signal.SIGHUP]  # delivered when unblocked
    try:
        guard.check()
        raise SystemExit("no Interrupted")
    except sandbox.Interrupted as exc:
        assert str(exc) == "interrupted by SIGTERM; the guest firewall's namespace was removed", exc
assert signal.getsignal(signal.SIGTERM) == previous
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_the_interfaces_the_guests_rules_name(tmp_path: Path) -> None:
    fs = tree(tmp_path / "nft", {"/etc/nftables.conf": (
        "table inet f {\n"
        "  chain o { type filter hook output priority 0; policy drop;\n"
        '    oifname "ens3" tcp dport 25 accept\n'
        "    oifname ens3 udp dport 53 accept\n"
        '    oifname { "wg0", lo } accept  # oifname "commented" counts for nothing\n'
        "    oif lo accept\n"
        '    meta oifname vmap { "ens3" : accept }\n'
        "  }\n"
        '  chain i { type filter hook input priority 0; iif "ens4" accept; iifname "ens9" accept; }\n'
        "}\n"
        'table netdev n {\n  chain ingress { type filter hook ingress device "ens5" priority 0; }\n}\n')})
    assert guestfw.find_ruleset(fs).interfaces() == ("ens3", ["ens4", "ens5"])
    fs = tree(tmp_path / "ipt", {"/etc/iptables/rules.v4": "*filter\n-A OUTPUT -o lo -j ACCEPT\n"
                                                           "-A OUTPUT -o eth+ -p tcp --dport 25 -j ACCEPT\nCOMMIT\n"})
    assert guestfw.find_ruleset(fs).interfaces() == ("eth0", [])
    fs = tree(tmp_path / "none", {"/etc/nftables.conf": "table inet f {}\n"})
    assert guestfw.find_ruleset(fs).interfaces() == ("eth0", [])
