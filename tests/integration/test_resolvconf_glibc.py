"""probes/resolvconf.py against glibc itself: each resolv.conf is bind-mounted over /etc/resolv.conf in a private
mount namespace, glibc's res_ninit() reads it, and the servers it keeps (struct __res_state) must be the ones our
parser keeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailpreflight.probes.resolvconf import parse_resolv_conf

CASES = [
    "nameserver 192.0.2.1\n",
    "nameserver\t192.0.2.1\tsecond word ignored\n",
    "nameserver 192.0.2.1 # after the address\n",
    "#nameserver 192.0.2.1\n;nameserver 192.0.2.2\nnameserver 192.0.2.3\n",
    "nameserver 192.0.2.1#x\nnameserver 192.0.2.2;x\nnameserver 192.0.2.3\n",
    " nameserver 192.0.2.1\n\tnameserver 192.0.2.2\nnameservers 192.0.2.3\nnameserver\nnameserver 192.0.2.4\n",
    "nameserver bogus\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver ::1\nnameserver 192.0.2.4\n",
    "nameserver fe80::1%lo\nnameserver %lo\nnameserver 1::2::3\nnameserver ::ffff:192.0.2.9\n",
    "nameserver 127.1\nnameserver 0x7f.0.0.2\nnameserver 010.0.0.1\n",
    "nameserver 08.0.0.1\nnameserver 256.0.0.1\nnameserver 1.2.3.4.\nnameserver 0x\nnameserver 1..2\n"
    "nameserver 4294967295\n",
    "nameserver 1.2.65535\nnameserver 1.16777215\nnameserver 1.2.65536\n",
    "nameserver 192.0.2.1\r\nnameserver 192.0.2.2\n",
    "nameserver 192.0.2.1\0junk\nnameserver 192.0.2.2",
    "search example.com\noptions timeout:2 attempts:3\n",
    "",
]

# res_ninit() on each file bind-mounted over /etc/resolv.conf; prints the servers glibc keeps (IPv4 in
# nsaddr_list, IPv6 through _u._ext.nsaddrs), as JSON, one list per file.
ORACLE = r"""
import ctypes, json, socket, subprocess, sys

MAXNS = 3

class In4(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort), ("addr", ctypes.c_ubyte * 4),
                ("zero", ctypes.c_ubyte * 8)]

class In6(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort), ("flowinfo", ctypes.c_uint32),
                ("addr", ctypes.c_ubyte * 16), ("scope_id", ctypes.c_uint32)]

class Ext(ctypes.Structure):
    _fields_ = [("nscount", ctypes.c_uint16), ("nsmap", ctypes.c_uint16 * MAXNS), ("nssocks", ctypes.c_int * MAXNS),
                ("nscount6", ctypes.c_uint16), ("nsinit", ctypes.c_uint16),
                ("nsaddrs", ctypes.POINTER(In6) * MAXNS), ("reserved", ctypes.c_uint * 2)]

class U(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 52), ("ext", Ext)]

class State(ctypes.Structure):  # struct __res_state, <resolv.h>
    _fields_ = [("retrans", ctypes.c_int), ("retry", ctypes.c_int), ("options", ctypes.c_ulong),
                ("nscount", ctypes.c_int), ("nsaddr_list", In4 * MAXNS), ("id", ctypes.c_ushort),
                ("dnsrch", ctypes.c_char_p * 7), ("defdname", ctypes.c_char * 256), ("pfcode", ctypes.c_ulong),
                ("bits", ctypes.c_uint), ("sort_list", ctypes.c_uint32 * 20), ("qhook", ctypes.c_void_p),
                ("rhook", ctypes.c_void_p), ("res_h_errno", ctypes.c_int), ("vcsock", ctypes.c_int),
                ("flags", ctypes.c_uint), ("u", U)]

libc = ctypes.CDLL(None)
found = []
for path in sys.argv[1:]:
    subprocess.run(["mount", "--bind", path, "/etc/resolv.conf"], check=True)
    state = State()
    if libc.__res_ninit(ctypes.byref(state)) != 0:
        raise SystemExit("res_ninit failed")
    servers = []
    for i in range(state.nscount):
        four = state.nsaddr_list[i]
        if four.family == socket.AF_INET:
            servers.append(socket.inet_ntop(socket.AF_INET, bytes(four.addr)))
        else:
            servers.append(socket.inet_ntop(socket.AF_INET6, bytes(state.u.ext.nsaddrs[i].contents.addr)))
    libc.__res_nclose(ctypes.byref(state))
    subprocess.run(["umount", "/etc/resolv.conf"], check=True)
    found.append(servers)
print(json.dumps(found))
"""


def test_the_servers_glibc_keeps(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/etc/resolv.conf").exists():
        pytest.skip("needs root, unshare(1) and an /etc/resolv.conf to mount over")
    files = []
    for index, text in enumerate(CASES):
        path = tmp_path / f"{index}.conf"
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", ORACLE, *files],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    glibc = json.loads(done.stdout)
    # glibc prints IPv6 addresses canonically; ours are as written (minus %scope): compare them parsed
    ours = [[_canonical(s) for s in parse_resolv_conf(text, "test").nameservers] for text in CASES]
    assert [[_canonical(s) for s in servers] for servers in glibc] == ours
    assert any(len(servers) == 3 for servers in glibc)  # the cases reach MAXNS


def _canonical(address: str) -> str:
    import ipaddress

    return str(ipaddress.ip_address(address))
