"""TCP connect and UDP request/response probes."""

from __future__ import annotations

import socket
import time

from mailpreflight.model import DepKind, ProbeError, ProbeResult, ProbeStatus
from mailpreflight.probes.budget import Budget
from mailpreflight.probes.errors import classify_oserror


def split_hostport(target: str) -> tuple[str, int] | None:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _addresses(host: str, port: int, kind: int) -> list[tuple[int, tuple[str, int]]] | str:
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        return f"name-not-resolved: {exc.strerror}"
    except (OSError, UnicodeError) as exc:
        return f"error: {exc}"
    return [(int(family), (str(address[0]), int(address[1]))) for family, _, _, _, address in infos]


def _resolve(kind: DepKind, target: str, socktype: int,
             budget: Budget) -> list[tuple[int, tuple[str, int]]] | ProbeResult:
    """The addresses of host:port, or the failed result to return: a probe's first stage, on its budget."""
    budget.note(f"resolving {target}")
    parsed = split_hostport(target)
    if parsed is None:
        return ProbeResult(kind, target, ProbeStatus.FAIL, ProbeError.ERROR, "not host:port", 0.0)
    found = _addresses(*parsed, socktype)
    if isinstance(found, str):
        error, _, detail = found.partition(": ")
        return ProbeResult(kind, target, ProbeStatus.FAIL, ProbeError(error), detail,
                           time.monotonic() - budget.started)
    return found


def tcp(target: str, timeout: float) -> ProbeResult:
    """Connect to host:port; `timeout` is the total over every address the name has."""
    budget = Budget(timeout)
    started = budget.started
    found = _resolve(DepKind.TCP, target, socket.SOCK_STREAM, budget)
    if isinstance(found, ProbeResult):
        return found
    error, detail = "error", "no address"
    for family, address in found:
        if budget.expired:
            error, detail = "connect-timeout", f"{detail}; {budget.gave_up()}"
            break
        budget.note(f"connecting to {address[0]}")
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(budget.socket_timeout())
            try:
                sock.connect(address)
            except TimeoutError:
                error, detail = "connect-timeout", f"{address[0]}: no connection within {timeout:.1f} s"
                continue
            except OSError as exc:
                error, detail = classify_oserror(exc), f"{address[0]}: {exc.strerror or exc}"
                continue
            return ProbeResult(DepKind.TCP, target, ProbeStatus.OK, None, f"connected to {address[0]}",
                               time.monotonic() - started, (address[0],))
    return ProbeResult(DepKind.TCP, target, ProbeStatus.FAIL, ProbeError(error), detail, time.monotonic() - started)


def pyzor_ping(thread: int) -> bytes:
    """A Pyzor `ping` request (its servers answer even an unsigned one with a status line)."""
    return (f"Op: ping\nThread: {thread}\nPV: 2.1\nUser: anonymous\nTime: {int(time.time())}\n\n").encode()


def udp(target: str, timeout: float, payload: bytes | None = None) -> ProbeResult:
    """Send one datagram and wait for any answer, `timeout` seconds in all. No answer cannot tell a drop from a
    silent server."""
    budget = Budget(timeout)
    started = budget.started
    found = _resolve(DepKind.UDP, target, socket.SOCK_DGRAM, budget)
    if isinstance(found, ProbeResult):
        return found
    family, address = found[0]
    budget.note(f"waiting for a reply from {address[0]}")
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(budget.socket_timeout())  # what the name's lookup left
        try:
            sock.connect(address)
            sock.send(payload or pyzor_ping(int(started) % 65536))
            answer = sock.recv(2048)
        except TimeoutError:
            return ProbeResult(DepKind.UDP, target, ProbeStatus.FAIL, ProbeError.UDP_NO_REPLY,
                               f"{address[0]}: no reply within {timeout:.1f} s", time.monotonic() - started)
        except OSError as exc:
            return ProbeResult(DepKind.UDP, target, ProbeStatus.FAIL, ProbeError(classify_oserror(exc)),
                               f"{address[0]}: {exc.strerror or exc}", time.monotonic() - started)
    first = answer.split(b"\n", 1)[0].decode("utf-8", "replace")
    return ProbeResult(DepKind.UDP, target, ProbeStatus.OK, None, f"{address[0]} replied: {first[:80]}",
                       time.monotonic() - started, (address[0],))
