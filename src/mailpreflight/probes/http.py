"""HTTP(S) probes with requests: HEAD (GET when HEAD is refused), at most a few KiB read, TLS verified,
redirects followed and reported, proxies only as the unit's environment sets them (never ours).

`timeout` is the total for the whole probe: connect, status line and headers, body, every redirect hop (see
probes/budget.py). requests' own timeouts are per socket operation; here every connection the probe opens is
watched, and shut down at the deadline, so a server that drips one header line or one body byte every 0.8 s
ends the probe on time, as a `read-timeout` saying how long and what had arrived."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.poolmanager import PoolManager

from mailpreflight.model import DepKind, ProbeError, ProbeResult, ProbeStatus
from mailpreflight.probes.budget import Budget
from mailpreflight.probes.errors import classify_oserror

MAX_REDIRECTS = 5
PROBE_BYTES = 4096
CONNECTED = "connected to "  # how a stage after the TCP connect begins

_budget: ContextVar[Budget | None] = ContextVar("mailpreflight_http_budget", default=None)


def _watched(conn: HTTPConnection, new_conn: Any) -> socket.socket:
    """Open the connection's socket within what is left of the probe's budget, and watch it."""
    budget = _budget.get()
    if budget is None:
        sock: socket.socket = new_conn()
        return sock
    if budget.expired:
        raise ConnectTimeoutError(conn, f"no time left to connect to {conn.host}")
    budget.note(f"resolving and connecting to {conn.host}:{conn.port}")
    conn.timeout = min(conn.timeout, budget.socket_timeout()) if isinstance(conn.timeout, float | int) \
        else budget.socket_timeout()
    sock = new_conn()
    budget.watch_socket(sock)
    try:
        peer = sock.getpeername()[0]
    except OSError:
        peer = conn.host
    waiting = "the TLS handshake" if isinstance(conn, HTTPSConnection) else "the status line and headers"
    budget.note(f"{CONNECTED}{peer}:{conn.port}; {waiting} did not complete")
    return sock


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(self, super()._new_conn)


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(self, super()._new_conn)

    def connect(self) -> None:
        super().connect()
        budget = _budget.get()
        if budget is not None:
            budget.note(f"{CONNECTED}{self.host}:{self.port} (TLS); the status line and headers did not complete")


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter whose connections (direct and through HTTP proxies) are watched by the budget."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are PySocks' own: the runner's bound applies
            manager.pool_classes_by_scheme = _POOLS
        return manager


def _session(proxies: Mapping[str, str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # our own environment is not the unit's
    session.max_redirects = MAX_REDIRECTS
    session.proxies = dict(proxies)
    session.headers["User-Agent"] = "mailpreflight-probe"
    adapter = _Adapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(url: str, timeout: float, proxies: Mapping[str, str] | None = None, method: str = "HEAD",
          max_bytes: int = PROBE_BYTES) -> tuple[ProbeResult, bytes | None]:
    """Probe (or, with method GET, fetch at most max_bytes of) one URL, within `timeout` seconds in all.
    Never raises."""
    kind = DepKind.HTTPS if url.lower().startswith("https:") else DepKind.HTTP
    started = time.monotonic()
    budget = Budget(timeout)

    def result(error: str | None, detail: str, answers: tuple[str, ...] = ()) -> ProbeResult:
        status = ProbeStatus.OK if error is None else ProbeStatus.FAIL
        return ProbeResult(kind, url, status, ProbeError(error) if error else None, detail,
                           time.monotonic() - started, answers)

    hops: list[str] = []

    def out_of_time() -> ProbeResult:
        error = "read-timeout" if budget.stage.startswith(CONNECTED) or budget.stage.startswith("HTTP ") \
            else "connect-timeout"
        redirects = f" (after {len(hops)} redirect(s): {' -> '.join(hops)})" if hops else ""
        return result(error, budget.gave_up() + redirects)

    def hop(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.is_redirect:
            hops.append(f"HTTP {response.status_code} {response.url}")
            budget.note(f"HTTP {response.status_code} from {response.url}, following the redirect")

    session = _session(proxies or {})
    token = _budget.set(budget)
    try:
        with budget.watchdog():
            budget.note(f"starting {method} {url}")
            response = session.request(method, url, timeout=budget.socket_timeout(), stream=True,
                                       allow_redirects=True, hooks={"response": hop})
            if method == "HEAD" and response.status_code in (405, 501) and not budget.expired:
                response.close()
                response = session.get(url, timeout=budget.socket_timeout(), stream=True, allow_redirects=True,
                                       hooks={"response": hop})
            with response:
                if budget.expired:  # a connection shut down mid-headers can look like a short, complete answer
                    return out_of_time(), None
                status = f"HTTP {response.status_code} from {response.url}"
                budget.note(f"{status}; the body did not complete (0 bytes read)")
                body = b""
                if method != "HEAD":
                    for chunk in response.iter_content(1024):
                        body += chunk
                        budget.note(f"{status}; the body did not complete ({len(body)} bytes read)")
                        if len(body) > max_bytes:
                            return result("too-large", f"more than {max_bytes} bytes", (response.url,)), None
                        if budget.expired:
                            break
                if budget.expired:
                    return out_of_time(), None
                chain = " -> ".join([r.url for r in response.history] + [response.url])
                detail = f"HTTP {response.status_code}" + (f" via redirects {chain}" if response.history else "")
                if response.status_code >= 400:
                    return result("http-status", detail, (response.url, str(response.status_code))), None
                return result(None, detail, (response.url, str(response.status_code))), body
    except (requests.exceptions.RequestException, http.client.HTTPException, OSError, ValueError) as exc:
        if budget.expired:
            return out_of_time(), None
        return result(*_classify(exc, timeout)), None
    finally:
        _budget.reset(token)
        session.close()


def _classify(exc: BaseException, timeout: float) -> tuple[str, str]:
    """(error class, detail) of a failed request that did not run out of time."""
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "redirect-loop", f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls", _short(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect-timeout", f"no connection within {timeout:.1f} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read-timeout", f"connected, no answer within {timeout:.1f} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = _short(exc)
        if "NameResolutionError" in repr(exc) or "Name or service not known" in text or "getaddrinfo" in text:
            return "name-not-resolved", text
        return classify_oserror(exc), text
    return "error", _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
