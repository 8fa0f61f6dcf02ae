"""Globs, walks and sizes a guest controls: `EnvironmentFile=` patterns are expanded inside the root (never on
the host's filesystem, `..` never climbs out), a directory of links to `.` with a deep pattern stays cheap,
Dovecot's `!include` globs cannot multiply, files bigger than the gate's limit are refused."""

from __future__ import annotations

import time

import pytest
from hostile_roots import LOOPBACK, SPAMD, Guest

from mailpreflight.access.globbing import GLOB_MATCHES
from mailpreflight.access.rootfs import RootFS

UNIT = "/etc/systemd/system/fetchy.service"


def with_envfiles(*patterns: str) -> str:
    lines = "".join(f"EnvironmentFile={p}\n" for p in patterns)
    return LOOPBACK.replace("[Service]\n", f"[Service]\n{lines}") + "ExecStartPost=/bin/echo $A $B $C\n"


def test_env_globs_never_list_the_host(guest: Guest) -> None:
    """Patterns that climb with `..`, links to host directories (absolute and relative): the guest's files
    only; the host directory's names (which carry the canary) never show."""
    host = str(guest.host_dir).lstrip("/")
    guest.write("/etc/sysconfig/a.env", "A=guest-a\n")
    guest.link("/etc/sysconfig/abs", f"/{host}")  # absolute: read inside the root, where it leads nowhere
    guest.link("/etc/sysconfig/rel", "../" * 12 + host)  # relative: climbs, and stops at the root
    guest.write(f"/{host}/b.env", "B=inside-the-root\n")  # the same path, inside the root
    guest.write(UNIT, with_envfiles("-/../../../../../../*/sysconfig/*.env", f"-/../../../{host}/*",
                                    "-/etc/sysconfig/abs/*", "-/etc/sysconfig/rel/*"))
    shown = guest.run("show", "fetchy", "--expand-env", "--format", "json", bound=15)
    assert shown.returncode == 0
    import json

    env = json.loads(shown.stdout)["exec_environment"]
    assert env["variables"] == {"A": "guest-a", "B": "inside-the-root"}
    assert guest.run("deps", "fetchy", bound=15).returncode in (1, 2)
    assert guest.check("fetchy", bound=20).returncode == 2


def test_a_directory_of_links_to_dot_and_a_deep_pattern(guest: Guest) -> None:
    for index in range(40):
        guest.link(f"/etc/loop/l{index}", ".")
    guest.write("/etc/loop/x.env", "C=found\n")
    deep = "/etc/loop/" + "*/" * 12 + "x.env"
    guest.write(UNIT, with_envfiles(f"-{deep}", "-/etc/loop/l1/l2/l3/x.env"))
    shown = guest.run("show", "fetchy", "--expand-env", bound=15)
    assert guest.elapsed < 15
    assert shown.returncode == 0
    assert f"EnvironmentFile={deep}: more than" in shown.stdout  # capped, and said so
    assert "=>  /bin/echo found" in shown.stdout  # the plain path through the links is still read
    assert guest.run("deps", bound=15).returncode in (0, 1, 2)
    assert guest.check("fetchy", bound=20).returncode == 2


def test_link_chains_of_thousands_of_dotdots(guest: Guest) -> None:
    """Links whose targets are thousands of `..`, chained: resolving a path stays bounded."""
    for index in range(30):
        guest.link(f"/etc/chain/c{index}", "../" * 1300 + f"etc/chain/c{index + 1}")
    guest.write("/etc/chain/c30", "A=end\n")
    guest.write(UNIT, with_envfiles("-/etc/chain/c0", "-/etc/chain/*"))
    shown = guest.run("show", "fetchy", "--expand-env", bound=15)
    assert shown.returncode == 0


