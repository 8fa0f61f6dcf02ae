"""Map socket-level failures to the error classes a mail administrator can act on."""

from __future__ import annotations

import errno

_BY_ERRNO = {
    errno.EPERM: "blocked-locally",  # a local firewall (nft/iptables REJECT/DROP in OUTPUT) refuses the send
    errno.EACCES: "blocked-locally",
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "refused",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.ETIMEDOUT: "connect-timeout",
}


def classify_oserror(exc: BaseException) -> str:  # a ProbeError value (model/check.py)
    """Walk an exception chain to the first OSError with a known errno."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _BY_ERRNO:
            return _BY_ERRNO[current.errno]
        current = current.__cause__ or current.__context__ or _reason(current)
    return "error"


def _reason(exc: BaseException) -> BaseException | None:
    """urllib3 keeps the underlying error in `.reason`; requests in `args[0]`."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    return None
