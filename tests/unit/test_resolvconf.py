"""resolv.conf read once, as glibc's res_vinit_1() reads it, for every user: check's probes, sa-update's resolver,
the firewall allow-list and guard; and the one dependency -> probe mapping they share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.saupdate import read_resolver
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Dependency, DepKind, Role
from mailpreflight.probes.dns import ResolverConfig, resolver_for
from mailpreflight.probes.resolvconf import parse_resolv_conf, read_resolv_conf
from mailpreflight.probes.tasks import probe_task


def servers(text: str) -> tuple[str, ...]:
    return parse_resolv_conf(text, "test").servers


@pytest.mark.parametrize(("text", "expected"), [
    ("nameserver 192.0.2.1\n", ("192.0.2.1",)),
    ("nameserver\t192.0.2.1\tsecond word ignored\n", ("192.0.2.1",)),
    ("nameserver 192.0.2.1 # a comment after the address is just more words\n", ("192.0.2.1",)),
    # comments only at the start of a line
    ("#nameserver 192.0.2.1\n;nameserver 192.0.2.2\nnameserver 192.0.2.3\n", ("192.0.2.3",)),
    ("nameserver 192.0.2.1#x\nnameserver 192.0.2.2;x\n", ()),  # not an address: skipped
    # the keyword counts only at the very start, followed by a blank
    (" nameserver 192.0.2.1\n\tnameserver 192.0.2.2\nnameservers 192.0.2.3\nnameserver\n", ()),
    # the first three usable servers; unusable lines do not count
    ("nameserver bogus\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver ::1\nnameserver 192.0.2.4\n",
     ("192.0.2.1", "2001:db8::1", "::1")),
    ("nameserver fe80::1%eth0\n", ("fe80::1",)),  # the scope is taken off
    ("nameserver %eth0\nnameserver 1::2::3\n", ()),
    # inet_aton forms
    ("nameserver 127.1\nnameserver 0x7f.0.0.2\nnameserver 010.0.0.1\n", ("127.0.0.1", "127.0.0.2", "8.0.0.1")),
    ("nameserver 08.0.0.1\nnameserver 256.0.0.1\nnameserver 1.2.3.4.\nnameserver 0x\nnameserver 1..2\n", ()),
    ("nameserver 192.0.2.1\r\nnameserver 192.0.2.2\n", ("192.0.2.2",)),  # glibc keeps the \r: no address
    ("nameserver 192.0.2.1\0junk\n", ("192.0.2.1",)),  # C strings end at NUL
    ("", ()),
])
def test_nameservers_as_glibc_reads_them(text: str, expected: tuple[str, ...]) -> None:
    assert servers(text) == expected


def test_default_server_and_options() -> None:
    conf = parse_resolv_conf("search example.com\noptions timeout:2 rotate\noptions  attempts:3\n", "here")
    assert conf.servers == () and conf.nameservers == ("127.0.0.1",)
    assert conf.options == ("timeout:2", "rotate", "attempts:3")
    assert resolver_for(conf) == ResolverConfig(("127.0.0.1",), "here")


def test_read_through_the_guest_tree(tmp_path: Path) -> None:
    # systemd-resolved's absolute link is followed inside the root, never to the host's file
    make_tree(tmp_path, {"/etc/resolv.conf": {"symlink": "/run/systemd/resolve/stub-resolv.conf"},
                         "/run/systemd/resolve/stub-resolv.conf": "nameserver 127.0.0.53\n"})
    conf = read_resolv_conf(RootFS(str(tmp_path)))
    assert (conf.servers, conf.source) == (("127.0.0.53",), "/etc/resolv.conf")
    assert read_resolv_conf(RootFS(str(tmp_path / "none")), source="guest").nameservers == ("127.0.0.1",)


def test_a_required_file_that_cannot_be_read_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(MailpreflightError, match=r"^cannot read given: No such file or directory$"):
        read_resolv_conf(RootFS("/"), str(tmp_path / "missing"), "given", required=True)
    (tmp_path / "dir").mkdir()
    with pytest.raises(MailpreflightError, match=r"^cannot read .*/dir: a directory, not a regular file: not read"):
        read_resolv_conf(RootFS("/"), str(tmp_path / "dir"), required=True)
    os.mkfifo(tmp_path / "fifo")  # the read gate: refused unopened, never a hang
    with pytest.raises(MailpreflightError, match=r"^cannot read .*/fifo: a FIFO \(named pipe\), not a regular file"):
        read_resolv_conf(RootFS("/"), str(tmp_path / "fifo"), required=True)


def test_check_names_a_resolv_conf_it_cannot_read(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mailpreflight", "check", "--root", str(tmp_path),
                           "--resolv-conf", "missing.conf"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert (done.returncode, done.stderr) == (3, "mailpreflight: cannot read missing.conf: No such file or directory\n")


def test_sa_update_resolver_reads_the_same_servers(tmp_path: Path) -> None:
    make_tree(tmp_path, {"/etc/resolv.conf": ";nameserver 192.0.2.9\nnameserver fe80::1%eth0\nnameserver 192.0.2.1\n"
                                             "nameserver 192.0.2.2\nnameserver 192.0.2.3\noptions timeout:2\n"})
    resolver = read_resolver(RootFS(str(tmp_path)), {})
    assert resolver.nameservers == ("fe80::1", "192.0.2.1", "192.0.2.2")
    assert (resolver.retrans, resolver.learned_from) == (2.0, "/etc/resolv.conf")
    assert read_resolver(RootFS(str(tmp_path)), {"RES_NAMESERVERS": "192.0.2.7"}).nameservers == ("192.0.2.7",)
    assert read_resolver(RootFS(str(tmp_path / "none")), {}).nameservers == ("127.0.0.1",)


def test_each_dependency_kind_gets_its_probe() -> None:
    with socket.socket() as listening, socket.socket(type=socket.SOCK_DGRAM) as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        closed.bind(("127.0.0.1", 0))
        port, dead = listening.getsockname()[1], closed.getsockname()[1]
        resolver = ResolverConfig(("127.0.0.1",), "test", dead)  # nothing answers DNS there
        deps = [Dependency(DepKind.TCP, f"127.0.0.1:{port}", Role.START, "test"),
                Dependency(DepKind.HTTP, f"http://127.0.0.1:{dead}/x", Role.START, "test"),
                Dependency(DepKind.DNS, "TXT example.invalid", Role.START, "test"),
                Dependency(DepKind.UDP, f"127.0.0.1:{dead}", Role.START, "test")]
        results = [probe_task(dep, resolver, 1.0)() for dep in deps]
    assert [(r.kind, r.target) for r in results] == [(d.kind, d.target) for d in deps]
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[1].error == "refused"


def test_a_nameserver_of_thousands_of_digits_is_not_an_address() -> None:
    """Found by the fuzz campaign: int() raised ValueError on more than 4,300 digits (an internal error)."""
    conf = parse_resolv_conf("nameserver 1" + "0" * 5000 + "\nnameserver 192.0.2.1\n", "guest:/etc/resolv.conf")
    assert conf.servers == ("192.0.2.1",)
    assert parse_resolv_conf("nameserver 037777777777\n", "x").servers == ("255.255.255.255",)  # longest valid
