"""freshclam: the DNS name and the mirrors it reaches, read from freshclam.conf (ClamAV 1.x).

Facts (ClamAV sources: common/optparser.c, freshclam/freshclam.c, libfreshclam/libfreshclam.c):
- config: `--config-file=FILE`, else the compiled-in path: /etc/clamav/freshclam.conf on Debian,
  /etc/freshclam.conf on openSUSE (read from the freshclam binary of the tree, where it is a string). A config
  that cannot be read stops freshclam before any network use. Checked with Debian 12's freshclam 1.4.6: a
  missing file, or one with an `Example` line, prints "ERROR: Can't open/parse the config file FILE" and exits
  2; a file (or directory) with no DatabaseMirror/PrivateMirror, or a PrivateMirror under .clamav.net, exits
  9. Debian's clamav-freshclam does not ship freshclam.conf: its postinst writes it from debconf answers, so
  before that (or after an upgrade lost it) freshclam exits 2 at every start.
- file format (optparse()): leading blanks skipped, `#` lines and lines of 2 chars or less ignored, a line
  starting with "Example" is an error, `Name value` with case-sensitive names, an argument may be in
  double quotes, a `#` in the argument starts a comment. A single-valued option keeps its FIRST value;
  DatabaseMirror, PrivateMirror and DatabaseCustomURL accumulate.
- DNSDatabaseInfo (default current.cvd.clamav.net): TXT lookup through libc; a failure falls back to
  HTTP checks. `--no-dns` skips it. ClamAV itself has no "off" value: "no" would be looked up as a name
  (and fail, i.e. fall back to HTTP), so we treat "no"/"disabled"/"off" as "no DNS dependency".
- servers (get_database_server_list(), get_server_node()): PrivateMirror wins over DatabaseMirror, defaults to
  http:// and disables the DNS check; it may not be under .clamav.net (config error). DatabaseMirror defaults
  to https:// (port 443); `db.XX.clamav.net` is rewritten to https://database.clamav.net. NO mirror at all
  is a config error ("No DatabaseMirror or PrivateMirror servers set"): the option has no built-in default.
- HTTPProxyServer (a leading http:// is stripped; curl takes other schemes), HTTPProxyPort, else the
  `webcache` port of /etc/services, else 8080. Mirrors are then reached through the proxy; DNS is not.
- ConnectTimeout default 30 s, ReceiveTimeout default 60 s (0 = none).
- `-d`/`--daemon`: freshclam keeps running and checks `Checks` times a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import RuleContext, kept
from mailpreflight.deps.urls import hostport, parse_port, split_hostport, unique
from mailpreflight.model import Dependency, DepKind, FoundCommand, Role
from mailpreflight.units.distro import distribution

CONFIG_PATHS = ("/etc/clamav/freshclam.conf", "/etc/freshclam.conf")
DEFAULT_DNS = "current.cvd.clamav.net"
MULTIPLE = frozenset({"DatabaseMirror", "PrivateMirror", "DatabaseCustomURL"})
DNS_OFF = frozenset({"no", "disabled", "off", "false"})
DEFAULT = "freshclam default"


@dataclass
class FreshclamConfig:
    """freshclam.conf as optparse() reads it: each option's values with their line numbers (a single-valued option keeps
    its first), and why freshclam would refuse the file."""

    path: str
    values: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> [(value, line)]
    broken: str | None = None  # why freshclam would refuse this file

    def first(self, name: str) -> tuple[str, int] | None:
        found = self.values.get(name)
        return found[0] if found else None

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


def parse_config(text: str, path: str) -> FreshclamConfig:
    config = FreshclamConfig(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip(" \t").rstrip("\r\n")
        if len(line) <= 2 or line.startswith("#"):
            continue
        if line.startswith("Example"):
            config.broken = f"{path}:{number}: the 'Example' line must be removed"
            return config
        name, _, rest = line.replace("\t", " ").partition(" ")
        arg = rest.strip(" \t")
        if arg.startswith('"'):
            end = arg.rfind('"')
            if end <= 0:
                continue  # freshclam: "Missing closing parenthesis" -- skip the line
            arg = arg[1:end]
        arg = arg.split("#", 1)[0].rstrip(" \t")
        if not arg:
            continue
        if name in MULTIPLE or name not in config.values:
            config.values.setdefault(name, []).append((arg, number))
    return config


def _option(argv: tuple[str, ...], long_name: str) -> str | None:
    for index, word in enumerate(argv):
        if word.startswith(f"--{long_name}="):
            return word.split("=", 1)[1]
        if word == f"--{long_name}" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _flag(argv: tuple[str, ...], short: str, long_name: str) -> bool:
    for word in argv:
        if word == f"--{long_name}" or word.startswith(f"--{long_name}="):
            return word.split("=", 1)[-1].lower() not in ("no", "false", "0") if "=" in word else True
        if short and word.startswith("-") and not word.startswith("--") and word[1:] and set(word[1:]) <= set(
                "hVvd") and short in word[1:]:
            return True  # a cluster of argument-less short options, e.g. -dv
    return False


def find_config(fs: RootFS, argv: tuple[str, ...]) -> FreshclamConfig | None:
    given = _option(argv, "config-file")
    for path in (given,) if given else CONFIG_PATHS:
        if path and path.startswith("/"):
            text = fs.read_text(path)
            if text is not None:
                return parse_config(text, path)
    return None


_COMPILED_IN = re.compile(rb"\x00(/[\x21-\x7e]{0,200}/freshclam\.conf)\x00")
PROGRAMS = ("/usr/bin/freshclam", "/usr/sbin/freshclam")


def config_path(fs: RootFS, argv: tuple[str, ...]) -> str:
    """The file freshclam reads: --config-file, else its compiled-in path (a string in the tree's binary), else
    the one of CONFIG_PATHS that exists, else the distribution's (Debian's when the tree says Debian)."""
    given = _option(argv, "config-file")
    if given:
        return given
    own = (argv[0],) if argv and argv[0].startswith("/") else ()
    # the same for every freshclam command of the tree: its binary is read once per RootFS, not per call
    return kept(fs, "freshclam_config_path", own, lambda: _default_config_path(fs, own + PROGRAMS))


def _default_config_path(fs: RootFS, programs: tuple[str, ...]) -> str:
    for program in programs:
        try:
            found = _COMPILED_IN.search(fs.read_bytes(program, 32 * 1024 * 1024))
        except OSError:
            continue
        if found:
            return found.group(1).decode("ascii")
    existing = next((p for p in CONFIG_PATHS if fs.read_text(p) is not None), None)
    if existing:
        return existing
    return CONFIG_PATHS[0] if distribution(fs).debian else CONFIG_PATHS[1]


@dataclass(frozen=True)
class ConfigError:
    """freshclam stops on its configuration before any network use."""

    path: str
    status: int  # freshclam's exit status
    message: str  # what it prints
    why: str  # what in the tree makes it so
    hint: str  # a command that fixes it


def config_error(fs: RootFS, argv: tuple[str, ...]) -> ConfigError | None:
    path = config_path(fs, argv)
    if fs.is_dir(path):
        config: FreshclamConfig | None = FreshclamConfig(path)  # read as an empty file
    else:
        text = fs.read_text(path)
        config = parse_config(text, path) if text is not None else None
    if config is None:
        debian = distribution(fs).debian
        return ConfigError(path, 2, f"ERROR: Can't open/parse the config file {path}",
                           f"{path} does not exist in this tree",
                           "dpkg-reconfigure clamav-freshclam (its postinst writes the file from the debconf "
                           "answers)" if debian else "zypper install --force clamav (restores the packaged file)")
    if config.broken:
        return ConfigError(path, 2, f"ERROR: Please edit the example config file {path}",
                           config.broken, f"sed -i '/^Example/d' {path}")
    private = config.values.get("PrivateMirror", [])
    if any(".clamav.net" in value.lower() for value, _ in private):
        value, line = next((v, n) for v, n in private if ".clamav.net" in v.lower())
        return ConfigError(path, 9, "ERROR: The PrivateMirror config option may not include servers under "
                           "*.clamav.net.", f"{config.where(line)}: PrivateMirror {value}",
                           f"sed -i 's/^PrivateMirror/DatabaseMirror/' {path}")
    if not private and not config.values.get("DatabaseMirror"):
        return ConfigError(path, 9, "ERROR: No DatabaseMirror or PrivateMirror servers set in freshclam config "
                           "file.", f"{path} names no DatabaseMirror or PrivateMirror",
                           f"echo 'DatabaseMirror database.clamav.net' >> {path}")
    return None


def server_url(value: str, default_scheme: str) -> str:
    """get_server_node(): add a scheme when there is none; db.XX.clamav.net -> https://database.clamav.net."""
    if value.startswith("db.") and ".clamav.net" in value:
        return "https://database.clamav.net"
    return value if "://" in value else f"{default_scheme}://{value}"


