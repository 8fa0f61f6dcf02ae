"""DNS probes with dnspython: the question is asked of each configured nameserver in turn, over UDP with a
TCP retry when the answer is truncated, and every server's outcome is kept as evidence."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from mailpreflight.model import DepKind, ProbeError, ProbeResult, ProbeStatus
from mailpreflight.probes.budget import Budget
from mailpreflight.probes.errors import classify_oserror
from mailpreflight.probes.resolvconf import ResolvConf

MIN_SHARE = 0.5  # seconds: the least one nameserver is given while time is left


@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[str, ...]
    source: str  # the resolv.conf it came from
    port: int = 53  # resolv.conf cannot say otherwise; tests run servers on loopback ports


def resolver_for(conf: ResolvConf) -> ResolverConfig:
    """Ask the servers resolv.conf gives glibc (probes.resolvconf reads it)."""
    return ResolverConfig(conf.nameservers, conf.source)


def _txt(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return " ".join(s.decode("utf-8", "replace") for s in strings)
    return str(rdata)


def query(name: str, rdtype: str, resolver: ResolverConfig, timeout: float) -> ProbeResult:
    """Ask for `rdtype` records of `name`; ok with the answers, or the error class of the last server.

    `timeout` is the total: the servers share it (each gets at least MIN_SHARE while time is left), and a
    server's TCP retry after a truncated answer comes out of that server's share."""
    target = f"{rdtype} {name}"
    budget = Budget(timeout)
    tried: list[str] = []
    error = "error"
    try:
        message = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
    except (dns.exception.DNSException, ValueError) as exc:
        return ProbeResult(DepKind.DNS, target, ProbeStatus.FAIL, ProbeError.ERROR, f"bad query: {exc}", 0.0)
    servers = resolver.nameservers
    for index, server in enumerate(servers):
        left = budget.remaining()
        if left <= 0:
            skipped = len(servers) - index
            tried.append(f"{skipped} more server(s) not asked: the --timeout of {timeout:g} s was used up")
            break
        share = min(left, max(left / (len(servers) - index), MIN_SHARE))
        budget.note(f"asking {server}:{resolver.port} (up to {share:.1f} s)")
        outcome, answers, detail = _ask(message, server, rdtype, share, resolver.port)
        tried.append(f"{server}: {detail}")
        if outcome == "ok":
            return ProbeResult(DepKind.DNS, target, ProbeStatus.OK, None, "; ".join(tried), budget.elapsed(),
                               tuple(answers))
        error = outcome
        if outcome in ("nxdomain", "no-answer"):
            break  # an authoritative "no": other servers give the same answer
    return ProbeResult(DepKind.DNS, target, ProbeStatus.FAIL, ProbeError(error), "; ".join(tried), budget.elapsed())


def _ask(message: dns.message.Message, server: str, rdtype: str, timeout: float,
         port: int) -> tuple[str, list[str], str]:
    """One server, `timeout` seconds in all (dnspython's timeout bounds the whole exchange, not each read)."""
    expires = time.monotonic() + timeout
    try:
        response = dns.query.udp(message, server, port=port, timeout=timeout, ignore_unexpected=True)
        if response.flags & dns.flags.TC:
            left = expires - time.monotonic()
            if left <= 0:
                return "dns-timeout", [], f"truncated answer, no time left for the TCP retry ({timeout:.1f} s)"
            response = dns.query.tcp(message, server, port=port, timeout=left)
    except dns.exception.Timeout:
        return "dns-timeout", [], f"no answer within {timeout:.1f} s"
    except OSError as exc:
        kind = classify_oserror(exc)
        return ("dns-refused" if kind == "refused" else kind), [], f"{exc.strerror or exc}"
    except dns.exception.DNSException as exc:
        return "error", [], f"bad response: {exc}"
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return "nxdomain", [], "NXDOMAIN"
    if rcode == dns.rcode.SERVFAIL:
        return "servfail", [], "SERVFAIL"
    if rcode == dns.rcode.REFUSED:
        return "dns-refused", [], "REFUSED"
    if rcode != dns.rcode.NOERROR:
        return "error", [], dns.rcode.to_text(rcode)
    wanted = dns.rdatatype.from_text(rdtype)
    answers = [_txt(rdata) if wanted == dns.rdatatype.TXT else str(rdata)
               for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset]
    if not answers:
        return "no-answer", [], "no record of that type"
    return "ok", answers, ", ".join(answers)


def resolve_host(host: str, resolver: ResolverConfig, timeout: float) -> Sequence[ProbeResult]:
    """A and AAAA of a host name (what sa-update checks per mirror)."""
    return [query(host, rdtype, resolver, timeout) for rdtype in ("A", "AAAA")]
