"""URLs and host:port words on a command line: curl, wget, fetch, lwp-request/GET, and a low-confidence
fallback for commands no rule knows. Also the small helpers the other rule modules share (role of a command,
host:port formatting, a user's home directory).

Proxy facts used here:
- curl: `-x/--proxy` beats the environment; `-x ""` turns proxies off. Environment: `http_proxy` (lower case
  only, on purpose), `https_proxy`/`HTTPS_PROXY`, `ftp_proxy`/`FTP_PROXY`, then `all_proxy`/`ALL_PROXY`;
  `no_proxy`/`NO_PROXY` (`*` = all). A proxy without a port is port 1080 (443 for https://) (curl(1) -x).
- wget: lower-case `http_proxy`, `https_proxy`, `ftp_proxy`, `no_proxy` only; `--no-proxy` or
  `-e use_proxy=off` turns them off; `-e http_proxy=URL` sets one; /etc/wgetrc can set them too
  (wget(1), "Proxies"). The proxy is a URL: no port means 80 (443 for https://).
- fetch(1) and LWP (`env_proxy`) read both cases. lwp-request `-p URL` sets a proxy, `-P` ignores the env.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import START_KEYS, RuleContext, command_role, kept, unexpanded  # noqa: F401 - used by rules
from mailpreflight.model import Confidence, Dependency, DepKind, FoundCommand, Role

# --- helpers shared by the rule modules (candidates for deps/base.py) ------------------------------------

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")
HOST_CACHED_MAX = 256  # longer words (no host name is over 253 characters) are checked, never remembered


def is_ip(host: str) -> bool:
    return (_is_ip_cached if len(host) <= HOST_CACHED_MAX else _is_ip)(host)


def is_hostname(host: str, need_dot: bool = False) -> bool:
    """A syntactically valid DNS name (not an IP literal); with need_dot, one that has a dot and a last label
    that is not all digits (so "1.2" or "file" are not taken for hosts)."""
    return (_is_hostname_cached if len(host) <= HOST_CACHED_MAX else _is_hostname)(host, need_dot)


def valid_host(host: str) -> bool:
    """An IP address or a DNS name (Postfix's `ipv6:` address prefix accepted)."""
    return (_valid_host_cached if len(host) <= HOST_CACHED_MAX else _valid_host)(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_hostname(host: str, need_dot: bool = False) -> bool:
    if is_ip(host) or not _HOSTNAME.match(host):
        return False
    if not need_dot:
        return True
    labels = host.rstrip(".").split(".")
    return len(labels) > 1 and not labels[-1].isdigit()


def hostport(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _valid_host(host: str) -> bool:
    if host.lower().startswith("ipv6:"):
        return is_ip(host[5:])
    return is_ip(host) or is_hostname(host)


# pure functions; every unit of a fleet asks about the same few hosts (issue 14)
_is_ip_cached = functools.lru_cache(maxsize=4096)(_is_ip)
_is_hostname_cached = functools.lru_cache(maxsize=4096)(_is_hostname)
_valid_host_cached = functools.lru_cache(maxsize=4096)(_valid_host)


def split_hostport(text: str) -> tuple[str, str | None] | None:
    """'host', 'host:25', '[v6]', '[v6]:25', '[host]:587' -> (host, port text or None); None if malformed
    or if the host is neither an IP address nor a DNS name. A bare IPv6 address is a host without port."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not valid_host(host) or (rest and not rest.startswith(":")):
            return None
        return host, (rest[1:] or None)
    if text.count(":") > 1:
        return (text, None) if is_ip(text) else None
    host, colon, port = text.partition(":")
    if not valid_host(host) or (colon and not port):
        return None
    return host, port or None


def parse_port(text: str | None, default: int, services: Mapping[str, int] | None = None) -> int | None:
    """A port number or a well-known service name; None when it is neither."""
    if text is None:
        return default
    if text.isdigit():
        value = int(text)
        return value if 0 < value < 65536 else None
    return (services or {}).get(text.lower())


def user_home(fs: RootFS, user: str | None) -> str | None:
    """The home directory of a user (name or uid) in the tree's /etc/passwd."""
    if not user:
        return None
    def lookup() -> str | None:
        for line in (fs.read_text("/etc/passwd") or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and user in (fields[0], fields[2]) and fields[5].startswith("/"):
                return fields[5]
        return None

    return kept(fs, "user_home", user, lookup)


def dns_a_deps(deps: Iterable[Dependency]) -> list[Dependency]:
    """One `A name` dependency for every host name (not IP) the given tcp/udp dependencies reach."""
    seen: set[str] = set()
    result: list[Dependency] = []
    for dep in deps:
        host = dep.host
        if dep.kind in (DepKind.TCP, DepKind.UDP) and not is_ip(host) and host not in seen:
            seen.add(host)
            result.append(Dependency(DepKind.DNS, f"A {host}", dep.role, dep.learned_from, dep.confidence,
                                     f"name of {dep.target}"))
    return result


def unique(deps: Iterable[Dependency]) -> list[Dependency]:
    """Drop repeats of the same (kind, target), keeping the first (where it was learned first)."""
    seen: set[tuple[DepKind, str]] = set()
    result: list[Dependency] = []
    for dep in deps:
        if (dep.kind, dep.target) not in seen:
            seen.add((dep.kind, dep.target))
            result.append(dep)
    return result


# --- URLs -------------------------------------------------------------------------------------------------

SCHEME_PORTS = {"http": 80, "https": 443, "ftp": 21, "socks4": 1080, "socks4a": 1080, "socks5": 1080,
                "socks5h": 1080}
_URL_ANYWHERE = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"<>`|;]+")
_URL_START = re.compile(r"(?i)^(?:https?|ftp)://\S+$")
_SCHEMELESS = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/\S*)?$")

# Options that take a value (the value is never the URL to fetch). curl takes `-oFILE` or `-o FILE`.
_CURL_VALUE = frozenset({
    "-o", "--output", "-H", "--header", "-d", "--data", "--data-raw", "--data-binary", "--data-urlencode",
    "--data-ascii", "--json", "-F", "--form", "--form-string", "-u", "--user", "-A", "--user-agent", "-e",
    "--referer", "-x", "--proxy", "-U", "--proxy-user", "--noproxy", "-m", "--max-time", "--connect-timeout",
    "-X", "--request", "-w", "--write-out", "-b", "--cookie", "-c", "--cookie-jar", "-T", "--upload-file",
    "-K", "--config", "--cacert", "--capath", "-E", "--cert", "--key", "-r", "--range", "--retry",
    "--retry-delay", "--retry-max-time", "-C", "--continue-at", "--resolve", "--connect-to", "--interface",
    "--dns-servers", "--limit-rate", "-y", "--speed-time", "-Y", "--speed-limit", "--max-filesize",
    "--output-dir", "--url", "-z", "--time-cond", "--proto", "--proto-redir", "--max-redirs", "--unix-socket",
    "--ciphers", "--trace", "--trace-ascii", "--stderr", "-D", "--dump-header", "--local-port", "--netrc-file",
    "-Q", "--quote", "-P", "--ftp-port", "--oauth2-bearer", "--pinnedpubkey", "--variable", "--proxy-header",
    "--preproxy", "--cert-type", "--key-type", "--pass", "--tls-max", "--ipfs-gateway"})
_WGET_VALUE = frozenset({
    "-O", "--output-document", "-o", "--output-file", "-a", "--append-output", "-i", "--input-file", "-e",
    "--execute", "-t", "--tries", "-T", "--timeout", "--dns-timeout", "--connect-timeout", "--read-timeout",
    "-w", "--wait", "-P", "--directory-prefix", "--header", "--referer", "-U", "--user-agent", "--user",
    "--password", "--http-user", "--http-password", "--post-data", "--post-file", "--ca-certificate",
    "--certificate", "--private-key", "-B", "--base", "-Q", "--quota", "--limit-rate", "-D", "--domains",
    "-A", "--accept", "-R", "--reject", "-l", "--level", "--load-cookies", "--save-cookies", "--bind-address",
    "--proxy-user", "--proxy-password", "--method", "--body-data", "--body-file", "--config"})
_LWP_VALUE = frozenset({"-m", "-f", "-b", "-t", "-i", "-c", "-p", "-H", "-C", "-o"})
_FETCH_VALUE = frozenset({"-o", "-B", "-N", "-S", "-T", "-w", "--output", "--buffer-size", "--netrc",
                          "--require-size", "--timeout", "--retry-delay", "--ca-cert", "--crl", "--cert",
                          "--key", "--referer", "--user-agent", "--bind-address"})
_VALUE_OPTIONS = {"curl": _CURL_VALUE, "wget": _WGET_VALUE, "lwp-request": _LWP_VALUE, "GET": _LWP_VALUE,
                  "fetch": _FETCH_VALUE}


@dataclass(frozen=True)
class _Proxy:
    """The proxy a download tool sends a URL's request through: host and port (the tool's default port when none is
    given), and the option, variable or wgetrc line that set it."""

    host: str
    port: int
    origin: str  # "-x", "http_proxy", "/etc/wgetrc:12", ...

    @property
    def target(self) -> str:
        return hostport(self.host, self.port)


@dataclass
class _ProxySettings:
    """What a command line says about proxies, on top of the environment."""

    explicit: str | None = None  # curl -x / lwp-request -p: one proxy for every scheme
    explicit_origin: str = ""
    off: bool = False  # curl -x "", wget --no-proxy / use_proxy=off, lwp-request -P
    per_scheme: dict[str, tuple[str, str]] | None = None  # wget -e http_proxy=..., /etc/wgetrc
    no_proxy: str | None = None


def _proxy_from(value: str, origin: str, tool: str) -> _Proxy | None:
    value = value.strip()
    if not value or unexpanded(value):
        return None  # `http_proxy="$http_proxy"`: whatever the environment holds, not known here
    try:  # urlsplit() itself raises on a broken [v6] literal
        parsed = urlsplit(value if "://" in value else "http://" + value)
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    if not host:
        return None
    if port is None:
        # curl(1) -x: "If the port number is not specified in the proxy string, it is assumed to be 1080";
        # an https:// proxy defaults to 443. Others treat the proxy as a URL of its scheme.
        port = 443 if scheme == "https" else 1080 if tool == "curl" else SCHEME_PORTS.get(scheme, 80)
    return _Proxy(host, port, origin)


def _env_names(tool: str, scheme: str) -> list[str]:
    if tool == "curl":  # curl ignores upper-case HTTP_PROXY (CGI "Proxy:" header attack)
        names = ["http_proxy"] if scheme == "http" else [f"{scheme}_proxy", f"{scheme.upper()}_PROXY"]
        return [*names, "all_proxy", "ALL_PROXY"]
    if tool == "wget":
        return [f"{scheme}_proxy"]
    return [f"{scheme}_proxy", f"{scheme.upper()}_PROXY"]


def _bypassed(host: str, no_proxy: str | None) -> bool:
    for entry in re.split(r"[,\s]+", no_proxy or ""):
        entry = entry.strip().lstrip(".").lower()
        if entry == "*" or (entry and (host.lower() == entry or host.lower().endswith("." + entry))):
            return True
    return False


def _proxy_for(tool: str, scheme: str, host: str, env: Mapping[str, str], settings: _ProxySettings) -> _Proxy | None:
    if settings.off:
        return None
    no_proxy = settings.no_proxy
    if no_proxy is None:
        no_proxy = env.get("no_proxy") if tool == "wget" else env.get("no_proxy", env.get("NO_PROXY"))
    if _bypassed(host, no_proxy):
        return None
    if settings.explicit is not None:
        return _proxy_from(settings.explicit, settings.explicit_origin, tool)
    if settings.per_scheme and scheme in settings.per_scheme:
        value, origin = settings.per_scheme[scheme]
        return _proxy_from(value, origin, tool)
    for name in _env_names(tool, scheme):
        if name in env:
            return _proxy_from(env[name], name, tool)  # an empty value means "no proxy"
    return None


def _wgetrc(fs: RootFS, settings: _ProxySettings) -> None:
    """/etc/wgetrc: `use_proxy = off`, `http_proxy = URL`, `https_proxy = URL`, `no_proxy = LIST`."""
    for number, line in enumerate((fs.read_text("/etc/wgetrc") or "").splitlines(), 1):
        _wget_command(line, f"/etc/wgetrc:{number}", settings)


def _wget_command(text: str, origin: str, settings: _ProxySettings) -> None:
    """One wgetrc command (also what `-e` takes). Names ignore case, `_` and `-`."""
    name, equals, value = text.partition("=")
    name = name.strip().lower().replace("_", "").replace("-", "")
    value = value.strip()
    if not equals or name.startswith("#"):
        return
    if name == "useproxy":
        settings.off = value.lower() in ("off", "no", "0")
    elif name in ("httpproxy", "httpsproxy", "ftpproxy"):
        scheme = name[:-5]
        settings.per_scheme = {**(settings.per_scheme or {}), scheme: (value, origin)}
    elif name == "noproxy":
        settings.no_proxy = value


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _url_deps(url: str, tool: str, command: FoundCommand, role: Role, confidence: Confidence,
              settings: _ProxySettings) -> list[Dependency]:
    url = url.rstrip(".,)")
    if unexpanded(url.split("://", 1)[-1].split("/", 1)[0]):
        return []  # `https://$MIRROR/x`: the host is a variable not known here
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return []
    scheme = parts.scheme.lower()
    if not host or scheme not in ("http", "https", "ftp"):
        return []
    where = str(command.source)
    proxy = _proxy_for(tool, scheme, host, command.env, settings)
    via = f"via proxy {proxy.target} ({proxy.origin})" if proxy else ""
    deps: list[Dependency] = []
    if scheme == "ftp":  # no ftp DepKind: what must be reachable is the control connection
        target = hostport(host, port or 21)
        deps.append(Dependency(DepKind.TCP, target, role, where, confidence, "; ".join(filter(None, ["ftp URL", via]))))
    else:
        kind = DepKind.HTTPS if scheme == "https" else DepKind.HTTP
        deps.append(Dependency(kind, _strip_credentials(url), role, where, confidence, via))
    if proxy:
        deps.append(Dependency(DepKind.TCP, proxy.target, role, where, confidence, f"proxy from {proxy.origin}"))
    return deps


def _value_of(word: str, options: frozenset[str]) -> tuple[str, str | None, bool]:
    """(option, inline value, takes a value) for an option word: `--opt=value`, `--opt`, `-xVALUE`, and
    short clusters such as `-sSo FILE` (the first letter that takes a value ends the cluster)."""
    if word.startswith("--"):
        name, equals, value = word.partition("=")
        return name, value if equals else None, name in options
    for position, letter in enumerate(word[1:], 1):
        if f"-{letter}" in options:
            return f"-{letter}", word[position + 1:] or None, True
    return word[:2], None, False


class UrlFetchRule:
    """curl, wget, fetch, lwp-request/GET: every URL they are given, and the proxy they will go through."""

    tools = frozenset({"curl", "wget", "fetch", "lwp-request", "GET"})

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        tool = command.tool if command.tool in _VALUE_OPTIONS else "curl"
        options = _VALUE_OPTIONS[tool]
        role = context.role(command)
        settings = _ProxySettings()
        if tool == "wget":
            _wgetrc(context.fs, settings)
        urls: list[str] = []
        args = list(command.argv[1:])
        index = 0
        while index < len(args):
            word = args[index]
            index += 1
            if word == "--":
                urls.extend(w for w in args[index:] if _looks_like_url(w))
                break
            if not word.startswith("-") or word == "-":
                if _looks_like_url(word):
                    urls.append(word)
                continue
            name, value, takes_value = _value_of(word, options)
            if takes_value and value is None and index < len(args):
                value = args[index]
                index += 1
            self._option(tool, name, value, settings, urls, str(command.source))
        deps: list[Dependency] = []
        for url in urls:
            full = url if "://" in url else "http://" + url  # curl and wget default to http
            deps.extend(_url_deps(full, tool, command, role, Confidence.HIGH, settings))
        return unique(deps)

    @staticmethod
    def _option(tool: str, name: str, value: str | None, settings: _ProxySettings, urls: list[str],
                where: str) -> None:
        if name == "--url" and value:
            urls.append(value)
        elif tool == "curl" and name in ("-x", "--proxy") and value is not None:
            settings.off = value == ""
            settings.explicit, settings.explicit_origin = (value or None), f"{name} at {where}"
        elif tool == "curl" and name == "--noproxy" and value is not None:
            settings.no_proxy = value
        elif tool == "wget" and name in ("-e", "--execute") and value:
            _wget_command(value, f"-e at {where}", settings)
        elif tool == "wget" and name == "--no-proxy":
            settings.off = True
        elif tool in ("lwp-request", "GET") and name == "-p" and value:
            settings.explicit, settings.explicit_origin = value, f"-p at {where}"
        elif tool in ("lwp-request", "GET") and name == "-P":
            settings.off = True


def _looks_like_url(word: str) -> bool:
    if _URL_START.match(word):
        return True
    match = _SCHEMELESS.match(word)
    if not match:
        return False
    host = match.group("host").strip("[]")
    return is_ip(host) or is_hostname(host, need_dot=True) or host == "localhost"


_HOSTPORT_WORD = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$")


def hostport_words(words: Sequence[str]) -> list[tuple[str, int]]:
    """`host:port` words, also as `--opt=host:port`: a name with a dot or an IP address, a port 1-65535."""
    found: list[tuple[str, int]] = []
    for word in words:
        if "://" in word:
            continue
        candidate = word.rsplit("=", 1)[-1]
        match = _HOSTPORT_WORD.match(candidate)
        if not match:
            continue
        host = match.group("v6") or match.group("host")
        port = int(match.group("port"))
        if not 0 < port < 65536:
            continue
        if (match.group("v6") and is_ip(host)) or is_ip(host) or is_hostname(host, need_dot=True):
            found.append((host, port))
    return found


MENTIONED = "mentioned, not contacted: no rule knows what {tool} does with it"


class UnknownCommandRule:
    """Fallback for commands no rule knows. Nothing says such a command contacts a URL or host:port that its
    arguments contain (postgrey's `--greylist-text="… https://postgrey.schweikert.ch/help/%H.html"` is the text
    of a reply), so it has no dependencies: those words are only `mentions` (LOW confidence), which `deps` lists
    and nothing probes or allows."""

    tools: frozenset[str] = frozenset()

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        return []

    def mentions(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        words = command.argv[1:]
        if ":" not in " ".join(words):
            return []  # a URL and a host:port both hold a colon: most command lines have none
        role = context.role(command)
        where = str(command.source)
        settings = _ProxySettings()
        deps: list[Dependency] = []
        note = MENTIONED.format(tool=command.tool)
        for word in words:
            for url in _URL_ANYWHERE.findall(word):
                deps.extend(_url_deps(url, command.tool, command, role, Confidence.LOW, settings))
        for host, port in hostport_words(words):
            deps.append(Dependency(DepKind.TCP, hostport(host, port), role, where, Confidence.LOW,
                                   "host:port seen in the arguments"))
        return unique(Dependency(d.kind, d.target, d.role, d.learned_from, Confidence.LOW,
                                 "; ".join(filter(None, [note, d.note]))) for d in deps)
