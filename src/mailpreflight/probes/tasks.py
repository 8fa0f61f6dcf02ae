"""Which probe answers a dependency, for `check` and for guard's diagnosis alike."""

from __future__ import annotations

from mailpreflight.model import Dependency, DepKind
from mailpreflight.probes import dns, http, net
from mailpreflight.probes.runner import Task


def probe_task(dep: Dependency, resolver: dns.ResolverConfig, timeout: float) -> Task:
    """DNS: ask the resolver's servers for the record ("TXT name"); HTTP(S): fetch the URL; TCP: connect; UDP: one
    datagram (an empty one to Pyzor's port 24441, a NUL byte elsewhere)."""
    if dep.kind is DepKind.DNS:
        rdtype, _, name = dep.target.partition(" ")
        return lambda: dns.query(name, rdtype, resolver, timeout)
    if dep.kind in (DepKind.HTTP, DepKind.HTTPS):
        return lambda: http.fetch(dep.target, timeout)[0]
    if dep.kind is DepKind.TCP:
        return lambda: net.tcp(dep.target, timeout)
    payload = None if "24441" in dep.target else b"\0"
    return lambda: net.udp(dep.target, timeout, payload)
