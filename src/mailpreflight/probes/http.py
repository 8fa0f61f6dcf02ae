"""HTTP(S) probes with requests: HEAD (GET when HEAD is refused), at most a few KiB read, TLS verified,
redirects followed and reported, proxies only as the unit's environment sets them (never ours)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import requests

from mailpreflight.model import DepKind, ProbeResult, ProbeStatus
from mailpreflight.probes.errors import classify_oserror

MAX_REDIRECTS = 5
PROBE_BYTES = 4096


def _session(proxies: Mapping[str, str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # our own environment is not the unit's
    session.max_redirects = MAX_REDIRECTS
    session.proxies = dict(proxies)
    session.headers["User-Agent"] = "mailpreflight-probe"
    return session


def fetch(url: str, timeout: float, proxies: Mapping[str, str] | None = None, method: str = "HEAD",
          max_bytes: int = PROBE_BYTES) -> tuple[ProbeResult, bytes | None]:
    """Probe (or, with method GET, fetch at most max_bytes of) one URL. Never raises."""
    kind = DepKind.HTTPS if url.lower().startswith("https:") else DepKind.HTTP
    started = time.monotonic()

    def result(error: str | None, detail: str, answers: tuple[str, ...] = ()) -> ProbeResult:
        status = ProbeStatus.OK if error is None else ProbeStatus.FAIL
        return ProbeResult(kind, url, status, error, detail, time.monotonic() - started, answers)

    session = _session(proxies or {})
    try:
        response = session.request(method, url, timeout=(timeout, timeout), stream=True, allow_redirects=True)
        if method == "HEAD" and response.status_code in (405, 501):
            response.close()
            response = session.get(url, timeout=(timeout, timeout), stream=True, allow_redirects=True)
        with response:
            body = b""
            if method != "HEAD":
                for chunk in response.iter_content(8192):
                    body += chunk
                    if len(body) > max_bytes:
                        return result("too-large", f"more than {max_bytes} bytes", (response.url,)), None
            chain = " -> ".join([r.url for r in response.history] + [response.url])
            detail = f"HTTP {response.status_code}" + (f" via redirects {chain}" if response.history else "")
            if response.status_code >= 400:
                return result("http-status", detail, (response.url, str(response.status_code))), None
            return result(None, detail, (response.url, str(response.status_code))), body
    except requests.exceptions.TooManyRedirects:
        return result("redirect-loop", f"more than {MAX_REDIRECTS} redirects"), None
    except requests.exceptions.SSLError as exc:
        return result("tls", _short(exc)), None
    except requests.exceptions.ConnectTimeout:
        return result("connect-timeout", f"no connection within {timeout:.1f} s"), None
    except requests.exceptions.ReadTimeout:
        return result("read-timeout", f"connected, no answer within {timeout:.1f} s"), None
    except requests.exceptions.ConnectionError as exc:
        text = _short(exc)
        if "NameResolutionError" in repr(exc) or "Name or service not known" in text or "getaddrinfo" in text:
            return result("name-not-resolved", text), None
        kind_of_error = classify_oserror(exc)
        if kind_of_error == "connect-timeout":
            return result("connect-timeout", text), None
        return result(kind_of_error if kind_of_error != "error" else "error", text), None
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        return result("error", _short(exc)), None
    finally:
        session.close()


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
