"""Hostile servers for the probe bounds: an HTTP server that drips (one header line, or one body byte, every
0.8 s), slow redirect chains, a DNS server that never answers and one whose TCP answer drips.

Run as a script inside a fresh network and mount namespace (`unshare --net --mount`), it plays a whole hostile
network on that namespace's loopback: a silent DNS server on 127.0.0.1:53, which the namespace's
/etc/resolv.conf (bind-mounted) also names, so that the system resolver (getaddrinfo) hangs as well, and the
dripping HTTP server on 127.0.0.1:8080. It then runs the command it is given and prints one JSON line:
returncode, seconds until its first output byte (the report) and until it exited, stdout, stderr. Nothing
leaves the namespace.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

DRIP = 0.8  # seconds between two dripped pieces: every single read succeeds long before any read timeout
Handler = Callable[[socket.socket, bytes, int], None]


def _forever(conn: socket.socket, first: bytes, piece: Callable[[int], bytes]) -> None:
    conn.sendall(first)
    index = 0
    while True:
        time.sleep(DRIP)
        conn.sendall(piece(index))
        index += 1


def drip_headers(conn: socket.socket, request: bytes, port: int) -> None:
    """The status line at once, then one more header line every DRIP seconds, never the blank line."""
    _forever(conn, b"HTTP/1.1 200 OK\r\n", lambda i: b"X-Drip-%d: more\r\n" % i)


def drip_status(conn: socket.socket, request: bytes, port: int) -> None:
    """The status line itself, one byte every DRIP seconds."""
    line = b"HTTP/1.1 200 OK\r\n" * 1000
    _forever(conn, b"", lambda i: line[i:i + 1])


def drip_body(conn: socket.socket, request: bytes, port: int) -> None:
    """Complete headers announcing 100 kB, then one body byte every DRIP seconds (HEAD gets 405: use GET)."""
    if request.startswith(b"HEAD "):
        conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        request = conn.recv(4096)
    _forever(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", lambda i: b"x")


def drip_tls(conn: socket.socket, request: bytes, port: int) -> None:
    """After the ClientHello: a TLS handshake record header announcing 16 KiB, then one byte every DRIP s."""
    _forever(conn, b"\x16\x03\x03\x40\x00", lambda i: b"\x00")


def slow_redirects(conn: socket.socket, request: bytes, port: int) -> None:
    """Every answer is a redirect to the next path, each taking 0.4 s: five hops take 2 s."""
    path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/0"
    hop = int(path.strip(b"/") or b"0") if path.strip(b"/").isdigit() else 0
    time.sleep(0.4)
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/%d\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n" % (port, hop + 1))


def by_path(conn: socket.socket, request: bytes, port: int) -> None:
    """/headers, /status, /body, /redirect: the behaviours above on one port."""
    path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
    handler = {b"/headers": drip_headers, b"/status": drip_status, b"/body": drip_body}.get(path, slow_redirects)
    handler(conn, request, port)


class TCPServer:
    """Accepts on 127.0.0.1 and hands each connection (and its first read) to `handler` in a daemon thread."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.handler = handler
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up: that is the point
            self.handler(conn, conn.recv(4096), self.port)

    def close(self) -> None:
        self.sock.close()


class SilentUDP:
    """Reads every datagram and never answers (a black-holed DNS server, as a dropping firewall makes it)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recv(4096)
            except OSError:
                return
            self.received += 1

    def close(self) -> None:
        self.sock.close()


class TruncatingDNS:
    """Answers every UDP question with its own header and the TC bit (retry over TCP), and over TCP drips the
    answer one byte every DRIP seconds, on the same port."""

    def __init__(self) -> None:
        self.tcp = TCPServer(self._drip_tcp)
        self.port = self.tcp.port
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self) -> None:
        while True:
            try:
                query, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            if len(query) >= 12:
                flags = struct.unpack("!H", query[2:4])[0] | 0x8000 | 0x0200  # QR, TC
                self.udp.sendto(query[:2] + struct.pack("!H", flags) + query[4:], peer)

    @staticmethod
    def _drip_tcp(conn: socket.socket, request: bytes, port: int) -> None:
        answer = struct.pack("!H", 512) + request[2:4] + b"\x81\x80" + b"\0" * 506
        _forever(conn, b"", lambda i: answer[i:i + 1])

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


def run_timed(command: list[str], timeout: float = 120) -> dict[str, object]:
    """Run `command`; when its first output byte came (the report) and when it exited, from its start."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: dict[str, object] = {}

    def read_stdout() -> None:
        assert process.stdout is not None
        first = process.stdout.read(1)
        seen["report_seconds"] = time.monotonic() - started
        seen["stdout"] = (first + process.stdout.read()).decode("utf-8", "replace")

    def read_stderr() -> None:
        assert process.stderr is not None
        seen["stderr"] = process.stderr.read().decode("utf-8", "replace")

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    seen["returncode"] = process.wait(timeout)
    seen["seconds"] = time.monotonic() - started
    for reader in readers:
        reader.join()
    return seen


def main(argv: list[str]) -> int:
    """In a fresh namespace: loopback up, the hostile servers, then run argv and report how long it took."""
    resolv = argv[0]
    command = argv[1:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)  # private mount namespace
    dns = SilentUDP(53)
    http = TCPServer(by_path, 8080)
    outcome = run_timed(command)
    print(json.dumps({**outcome, "dns_questions": dns.received}))
    http.close()
    dns.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
