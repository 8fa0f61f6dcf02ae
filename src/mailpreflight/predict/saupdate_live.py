"""sa-update's real chain, probed: revision TXT -> mirrors TXT -> MIRRORED.BY -> each mirror's files for that
revision -> with GPG on, whether the mirror's `.asc` is signed by a key sa-update trusts (deps/satrust.py);
then the exit status and run time sa-update itself will have, modelled on its own behaviour (see
deps/saupdate.py for the source citations).

At fleet scale (docs/design.md, "Performance") the chains of every unit advance together: `pending()` walks a
chain over the answers already in, and returns what its next step needs; `check` runs what all chains need in
one round, and again, until no chain needs anything. A round costs one --timeout at most, there are as many
rounds as steps in the chain (every mirror of a channel is one step), not as many as units or mirrors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from mailpreflight.deps.openpgp import MAX_INPUT as ASC_MAX_BYTES
from mailpreflight.deps.openpgp import read_signatures
from mailpreflight.deps.satrust import GpgOutcome, Keyring, SaTrust, judge
from mailpreflight.deps.saupdate import (
    DOWNLOAD_WORST,
    LOCAL_DNS_REFUSAL_SECONDS,
    MIRROR_RETRY_SLEEP,
    ChannelState,
    Mirror,
    SaUpdatePlan,
    read_mirrored_by,
)
from mailpreflight.model import CommandVerdict, DepKind, FoundCommand, Prediction, ProbeResult
from mailpreflight.predict.keyring import list_keyring
from mailpreflight.probes import dns as dnsprobe
from mailpreflight.probes import http as httpprobe
from mailpreflight.probes.runner import ProbeRunner

MIRRORED_BY_MAX_BYTES = 64 * 1024
FAST = 0.2  # seconds a refused/404/TLS failure costs
DIES_S = 2.0  # sa-update's Perl start-up and die (predict/startup.py PERL_START_S)
Tasks = dict[tuple[DepKind, str], Callable[[], ProbeResult]]


class _Pending(Exception):
    """The chain needs answers not in yet (collected by the probe walking it)."""


def chain_key(plan: SaUpdatePlan, trust: SaTrust | None) -> Hashable:
    """Everything the chain and its verdict depend on: two sa-update commands with the same key (a fleet of units
    running the same sa-update on one tree) share one SaUpdateProbe, walked and judged once."""
    return (plan.args.install, plan.args.gpg, plan.downloader, plan.resolver.retrans, plan.resolver.retry,
            tuple(sorted(plan.proxies.items())), trust if plan.args.gpg else None,
            tuple((c.channel, c.version_query, c.mirrors_query, c.mirrors, c.needs_mirror_refresh,
                   c.mirrored_by_age is None, c.installed_revision) for c in plan.channels))


@dataclass(frozen=True)
class ChannelOutcome:
    channel: str
    result: str  # "updated", "nothing-new", "failed"
    seconds: float
    reason: str
    dead_mirrors: int = 0
    alternative: str | None = None  # another result it may have: which mirror it picks decides, or nobody knows


class SaUpdateProbe:
    """Evaluates one sa-update command against the live network through a shared ProbeRunner."""

    def __init__(self, plan: SaUpdatePlan, runner: ProbeRunner, resolver: dnsprobe.ResolverConfig,
                 timeout: float, trust: SaTrust | None = None, bodies: dict[str, bytes | None] | None = None) -> None:
        """`trust`: what sa-update's GPG check accepts (None: GPG is off, or the root has no sa-update to read
        it from — then nothing is said about the signatures). `bodies`: the MIRRORED.BY and .asc files fetched,
        shared by every probe of one check (as the runner's results are), so that a chain meeting a file another
        chain fetched reads the same file."""
        self.plan = plan
        self.runner = runner
        self.resolver = resolver
        self.timeout = timeout
        self.trust = trust if plan.args.gpg else None
        self.used: list[str] = []
        self.gpg_warnings: list[tuple[str, str]] = []  # (fingerprint, why): accepted, but expired or revoked
        self.bodies: dict[str, bytes | None] = {} if bodies is None else bodies
        self._signatures = self.bodies  # .asc URL -> its body
        self._keyring: Keyring | None = None
        self._wanted: Tasks | None = None  # while pending() walks the chain: what it needs next
        self._verdict: CommandVerdict | None = None  # once judged: every command sharing the probe gets it

    # -- probes -----------------------------------------------------------------------------------
    def _run(self, tasks: Tasks) -> dict[tuple[str, str], ProbeResult]:
        """The answers to `tasks`: from the runner, probing what is not in yet — or, while pending() walks the
        chain, the tasks missing, collected (the chain stops there for this round)."""
        if self._wanted is not None:
            missing = {key: task for key, task in tasks.items() if (key[0].value, key[1]) not in self.runner.results}
            if missing:
                self._wanted.update(missing)
                raise _Pending
            return self.runner.results
        return self.runner.run(tasks)

    def _dns(self, name: str, rdtype: str) -> ProbeResult:
        target = f"{rdtype} {name}"
        self.used.append(f"dns {target}")
        return self._run({(DepKind.DNS, target): _dns_task(name, rdtype, self.resolver, self.timeout)})[("dns", target)]

    def _http(self, url: str, method: str = "HEAD") -> tuple[ProbeResult, bytes | None]:
        kind = DepKind.HTTPS if url.lower().startswith("https:") else DepKind.HTTP
        self.used.append(f"{kind.value} {url}")
        proxy = self.plan.proxies.get("https_proxy" if kind is DepKind.HTTPS else "http_proxy")
        proxies = {kind.value: proxy} if proxy else {}
        bodies = self.bodies

        def task() -> ProbeResult:
            result, body = httpprobe.fetch(url, self.timeout, proxies, method, MIRRORED_BY_MAX_BYTES)
            bodies[url] = body
            return result

        result = self._run({(kind, url): task})[(kind.value, url)]
        return result, bodies.get(url)

    def pending(self) -> Tasks:
        """The probes this chain needs next, given the answers in so far; empty once it can be evaluated."""
        if self.plan.args.install or (self.trust is not None and self.trust.fatal is not None):
            return {}
        self._wanted = {}
        warnings = list(self.gpg_warnings)
        try:
            for channel in self.plan.channels:
                try:
                    self._channel(channel)
                except _Pending:
                    continue  # channels are independent: each asks for its own next step
            return self._wanted
        finally:
            self._wanted = None
            self.used = []
            self.gpg_warnings = warnings  # the walk judged nothing yet

    def prefetch(self) -> dict[tuple[DepKind, str], Callable[[], ProbeResult]]:
        """What does not depend on an earlier answer: the caller runs it with every other probe at once (one
        timeout for all)."""
        tasks: dict[tuple[DepKind, str], Callable[[], ProbeResult]] = {}
        for channel in self.plan.channels:
            for name in (channel.version_query, channel.mirrors_query):
                tasks[(DepKind.DNS, f"TXT {name}")] = _dns_task(name, "TXT", self.resolver, self.timeout)
            for mirror in channel.mirrors:
                host = _host(mirror.url)
                if not self._proxied(mirror.url) and not _is_ip(host):
                    for rdtype in ("A", "AAAA"):
                        tasks[(DepKind.DNS, f"{rdtype} {host}")] = _dns_task(host, rdtype, self.resolver, self.timeout)
        return tasks

    # -- the chain --------------------------------------------------------------------------------
    def evaluate(self, command: FoundCommand) -> CommandVerdict:
        """The verdict for `command` (judged once per probe: the commands sharing it share its reason and
        probes, which keeps a fleet's report small)."""
        if self._verdict is None:
            self._verdict = self._judge(command)
        return replace(self._verdict, command=command)

    def _judge(self, command: FoundCommand) -> CommandVerdict:
        if self.trust is not None and self.trust.fatal is not None:
            status, why = self.trust.fatal
            return CommandVerdict(command, Prediction.FAIL, status, DIES_S, why)
        if self.plan.args.install:
            return CommandVerdict(command, Prediction.OK, "0|1", 0.0, "--install: no network used")
        outcomes = [self._channel(channel) for channel in self.plan.channels]
        seconds = sum(o.seconds for o in outcomes)
        failed = [o for o in outcomes if o.result == "failed"]
        possible = [(o.result, o.alternative) if o.alternative else (o.result,) for o in outcomes]
        exit_class = "|".join(sorted({_exit_class(results) for results in itertools.product(*possible)}))
        dead = sum(o.dead_mirrors for o in outcomes)
        predicted = Prediction.FAIL if failed else Prediction.DEGRADED if dead else Prediction.OK
        reason = "; ".join(f"{o.channel}: {o.reason}" for o in outcomes)
        used = tuple(dict.fromkeys(self.used))
        return CommandVerdict(command, predicted, exit_class, round(seconds, 1), reason, used)

    def _channel(self, channel: ChannelState) -> ChannelOutcome:
        version = self._dns(channel.version_query, "TXT")
        dns_cost = self._dns_cost(version)
        if not version.ok:
            # l.555-567: without a revision, TXT mirrors.<channel> decides: present = "no update" (exit 1,
            # also when the revision query merely timed out), absent = the channel fails.
            mirrors_txt = self._dns(channel.mirrors_query, "TXT")
            seconds = dns_cost + self._dns_cost(mirrors_txt)
            if mirrors_txt.ok:
                return ChannelOutcome(channel.channel, "nothing-new", seconds,
                                      f"no revision for this version (TXT {channel.version_query}: {version.error}), "
                                      f"mirrors.{channel.channel} exists: exit 1 (no update)")
            return ChannelOutcome(channel.channel, "failed", seconds,
                                  f"neither TXT {channel.version_query} nor TXT {channel.mirrors_query} answer "
                                  f"({version.error}, {mirrors_txt.error})"
                                  + ("; sa-update waits out Net::DNS's retries" if "timeout" in str(version.error)
                                     else ""))
        match = re.match(r"\d+", version.answers[0] if version.answers else "")
        if match is None:
            return ChannelOutcome(channel.channel, "failed", dns_cost, f"TXT answer {version.answers} has no revision")
        revision = int(match.group(0))
        if channel.installed_revision is not None and channel.installed_revision >= revision:
            return ChannelOutcome(channel.channel, "nothing-new", dns_cost,
                                  f"revision {revision} already installed: exit 1 (no update)")
        mirrors, seconds, note = self._mirror_list(channel)
        seconds += dns_cost
        if not mirrors:
            return ChannelOutcome(channel.channel, "failed", seconds, note)
        return self._mirrors(channel, mirrors, revision, seconds, note)

    def _mirror_list(self, channel: ChannelState) -> tuple[list[Mirror], float, str]:
        if not channel.needs_mirror_refresh:
            return list(channel.mirrors), 0.0, "cached MIRRORED.BY"
        listing = self._dns(channel.mirrors_query, "TXT")
        cost = self._dns_cost(listing)
        for url in listing.answers if listing.ok else ():
            result, body = self._http(url.strip(), method="GET")
            cost += self._http_cost(result)
            fresh = read_mirrored_by(body.decode("utf-8", "replace")) if body else []
            if fresh:
                return fresh, cost, f"MIRRORED.BY fetched from {url}"
        if channel.mirrored_by_age is not None and channel.mirrors:
            return list(channel.mirrors), cost, "MIRRORED.BY could not be refreshed: sa-update goes on with the old one"
        return [], cost, "no mirror list: MIRRORED.BY neither cached nor fetchable (channel fails)"

    def _mirrors(self, channel: ChannelState, mirrors: list[Mirror], revision: int, seconds: float,
                 note: str) -> ChannelOutcome:
        suffixes = (".tar.gz", ".tar.gz.asc") if self.plan.args.gpg else (".tar.gz", ".tar.gz.sha512")
        files = {m.url: [f"{m.url}/{revision}{s}" for s in suffixes] for m in mirrors}
        batch: Tasks = {(_kind(u), u): self._asc_task(u) if self.trust and u.endswith(".asc")  # every mirror at once
                        else _http_task(u, self.timeout, self._proxies(u)) for urls in files.values() for u in urls}
        for mirror in mirrors:  # and their addresses (those of a freshly fetched list were not asked before)
            host = _host(mirror.url)
            if not self._proxied(mirror.url) and not _is_ip(host):
                batch.update({(DepKind.DNS, f"{t} {host}"): _dns_task(host, t, self.resolver, self.timeout)
                              for t in ("A", "AAAA")})
        self._run(batch)
        good: list[Mirror] = []
        dead_costs, problems = [], []
        for mirror in mirrors:
            cost, problem = self._mirror_cost(mirror, files[mirror.url])
            if problem is None:
                good.append(mirror)
            else:
                dead_costs.append(cost)
                problems.append(f"{mirror.url}: {problem}")
        pauses = MIRROR_RETRY_SLEEP * (len(dead_costs) if good else max(len(dead_costs) - 1, 0))
        seconds += sum(dead_costs) + pauses
        detail = f"{note}; {len(good)} of {len(mirrors)} mirrors serve revision {revision}"
        if problems:
            detail += " (" + "; ".join(problems) + ")"
        if not good:
            return ChannelOutcome(channel.channel, "failed", seconds, detail, len(dead_costs))
        if self.trust is None:
            return ChannelOutcome(channel.channel, "updated", seconds, detail, len(dead_costs))
        return self._signed(channel, good, files, seconds, detail, len(dead_costs))

    def _asc_task(self, url: str) -> Callable[[], ProbeResult]:
        """GET the (small) signature: its signer decides sa-update's GPG check."""
        def task() -> ProbeResult:
            result, body = httpprobe.fetch(url, self.timeout, self._proxies(url), "GET", ASC_MAX_BYTES)
            self._signatures[url] = body
            return result
        return task

    def _signed(self, channel: ChannelState, good: list[Mirror], files: dict[str, list[str]], seconds: float,
                detail: str, dead: int) -> ChannelOutcome:
        """sa-update verifies the first mirror that serves both files and stops there: a signature it does not
        accept fails the channel (l.993-1022), it does not try the next mirror."""
        assert self.trust is not None
        verdicts: dict[str, GpgOutcome] = {}
        for mirror in good:
            asc = files[mirror.url][-1]
            body = self._signatures.get(asc)
            if body is None:
                verdicts[mirror.url] = GpgOutcome("unknown", f"{asc.rsplit('/', 1)[-1]} was not read (more than "
                                                             f"{ASC_MAX_BYTES} bytes, or not fetched)")
                continue
            if self._keyring is None:
                self._keyring = list_keyring(self.trust)
            verdicts[mirror.url] = judge(read_signatures(body), self.trust, self._keyring, asc)
        self.gpg_warnings += sorted({(v.signer or "", v.warning) for v in verdicts.values() if v.warning})
        results = {v.result for v in verdicts.values()}
        reasons = "; ".join(dict.fromkeys(v.reason for v in verdicts.values()))
        if results == {"trusted"}:
            return ChannelOutcome(channel.channel, "updated", seconds, f"{detail}; GPG: {reasons}", dead)
        if results == {"untrusted"}:
            return ChannelOutcome(channel.channel, "failed", seconds, f"{detail}; GPG: {reasons}", dead)
        if "trusted" in results and "untrusted" in results:
            bad = ", ".join(url for url, v in verdicts.items() if v.result == "untrusted")
            return ChannelOutcome(channel.channel, "failed", seconds, f"{detail}; GPG: the mirrors do not agree: "
                                  f"sa-update fails the channel whenever it picks {bad} (mirrors are picked at "
                                  f"random, by weight): {reasons}", dead, alternative="updated")
        return ChannelOutcome(channel.channel, "updated", seconds, f"{detail}; GPG: not known whether sa-update "
                              f"accepts the signature: {reasons}", dead, alternative="failed")

    def _mirror_cost(self, mirror: Mirror, urls: list[str]) -> tuple[float, str | None]:
        """How long sa-update spends on this mirror and why it fails there (None: it works)."""
        host = _host(mirror.url)
        if not self._proxied(mirror.url) and not _is_ip(host):
            lookups = [self._dns(host, rdtype) for rdtype in ("A", "AAAA")]
            if not any(r.ok for r in lookups):
                return sum(self._dns_cost(r) for r in lookups), f"no address for {host} ({lookups[0].error})"
        cost = 0.0
        for url in urls:
            result, _ = self._http(url)
            cost += self._http_cost(result)
            if not result.ok and not (result.error == "too-large" and url.endswith(".asc")):
                return cost, f"{url.rsplit('/', 1)[-1]}: {result.error} ({result.detail})"
            if self._signatures.get(url, None) == b"":  # l.815: an empty file is no file: the next mirror
                return cost, f"{url.rsplit('/', 1)[-1]}: empty"
        return cost, None

    # -- time model -------------------------------------------------------------------------------
    def _dns_cost(self, result: ProbeResult) -> float:
        """What the same query costs Net::DNS (sa-update's resolver), not what it cost our probe."""
        if result.error in ("dns-timeout", "deadline"):
            return self.plan.resolver.query_worst_seconds
        if result.error == "blocked-locally":
            return LOCAL_DNS_REFUSAL_SECONDS
        return result.elapsed_s

    def _http_cost(self, result: ProbeResult) -> float:
        if result.error in ("connect-timeout", "read-timeout", "deadline"):
            return DOWNLOAD_WORST[self.plan.downloader]
        return result.elapsed_s if result.ok else max(result.elapsed_s, FAST)

    def _proxied(self, url: str) -> bool:
        return bool(self._proxies(url))

    def _proxies(self, url: str) -> dict[str, str]:
        kind = _kind(url)
        proxy = self.plan.proxies.get("https_proxy" if kind is DepKind.HTTPS else "http_proxy")
        return {kind.value: proxy} if proxy else {}


def _exit_class(results: tuple[str, ...]) -> str:
    """sa-update.raw l.1257-1271: 0 updated, 1 nothing new, 3 some channels failed, 4 all failed."""
    if "failed" in results:
        return "3" if "updated" in results else "4"
    return "0" if "updated" in results else "1"


def _kind(url: str) -> DepKind:
    return DepKind.HTTPS if url.lower().startswith("https:") else DepKind.HTTP


def _host(url: str) -> str:
    netloc = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.split(":", 1)[0]


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+", host)) or ":" in host


def _dns_task(name: str, rdtype: str, resolver: dnsprobe.ResolverConfig, timeout: float) -> Callable[[], ProbeResult]:
    return lambda: dnsprobe.query(name, rdtype, resolver, timeout)


def _http_task(url: str, timeout: float, proxies: dict[str, str]) -> Callable[[], ProbeResult]:
    return lambda: httpprobe.fetch(url, timeout, proxies)[0]