def test_dovecot_includes_that_include_each_other(guest: Guest) -> None:
    """Twenty files, each including all twenty: 20^20 reads unless capped."""
    guest.write("/etc/dovecot/dovecot.conf", "protocols = imap\n!include conf.d/*.conf\n")
    for index in range(20):
        guest.write(f"/etc/dovecot/conf.d/{index:02}.conf", f"!include *.conf\n# file {index}\n")
    guest.write("/etc/systemd/system/dovecot.service", "[Service]\nExecStart=/usr/sbin/dovecot -F\n")
    guest.write("/etc/systemd/system/spamd.service", SPAMD)
    snapshot = guest.run("snapshot", bound=30)
    assert snapshot.returncode == 0
    assert guest.run("check", "spamd", "--timeout", "0.5", "--deadline", "5", "--resolv-conf", str(guest.resolv),
                     "--sa-version", "4.000001", bound=30).returncode in (0, 1, 2)


def test_env_glob_semantics_inside_the_root(tmp_path: str) -> None:
    """glob(3) as systemd uses it: sorted, `*` skips dot files, escapes, brackets, links resolved inside."""
    from pathlib import Path

    root = Path(str(tmp_path))
    for name in ("a.env", "b.env", ".hidden.env", "c*.env", "d.txt"):
        (root / "etc/env" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "etc/env" / name).write_text("X=1\n")
    (root / "etc/other").symlink_to("/etc/env")  # absolute: inside the root
    fs = RootFS(str(root))
    assert fs.glob("/etc/env/*.env").paths == ("/etc/env/a.env", "/etc/env/b.env", "/etc/env/c*.env")
    assert fs.glob("/etc/env/.*").paths == ("/etc/env/.hidden.env",)
    assert fs.glob("/etc/env/c\\*.env").paths == ("/etc/env/c*.env",)
    assert fs.glob("/etc/env/[!ab]*").paths == ("/etc/env/c*.env", "/etc/env/d.txt")
    assert fs.glob("/etc/other/[ab].env").paths == ("/etc/other/a.env", "/etc/other/b.env")
    assert fs.glob("/*/env/a.env").paths == ("/etc/env/a.env",)
    assert fs.glob("/etc/../../../etc/env/a*").paths == ("/etc/../../../etc/env/a.env",)
    assert fs.read_bytes("/etc/../../../etc/env/a.env") == b"X=1\n"
    assert fs.glob("/etc/env/nope*").paths == ()
    many = root / "etc/many"
    many.mkdir()
    for index in range(GLOB_MATCHES + 1):
        (many / f"f{index}").touch()
    capped = fs.glob("/etc/many/*")
    assert capped.paths == () and capped.problem == f"/etc/many/*: more than {GLOB_MATCHES} matches: not expanded"


def test_oversized_files_are_refused(guest: Guest) -> None:
    """A 9 MiB sparse environment file and drop-in: refused with their size, not read."""
    guest.write(UNIT, with_envfiles("/etc/sysconfig/big"))
    for path in ("/etc/sysconfig/big", "/etc/systemd/system/fetchy.service.d/big.conf"):
        guest.path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(guest.path(path), "wb") as handle:
            handle.truncate(9 * 1024 * 1024)
    shown = guest.run("show", "fetchy", "--expand-env", bound=15)
    assert shown.returncode == 0
    assert "fetchy.service.d/big.conf: cannot read: larger than 8 MiB: not read" in shown.stdout
    assert "EnvironmentFile=/etc/sysconfig/big cannot be read (larger than 8 MiB" in shown.stdout


def test_nft_include_globs_over_links_to_dot(guest: Guest) -> None:
    """--guest-firewall inlines the guest's nft includes: their globs are the same capped glob."""
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.firewall.guest import find_ruleset

    for index in range(40):
        guest.link(f"/etc/nft/loop/l{index}", ".")
    guest.write("/etc/nft/loop/x.nft", "table inet t {}\n")
    guest.write("/etc/nftables.conf", 'include "/etc/nft/loop/' + "*/" * 12 + 'x.nft"\n')
    started = time.monotonic()
    with pytest.raises(MailpreflightError, match=r"^/etc/nftables.conf:1: include .*: more than"):
        find_ruleset(RootFS(str(guest.root)))
    assert time.monotonic() - started < 10
