"""sa-update: what it asks the network for, and how long it can take when the network is not there.

Every fact cites sa-update.raw of SpamAssassin 4.0.1 (tag spamassassin_release_4_0_1; 3.4.x behaves the
same unless noted), line numbers as in that file:
- default channel updates.spamassassin.org (l.169); --channel repeatable (l.201, 407-409); --channelfile
  replaces the list, one channel a line, `#` comments, lower-cased (l.410-428); invalid names skipped (l.431);
- version 4.000001 -> "4.0.1" (l.258-267), reversed for DNS: TXT `1.0.4.<channel>` (l.268, 549);
  no answer -> TXT `mirrors.<channel>`: present = "no update" (exit 1), absent = channel fails (l.560-567);
  `# UPDATE version N` at the top of `<updatedir>/<nicechannel>.cf` >= revision -> no update (l.507-526, 571);
- updatedir default `<LOCAL_STATE_DIR>/<VERSION>` = /var/lib/spamassassin/4.000001 (l.285-289);
  nicechannel = channel with every run of other than [A-Za-z0-9-] turned into `_` (l.481-484);
- MIRRORED.BY cached at `<updatedir>/<nicechannel>/MIRRORED.BY`, refreshed when missing, empty, older than
  7 days or --refreshmirrors, from the URLs in TXT `mirrors.<channel>` (l.171, 636-708); a failed refresh
  with an old file goes on with it (l.699-702); `#` comments, http(s) only, trailing `/` dropped, weight=1
  by default (l.724-756); --forcemirror replaces the list (l.729);
- per mirror (weighted random order, l.1751-1785): A/AAAA lookup unless proxied or an IP literal
  (l.1789-1808), GET `<rev>.tar.gz`, then `.asc` (GPG, default) or `.sha512`/`.sha256` (--nogpg);
  any failure: sleep 2 s and try the next mirror (l.787-839);
- downloader: --httputil, else the first of curl, wget, fetch in PATH, else LWP (l.1619-1636); curl
  --connect-timeout 30 --max-time 300 (l.1638-1643); wget --tries=3 --dns-timeout=20 --connect-timeout=30
  (l.1644-1648); LWP 60 s timeout, 3 tries (l.1505, 1533);
- exit 0 updated, 1 nothing new, 2 lint failed, 3 some channels failed, 4 all failed (l.1257-1271);
- --install FILE uses no network at all (l.449-455, 539).
DNS goes through Net::DNS::Resolver: /etc/resolv.conf (`options timeout:` -> retrans, `attempts:` ->
retry), RES_* variables; defaults retrans 5 s, retry 4, doubling each round: 5+10+20+40 = 75 s per query
when answers never come; about 5 s when a local firewall refuses the send (../shared/reference/SA-UPDATE.md).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import SYSTEMD_PATH, RuleContext, kept, remembered, unexpanded
from mailpreflight.model import Confidence, Dependency, DepKind, FoundCommand, Role
from mailpreflight.model.fastinit import fast_init
from mailpreflight.probes.resolvconf import DEFAULT_NAMESERVER, read_resolv_conf

DEFAULT_CHANNEL = "updates.spamassassin.org"
MIRRORED_BY_MAX_AGE = 7 * 24 * 3600
MIRROR_RETRY_SLEEP = 2.0
NET_DNS_RETRANS, NET_DNS_RETRY = 5.0, 4
LOCAL_DNS_REFUSAL_SECONDS = 5.0  # measured: a local firewall's EPERM ends a query after about 5 s
PERL_LIB_DIRS = ("/usr/share/perl5", "/usr/lib/perl5/vendor_perl", "/usr/lib/perl5/site_perl",
                 "/usr/share/perl5/vendor_perl", "/usr/lib64/perl5/vendor_perl", "/usr/local/share/perl",
                 "/usr/local/lib/perl5/site_perl", "/usr/lib/x86_64-linux-gnu/perl5", "/usr/local/share/perl5")
# Seconds one download can take against a firewall that drops packets, per downloader.
DOWNLOAD_WORST = {"curl": 30.0, "wget": 3 * 30.0, "fetch": 30.0, "lwp": 3 * 60.0}
_VERSION_LINE = re.compile(r"""\$VERSION\s*=\s*["']?(\d+\.\d+)["']?""")
# sa-update's options (l.182-216): Getopt::Long with bundling, no_auto_abbrev, no_ignore_case: long
# options only as --name (=value or the next word), no abbreviations; single-dash letters are bundles.
_VALUE_OPTIONS = ("channel", "channelfile", "updatedir", "gpgkey", "gpgkeyfile", "gpghomedir", "forcemirror",
                  "httputil", "install", "import", "score-multiplier", "score-limit")
_FLAG_OPTIONS = ("checkonly", "allowplugins", "reallyallowplugins", "refreshmirrors", "gpg", "nogpg", "no-gpg",
                 "usegpg", "verbose", "version", "help", "debug")
_SHORT_FLAGS = frozenset("DVhv46?")


@fast_init
@dataclass(frozen=True)
class SaUpdateArgs:
    """What an sa-update command line asks for."""

    channels: tuple[str, ...] = ()  # from --channel, in order
    channelfile: str | None = None
    updatedir: str | None = None
    gpg: bool = True
    gpg_keys: tuple[str, ...] = ()
    gpgkeyfile: str | None = None
    allowplugins: bool = False
    reallyallowplugins: bool = False
    refreshmirrors: bool = False
    forcemirror: str | None = None
    httputil: str | None = None
    install: str | None = None
    checkonly: bool = False
    unknown: tuple[str, ...] = ()


def parse_args(argv: Sequence[str]) -> SaUpdateArgs:
    """Read an sa-update command line as its Getopt::Long configuration does (l.182-216)."""
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    unknown: list[str] = []
    words = list(argv[1:])
    while words:
        word = words.pop(0)
        if word == "--":
            unknown += words  # sa-update takes no arguments: anything left is a usage error
            break
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            if name in _VALUE_OPTIONS:
                if not equals:
                    value = words.pop(0) if words else ""
                values.setdefault(name, []).append(value)
            elif name in _FLAG_OPTIONS and not equals:
                flags.add(name)
            elif name == "debug":
                continue  # --debug=areas
            else:
                unknown.append(word)
        elif word.startswith("-") and len(word) > 1 and (set(word[1:]) <= _SHORT_FLAGS or word.startswith("-D")):
            continue  # -D[areas], -v, -4/-6: no effect on what is fetched
        else:
            unknown.append(word)
    return SaUpdateArgs(
        channels=tuple(c.lower() for c in values.get("channel", [])),
        channelfile=_last(values, "channelfile"),
        updatedir=_last(values, "updatedir"),
        # l.207, 292-296, 321-335: --nogpg and --checkonly turn GPG off, --gpgkey and --gpgkeyfile back on
        gpg=not ({"nogpg", "no-gpg", "checkonly"} & flags) or bool(values.get("gpgkey") or values.get("gpgkeyfile")),
        gpg_keys=tuple(values.get("gpgkey", [])),
        gpgkeyfile=_last(values, "gpgkeyfile"),
        allowplugins="allowplugins" in flags,
        reallyallowplugins="reallyallowplugins" in flags,
        refreshmirrors="refreshmirrors" in flags,
        forcemirror=_last(values, "forcemirror"),
        httputil=_last(values, "httputil"),
        install=_last(values, "install"),
        checkonly="checkonly" in flags,
        unknown=tuple(unknown),
    )


def _last(values: Mapping[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[-1] if found else None


@dataclass(frozen=True)
class Mirror:
    """One mirror of a channel's MIRRORED.BY as sa-update reads it: its URL, weight (1 by default) and line in that file
    (0 for --forcemirror)."""

    url: str  # trailing / removed, as sa-update keeps it
    weight: int
    line: int


@fast_init
@dataclass(frozen=True)
class ChannelState:
    """One channel as the tree shows it before sa-update runs."""

    channel: str
    version_query: str  # TXT name giving the newest revision
    mirrors_query: str  # TXT name giving the MIRRORED.BY URLs
    directory: str  # <updatedir>/<nicechannel>
    mirrored_by: str
    mirrors: tuple[Mirror, ...]
    mirrored_by_age: float | None  # seconds; None if there is no usable cached file
    installed_revision: int | None  # from "# UPDATE version N"

    @property
    def needs_mirror_refresh(self) -> bool:
        return self.mirrored_by_age is None or self.mirrored_by_age > MIRRORED_BY_MAX_AGE


@fast_init
@dataclass(frozen=True)
class Resolver:
    """sa-update's resolver as Net::DNS sets it up: the nameservers (resolv.conf or RES_NAMESERVERS), retrans and retry
    (its `options`, or RES_RETRANS and RES_RETRY), and where the nameservers come from."""

    nameservers: tuple[str, ...]
    retrans: float
    retry: int
    learned_from: str

    @property
    def query_worst_seconds(self) -> float:
        """Net::DNS send loop: each round waits retrans, doubled every round, `retry` rounds."""
        return float(sum(self.retrans * 2**i for i in range(self.retry)))


@fast_init
@dataclass(frozen=True)
class SaUpdatePlan:
    """Everything static analysis can tell about one sa-update command."""

    args: SaUpdateArgs
    sa_version: str | None  # "4.000001"
    dotted_version: str | None  # "4.0.1"
    version_source: str
    updatedir: str
    channels: tuple[ChannelState, ...]
    downloader: str
    proxies: Mapping[str, str]
    resolver: Resolver
    notes: tuple[str, ...] = field(default_factory=tuple)

    @cached_property
    def worst(self) -> tuple[Scenario, ...]:
        """worst_cases(), worked out once per plan (the findings and the view both ask): the tuple a fleet's plans
        share."""
        # all it reads of the plan (a pure function of it, remembered)
        key = (bool(self.args.install), self.resolver.retrans, self.resolver.retry,
               self.downloader, tuple((len(c.mirrors), c.needs_mirror_refresh, c.mirrored_by_age is None)
                                      for c in self.channels))
        return remembered(_WORST, key, lambda: tuple(_worst_cases(self)))


def dotted(version: str) -> str | None:
    """4.000001 -> 4.0.1 and 3.4.6 style (l.258-267); None when sa-update would die on it."""
    match = re.fullmatch(r"(\d+)\.(\d{3})(\d{3})", version)
    if match:
        return ".".join(str(int(part)) for part in match.groups())
    match = re.fullmatch(r"(\d)\.(\d)(\d)", version)
    return ".".join(match.groups()) if match else None


def installed_version(fs: RootFS) -> tuple[str | None, str]:
    """$Mail::SpamAssassin::VERSION from Mail/SpamAssassin.pm in the perl library dirs of the tree (read once per
    RootFS: every sa-update of the tree shares it)."""
    return fs.memo(("installed_version",), lambda: _installed_version(fs))


def _installed_version(fs: RootFS) -> tuple[str | None, str]:
    for base in PERL_LIB_DIRS:
        candidates = [f"{base}/Mail/SpamAssassin.pm"]
        candidates += [f"{base}/{sub}/Mail/SpamAssassin.pm" for sub in fs.listdir(base)]
        for path in candidates:
            text = fs.read_text(path)
            if text is None:
                continue
            for lineno, line in enumerate(text.splitlines()[:400], 1):
                match = _VERSION_LINE.search(line)
                if match:
                    return match.group(1), f"{path}:{lineno}"
    return None, "no Mail/SpamAssassin.pm found"


def nice_channel(channel: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", channel)


def read_mirrored_by(text: str) -> list[Mirror]:
    mirrors: dict[str, Mirror] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not re.match(r"https?://", line, re.IGNORECASE):
            continue
        url, *data = line.split()
        url = url.rstrip("/")
        weight = 1
        for item in data:
            key, _, value = item.partition("=")
            if key == "weight" and value.isdigit():
                weight = int(value)
        mirrors[url] = Mirror(url, weight, lineno)
    return list(mirrors.values())


def read_resolver(fs: RootFS, env: Mapping[str, str]) -> Resolver:
    """Net::DNS::Resolver's configuration: resolv.conf, then RES_* variables."""
    conf = fs.memo(("read_resolv_conf",), lambda: read_resolv_conf(fs))
    nameservers, source = list(conf.servers), conf.source
    retrans, retry = NET_DNS_RETRANS, NET_DNS_RETRY
    for option in conf.options:
        name, _, value = option.partition(":")
        if name == "timeout" and value.isdigit():
            retrans = float(value)
        elif name == "attempts" and value.isdigit():
            retry = int(value)
    if env.get("RES_NAMESERVERS"):
        nameservers, source = env["RES_NAMESERVERS"].split(), "RES_NAMESERVERS"
    if env.get("RES_RETRANS", "").isdigit():
        retrans = float(env["RES_RETRANS"])
    if env.get("RES_RETRY", "").isdigit():
        retry = int(env["RES_RETRY"])
    return Resolver(tuple(nameservers or [DEFAULT_NAMESERVER]), retrans, max(retry, 1), source)


def choose_downloader(args: SaUpdateArgs, fs: RootFS, env: Mapping[str, str]) -> str:
    if args.httputil in ("curl", "wget", "fetch", "lwp"):
        return args.httputil
    return kept(fs, "choose_downloader", env.get("PATH"), lambda: _downloader_in_path(fs, env))


def _downloader_in_path(fs: RootFS, env: Mapping[str, str]) -> str:
    path = env.get("PATH", ":".join(SYSTEMD_PATH)).split(":")
    for program in ("curl", "wget", "fetch"):
        if any(fs.lstat(f"{d}/{program}") is not None for d in path if d.startswith("/")):
            return program
    return "lwp"


def plan(command: FoundCommand, fs: RootFS, sa_version: str | None = None, now: float | None = None) -> SaUpdatePlan:
    env = command.env
    # `http_proxy="$http_proxy"` (Debian's spamassassin-maint): whatever its caller's environment holds — not
    # known here, so no proxy is assumed (the rule mentions it).
    proxies = {k.lower(): v for k, v in env.items()
               if k.lower() in ("http_proxy", "https_proxy", "no_proxy") and v.strip() and not unexpanded(v)}
    # A function of the command line, the few variables read here and the tree, the ages of the mirror lists
    # counted to when the run opened the tree (fs.opened): made once per RootFS for a fleet's units running the
    # same sa-update, one plan they share (issue 14; the view and the JSON of it are then made once too).
    key = (command.argv, sa_version, env.get("PATH"), env.get("RES_NAMESERVERS"), env.get("RES_RETRANS"),
           env.get("RES_RETRY"))
    def made() -> _Made:
        return kept(fs, "plan", key, lambda: _plan(command, fs, sa_version))

    if now is None:
        return kept(fs, "plan_dated", (key, tuple(proxies.items())), lambda: _dated(made(), fs.opened, proxies))
    return _dated(made(), now, proxies)


def _dated(made: _Made, reference: float, proxies: dict[str, str]) -> SaUpdatePlan:
    states = tuple(ChannelState(state.channel, state.version_query, state.mirrors_query, state.directory,
                                state.mirrored_by, state.mirrors,
                                None if mtime is None else max(0.0, reference - mtime), state.installed_revision)
                   for state, mtime in made.channels)
    return SaUpdatePlan(made.args, made.sa_version, made.dotted_version, made.version_source, made.updatedir,
                        states, made.downloader, proxies, made.resolver, made.notes)


@dataclass(frozen=True)
class _Made:
    """A plan without the time: each channel with the mtime its age is counted from (None: no age)."""

    args: SaUpdateArgs
    sa_version: str | None
    dotted_version: str | None
    version_source: str
    updatedir: str
    channels: tuple[tuple[ChannelState, float | None], ...]
    downloader: str
    resolver: Resolver
    notes: tuple[str, ...]


def _plan(command: FoundCommand, fs: RootFS, sa_version: str | None) -> _Made:
    args = parse_args(command.argv)
    notes: list[str] = []
    version, version_source = (sa_version, "--sa-version") if sa_version else installed_version(fs)
    dotted_version = dotted(version) if version else None
    if args.unknown:
        notes.append(f"sa-update does not accept {' '.join(args.unknown)}: it prints its usage and exits 64")
    if version and not dotted_version:
        notes.append(f"sa-update dies on the version number {version!r} (unknown format)")
    updatedir = args.updatedir or f"/var/lib/spamassassin/{version or 'VERSION'}"
    channels = list(args.channels) or [DEFAULT_CHANNEL]
    if args.channelfile:
        text = fs.read_text(args.channelfile)
        if text is None:
            notes.append(f"--channelfile {args.channelfile} does not exist in the tree: sa-update dies (exit 255)")
        else:
            channels = [c.split("#", 1)[0].strip().lower() for c in text.splitlines()]
            channels = [c for c in channels if c]
    channels = [c for c in channels if re.fullmatch(r"[a-zA-Z0-9._-]+", c)]
    states = tuple(_channel_state(fs, channel, updatedir, dotted_version, args) for channel in channels)
    return _Made(args, version, dotted_version, version_source, updatedir, states,
                 choose_downloader(args, fs, command.env), read_resolver(fs, command.env), tuple(notes))


def _channel_state(fs: RootFS, channel: str, updatedir: str, dotted_version: str | None,
                   args: SaUpdateArgs) -> tuple[ChannelState, float | None]:
    """The channel's state (its age left out) and the mtime its age counts from (None: it has no age)."""
    reverse = ".".join(reversed(dotted_version.split("."))) if dotted_version else "<version>"
    directory = posixpath.join(updatedir, nice_channel(channel))
    mirrored_by = f"{directory}/MIRRORED.BY"
    cached, mtime = kept(fs, "cached_mirrors", mirrored_by, lambda: _cached_mirrors(fs, mirrored_by))
    mirrors = list(cached or ())
    since = None
    if cached is not None and not args.refreshmirrors:
        since = mtime
    if args.forcemirror:
        mirrors = [Mirror(args.forcemirror.rstrip("/"), 1, 0)]
    revision = kept(fs, "installed_revision", directory, lambda: _installed_revision(fs, f"{directory}.cf"))
    return ChannelState(channel, f"{reverse}.{channel}", f"mirrors.{channel}", directory, mirrored_by,
                        tuple(mirrors), None, revision), since


def _cached_mirrors(fs: RootFS, mirrored_by: str) -> tuple[tuple[Mirror, ...] | None, float | None]:
    """A channel's MIRRORED.BY (None if missing or empty: sa-update refreshes it) and its mtime; read once per
    RootFS, as every unit's sa-update of the tree reads the same file."""
    text = fs.read_text(mirrored_by)
    if not text:
        return None, None
    info = fs.lstat(fs.chase(mirrored_by) or mirrored_by)
    return tuple(read_mirrored_by(text)), info.st_mtime if info else None


def _installed_revision(fs: RootFS, path: str) -> int | None:
    """`# UPDATE version N` at the top of `<updatedir>/<nicechannel>.cf`."""
    revision = None
    for line in (fs.read_text(path) or "").splitlines():
        match = re.match(r"# UPDATE\s+([A-Za-z]+)\s+(\S+)", line)
        if not match:
            break
        digits = re.match(r"\d+", match.group(2))
        if match.group(1).lower() == "version" and digits:
            revision = int(digits.group(0))
    return revision


class SaUpdateRule:
    tools = frozenset({"sa-update"})

    def __init__(self, sa_version: str | None = None) -> None:
        self.sa_version = sa_version

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        return list(self.plan_dependencies(plan(command, context.fs, self.sa_version), command, context))

    @staticmethod
    def plan_dependencies(found: SaUpdatePlan, command: FoundCommand, context: RuleContext) -> Sequence[Dependency]:
        """The dependencies of a plan already made (analyze() needs the plan itself too): the tuple a fleet's units
        share when no proxy variable is involved, else a list of this command's own."""
        role = context.role(command)
        if found.proxies or any(name.lower() in ("http_proxy", "https_proxy") for name in command.env):
            return SaUpdateRule._plan_dependencies(found, command, role)
        # no proxy: nothing of the command but its role is in them, the same for a fleet's units (issue 14)
        key = (role, found.args.install, found.args.gpg, found.resolver,
               tuple((c.version_query, c.mirrors_query, c.mirrored_by, c.mirrors) for c in found.channels))
        return kept(context.fs, "plan_dependencies", key,
                    lambda: tuple(SaUpdateRule._plan_dependencies(found, command, role)))

    @staticmethod
    def _plan_dependencies(found: SaUpdatePlan, command: FoundCommand, role: Role) -> list[Dependency]:
        if found.args.install:
            return []
        deps: list[Dependency] = []
        for server in found.resolver.nameservers:
            for kind in (DepKind.UDP, DepKind.TCP):
                deps.append(Dependency(kind, f"{_hostport(server, 53)}", role, found.resolver.learned_from,
                                       note="DNS resolver sa-update's Net::DNS uses (never proxied)"))
        http_proxy = found.proxies.get("http_proxy")
        https_proxy = found.proxies.get("https_proxy")
        for name, value in sorted(command.env.items()):
            if name.lower() in ("http_proxy", "https_proxy") and unexpanded(value):
                deps.append(Dependency(DepKind.TCP, value, role, str(command.source), Confidence.LOW,
                                       f"{name} is {value!r}, from an environment not known here: if it is set, "
                                       "sa-update goes through that proxy"))
        for proxy_url in sorted({p for p in (http_proxy, https_proxy) if p}):
            deps.append(Dependency(DepKind.TCP, _proxy_hostport(proxy_url), role, str(command.source),
                                   note="HTTP proxy from the unit's environment"))
        files = ".tar.gz, .tar.gz.asc" if found.args.gpg else ".tar.gz, .tar.gz.sha512 (or .sha256)"
        for channel in found.channels:
            deps.append(Dependency(DepKind.DNS, f"TXT {channel.version_query}", role, "sa-update.raw l.549",
                                   note="newest rule revision for this SpamAssassin version"))
            deps.append(Dependency(
                DepKind.DNS, f"TXT {channel.mirrors_query}", role, "sa-update.raw l.561, 668",
                note="URL(s) of MIRRORED.BY; asked when no revision answer, and to refresh a missing/old "
                     "mirror list"))
            for mirror in channel.mirrors:
                kind = DepKind.HTTPS if mirror.url.lower().startswith("https:") else DepKind.HTTP
                proxy = https_proxy if kind is DepKind.HTTPS else http_proxy
                source = f"{channel.mirrored_by}:{mirror.line}" if mirror.line else "--forcemirror"
                host = Dependency(kind, mirror.url + "/", role, source).host
                if not proxy and not re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host):
                    deps.append(Dependency(DepKind.DNS, f"A {host}", role, source,
                                           note="sa-update checks the mirror's address family (also AAAA)"))
                deps.append(Dependency(kind, mirror.url + "/", role, source,
                                       note=f"weight {mirror.weight}; fetches <revision>{files}"
                                       + (f"; via proxy {proxy}" if proxy else "")))
        return deps


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _proxy_hostport(proxy: str) -> str:
    rest = proxy.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest if "]:" in rest else f"{rest}:3128"
    return rest if ":" in rest else f"{rest}:3128"


@fast_init
@dataclass(frozen=True)
class Scenario:
    """One way an sa-update run can go (most are network failures): how long it takes, its exit status and why."""

    name: str
    seconds: float
    exit_status: int
    detail: str


_WORST: dict[Hashable, tuple[Scenario, ...]] = {}  # worst_cases() of the plans seen: a fleet's are a few


def worst_cases(found: SaUpdatePlan) -> list[Scenario]:
    """How long sa-update runs, and how it exits, when the network fails in each typical way.

    Channels are processed one after the other (l.476), so their times add up.
    """
    return list(found.worst)


def _worst_cases(found: SaUpdatePlan) -> list[Scenario]:
    if found.args.install:
        return [Scenario("offline install", 0.0, 0, "--install uses no network")]
    count = len(found.channels)
    per_query = found.resolver.query_worst_seconds
    download = DOWNLOAD_WORST[found.downloader]
    dropped_http = 0.0
    for channel in found.channels:
        mirrors = len(channel.mirrors)
        refresh = download if channel.needs_mirror_refresh else 0.0  # TXT mirrors usually holds one URL
        if channel.mirrored_by_age is None:
            dropped_http += refresh  # no list at all: the channel fails after the refresh attempt
        else:
            dropped_http += refresh + mirrors * download + max(mirrors - 1, 0) * MIRROR_RETRY_SLEEP
    return [
        Scenario("DNS answers dropped upstream", 2 * per_query * count, 4,
                 f"Net::DNS waits {per_query:.0f} s for each of the 2 TXT queries per channel "
                 f"(retrans {found.resolver.retrans:.0f} s, retry {found.resolver.retry}, doubling)"),
        Scenario("DNS refused by the local firewall", 2 * LOCAL_DNS_REFUSAL_SECONDS * count, 4,
                 "sendto() fails at once; Net::DNS gives up a query after about 5 s"),
        Scenario("HTTP to the mirrors dropped", dropped_http, 4,
                 f"{found.downloader}: {download:.0f} s per URL, {MIRROR_RETRY_SLEEP:.0f} s between mirrors"),
        Scenario("no new rules (an ordinary day)", 1.0, 1, "revision in DNS <= installed: exit 1"),
    ]