def _webcache_port(fs: RootFS) -> int:
    for line in (fs.read_text("/etc/services") or "").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and (fields[0] == "webcache" or "webcache" in fields[2:]):
            port, _, proto = fields[1].partition("/")
            if proto == "tcp" and port.isdigit():
                return int(port)
    return 8080


class FreshclamRule:
    """freshclam: TXT DNSDatabaseInfo, the (private) mirrors and custom URLs, the HTTP proxy."""

    tools = frozenset({"freshclam"})

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        if config_error(context.fs, command.argv) is not None:
            return []  # freshclam exits with a config error before it touches the network (deps/startup.py)
        path = config_path(context.fs, command.argv)
        config = parse_config(context.fs.read_text(path) or "", path)
        daemon = _flag(command.argv[1:], "d", "daemon")
        role = Role.RUNTIME if daemon else context.role(command)
        deps: list[Dependency] = []
        private = config.values.get("PrivateMirror", [])
        if any(".clamav.net" in value.lower() for value, _ in private):
            return []  # "The PrivateMirror config option may not include servers under *.clamav.net"
        mirrors = [(server_url(v, "http"), n) for v, n in private] or [
            (server_url(v, "https"), n) for v, n in config.values.get("DatabaseMirror", [])]
        if not mirrors:
            return []  # "No DatabaseMirror or PrivateMirror servers set": a config error, no network use
        dns = config.first("DNSDatabaseInfo")
        if not private and not _flag(command.argv[1:], "", "no-dns") and (
                dns is None or dns[0].lower() not in DNS_OFF):
            name, where = (dns[0], config.where(dns[1])) if dns else (DEFAULT_DNS, DEFAULT)
            deps.append(Dependency(DepKind.DNS, f"TXT {name}", role, where,
                                   note="on failure freshclam falls back to HTTP checks"))
        proxy = self._proxy(config, context.fs)
        timeouts = self._timeouts(config)
        custom = [(v, n) for v, n in config.values.get("DatabaseCustomURL", [])
                  if v.lower().startswith(("http://", "https://"))]
        for url, number in [*mirrors, *custom]:
            kind = DepKind.HTTPS if url.lower().startswith("https://") else DepKind.HTTP
            note = "; ".join(filter(None, [f"via proxy {proxy[0]}" if proxy else "", timeouts]))
            deps.append(Dependency(kind, url, role, config.where(number), note=note))
        if proxy:
            deps.append(Dependency(DepKind.TCP, proxy[0], role, proxy[1], note="HTTPProxyServer"))
        return unique(deps)

    @staticmethod
    def _proxy(config: FreshclamConfig, fs: RootFS) -> tuple[str, str] | None:
        server = config.first("HTTPProxyServer")
        if server is None:
            return None
        value = server[0]
        if value.lower().startswith("http://"):
            value = value[len("http://"):]
        value = value.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        parts = split_hostport(value)
        if parts is None:
            return None
        host, port_text = parts
        port_setting = config.first("HTTPProxyPort")
        # curl: a port inside the proxy string wins over CURLOPT_PROXYPORT.
        default = int(port_setting[0]) if port_setting and port_setting[0].isdigit() else _webcache_port(fs)
        port = parse_port(port_text, default)
        if port is None:
            return None
        return hostport(host, port), config.where(server[1])

    @staticmethod
    def _timeouts(config: FreshclamConfig) -> str:
        connect = config.first("ConnectTimeout")
        receive = config.first("ReceiveTimeout")
        connect_s = connect[0] if connect and connect[0].isdigit() else "30"
        receive_s = receive[0] if receive and receive[0].isdigit() else "60"
        receive_text = "no ReceiveTimeout" if receive_s == "0" else f"ReceiveTimeout {receive_s} s"
        return f"ConnectTimeout {connect_s} s, {receive_text}"
