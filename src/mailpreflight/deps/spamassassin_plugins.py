"""Network plugins of SpamAssassin (in spamd, spamassassin or amavisd): Razor2, Pyzor, DCC.

Facts:
- SpamAssassin reads the site config dir (Debian builds use /etc/spamassassin, openSUSE and upstream
  /etc/mail/spamassassin; spamd/spamassassin `--siteconfigpath` overrides): all `*.pre` files, then the
  rules, then the site `*.cf` files, each set in file-name order. Keys ignore case, `#` starts a comment
  (unless escaped), `loadplugin`/`tryplugin NAME [FILE]` load a plugin; a later `use_razor2`/`use_pyzor`/
  `use_dcc` wins (all default to 1). `ifplugin NAME` ... `endif` lines count only when NAME is loaded.
- `-L`/`--local` (spamd, spamassassin) and amavisd's `$sa_local_tests_only = 1` mean local tests only:
  no network plugin runs. amavisd loads SpamAssassin only when its config says so (deps/amavis.py: Debian's
  default `@bypass_spam_checks_maps = (1)` does not); where that cannot be read statically, the plugins'
  endpoints are only mentioned (not probed, not allowed) and a finding says why.
- Razor2 (razor-agents Razor2::Client::Config): home from `razor_config`'s directory or `razorhome`, else the
  user's ~/.razor; `razordiscovery` defaults to discovery.razor.cloudmark.com, TCP 2703; cached server
  lists servers.{discovery,nomination,catalogue}.lst, one server a line, re-discovered after
  `rediscovery_wait` (2 days).
- Pyzor: servers file `<homedir>/servers` (`pyzor_options --homedir DIR`, default ~/.pyzor), lines
  `host:port`, `#` comments; SpamAssassin 4's `pyzor_server_file` (Perl client) reads the same format.
  Default public.pyzor.org:24441, UDP.
- DCC: UDP 6277; the server list lives in the binary `<dcc_home>/map` (default /var/dcc), so we name the
  public DCC servers.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.amavis import TOOLS as AMAVIS_TOOLS
from mailpreflight.deps.amavis import Setting
from mailpreflight.deps.amavis import read_config as read_amavis
from mailpreflight.deps.base import RuleContext, kept
from mailpreflight.deps.urls import (
    dns_a_deps,
    hostport,
    parse_port,
    split_hostport,
    unique,
    user_home,
)
from mailpreflight.model import Confidence, Dependency, DepKind, Finding, FoundCommand, Role, Severity
from mailpreflight.units.distro import distribution

TOOLS = frozenset({"spamd", "spamassassin", "amavisd", "amavisd-new", "amavis"})
PLUGIN_PREFIX = "mail::spamassassin::plugin::"
RAZOR_PORT, PYZOR_PORT, DCC_PORT = 2703, 24441, 6277
RAZOR_DISCOVERY = "discovery.razor.cloudmark.com"
RAZOR_LISTS = ("listfile_discovery", "listfile_nomination", "listfile_catalogue")
# Homes of the users that run SpamAssassin on Debian (amavis, debian-spamd) and openSUSE (vscan), and root.
RAZOR_HOMES = ("/etc/razor", "/var/lib/amavis/.razor", "/var/spool/amavis/.razor", "/var/lib/spamassassin/.razor",
               "/root/.razor")
PYZOR_FILES = ("/etc/pyzor/servers", "/root/.pyzor/servers", "/var/lib/spamassassin/.pyzor/servers",
               "/var/lib/amavis/.pyzor/servers", "/var/spool/amavis/.pyzor/servers")
PYZOR_DEFAULT = ("public.pyzor.org", PYZOR_PORT)
DCC_SERVERS = "dcc.dcc-servers.net"
_SWITCHES = {"Razor2": "use_razor2", "Pyzor": "use_pyzor", "DCC": "use_dcc"}
_SETTINGS = frozenset({"razor_config", "pyzor_options", "pyzor_server_file", "dcc_home"})


@dataclass
class SiteConfig:
    """What the site config says about the network plugins."""

    directory: str
    plugins: dict[str, str] = field(default_factory=dict)  # "Razor2" -> "file:line" of loadplugin
    switches: dict[str, tuple[bool, str]] = field(default_factory=dict)  # use_razor2 -> (on, "file:line")
    settings: dict[str, tuple[str, str]] = field(default_factory=dict)  # razor_config -> (value, "file:line")

    def enabled(self, plugin: str) -> bool:
        return plugin in self.plugins and self.switches.get(_SWITCHES[plugin], (True, ""))[0]


def _bool(value: str) -> bool | None:
    lowered = value.lower()
    return True if lowered in ("1", "yes") else False if lowered in ("0", "no") else None


def read_site_config(fs: RootFS, directory: str) -> SiteConfig:
    """The site config of `directory`, read once per RootFS (every spamd/amavis unit of a tree reads the same);
    the result is shared: read it, do not change it."""
    return kept(fs, "read_site_config", directory, lambda: _read_site_config(fs, directory))


def _read_site_config(fs: RootFS, directory: str) -> SiteConfig:
    config = SiteConfig(directory)
    names = fs.listdir(directory)
    for name in [n for n in names if n.endswith(".pre")] + [n for n in names if n.endswith(".cf")]:
        path = posixpath.join(directory, name)
        _read_file(fs.read_text(path) or "", path, config)
    return config


def _read_file(text: str, path: str, config: SiteConfig) -> None:
    skipping: list[bool] = []  # one entry per open if/ifplugin: True = its lines are ignored
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(?<!\\)#.*$", "", raw).strip()
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip()
        if key == "ifplugin":
            skipping.append(_short(value) not in config.plugins)
            continue
        if key == "if":
            skipping.append(False)  # an expression we do not evaluate: assume it holds
            continue
        if key == "else" and skipping:
            skipping[-1] = not skipping[-1]
            continue
        if key == "endif":
            if skipping:
                skipping.pop()
            continue
        if not key or any(skipping):
            continue
        where = f"{path}:{number}"
        if key in ("loadplugin", "tryplugin") and value:
            config.plugins.setdefault(_short(value.split()[0]), where)
        elif key in _SWITCHES.values() and _bool(value) is not None:
            config.switches[key] = (bool(_bool(value)), where)
        elif key in _SETTINGS and value:
            config.settings[key] = (value, where)


def _short(plugin: str) -> str:
    lowered = plugin.lower()
    name = plugin[len(PLUGIN_PREFIX):] if lowered.startswith(PLUGIN_PREFIX) else plugin
    return {"razor2": "Razor2", "pyzor": "Pyzor", "dcc": "DCC"}.get(name.lower(), name)


def site_dir(fs: RootFS, commands: Sequence[FoundCommand]) -> str | None:
    for command in commands:
        for index, word in enumerate(command.argv):
            if word.startswith("--siteconfigpath="):
                return word.split("=", 1)[1]
            if word == "--siteconfigpath" and index + 1 < len(command.argv):
                return command.argv[index + 1]
    return fs.memo(("site_dir",), lambda: _default_site_dir(fs))


def _default_site_dir(fs: RootFS) -> str | None:
    debian = distribution(fs).debian
    order = ("/etc/spamassassin", "/etc/mail/spamassassin") if debian else (
        "/etc/mail/spamassassin", "/etc/spamassassin")
    return next((d for d in order if fs.is_dir(d)), None)


def _local_only(command: FoundCommand) -> bool:
    """spamd/spamassassin with -L/--local: no network test runs."""
    words = [w for word in command.argv[1:] for w in word.split()]
    return command.tool in ("spamd", "spamassassin") and ("--local" in words or any(
        w.startswith("-") and not w.startswith("--") and "L" in w[1:] for w in words))


def _network_tests(fs: RootFS, command: FoundCommand) -> Setting:
    """Does this command run SpamAssassin's network tests? amavisd: as its config says (possibly unknown)."""
    if command.tool in AMAVIS_TOOLS:
        return read_amavis(fs, command).network_tests
    return Setting(not _local_only(command), str(command.source))


class SpamAssassinPluginsRule:
    """Razor2, Pyzor and DCC endpoints of a unit that runs SpamAssassin (UnitRule)."""

    tools = TOOLS

    def dependencies(self, commands: list[FoundCommand], context: RuleContext) -> list[Dependency]:
        checked = [(c, _network_tests(context.fs, c)) for c in commands if c.tool in TOOLS]
        relevant = [c for c, setting in checked if setting.value is not False]
        settings = [setting for _, setting in checked if setting.value is not False]
        if not relevant:
            return []  # none runs SpamAssassin with network tests
        directory = site_dir(context.fs, relevant)
        if directory is None:
            return []
        config = read_site_config(context.fs, directory)
        homes = [h for h in (user_home(context.fs, context.user_of(c)) for c in relevant) if h]
        deps: list[Dependency] = []
        fs = context.fs  # what the plugins' files say is the same for every unit with these homes: read once
        if config.enabled("Razor2"):
            deps.extend(kept(fs, "_razor", (directory, tuple(homes)), lambda: _razor(fs, config, homes)))
        if config.enabled("Pyzor"):
            deps.extend(kept(fs, "_pyzor", (directory, tuple(homes)), lambda: _pyzor(fs, config, homes)))
        if config.enabled("DCC"):
            home = config.settings.get("dcc_home", ("/var/dcc", ""))[0]
            deps.append(Dependency(DepKind.UDP, hostport(DCC_SERVERS, DCC_PORT), Role.RUNTIME, "dcc default",
                                   note=f"dcc servers (from {home}/map); DCC plugin at {config.plugins['DCC']}"))
        deps = unique(deps)
        deps += dns_a_deps(deps)
        unknown = next((s for s in settings if s.value is None), None)
        if unknown is not None and not any(s.value for s in settings):
            # whether amavisd runs SpamAssassin at all is not known: mentioned, never probed nor allowed
            note = f"only if amavisd runs SpamAssassin, which its config does not say statically ({unknown.where})"
            deps = [replace(d, confidence=Confidence.LOW, note=f"{note}; {d.note}" if d.note else note) for d in deps]
        return deps


def amavis_findings(unit_id: str, fs: RootFS, commands: Sequence[FoundCommand]) -> list[Finding]:
    """MP122 when whether amavisd runs SpamAssassin (with network tests) cannot be read from its config."""
    found = []
    for command in commands:
        if command.tool not in AMAVIS_TOOLS:
            continue
        setting = read_amavis(fs, command).network_tests
        if setting.value is None:
            path, _, line = setting.where.rpartition(":")
            found.append(Finding(
                "MP122", Severity.WARNING, unit_id,
                f"whether amavisd ({command.source}) runs SpamAssassin's network tests (Razor, Pyzor, DCC) cannot "
                f"be read statically: {setting.why} ({setting.where}); their endpoints are listed as mentioned, "
                "not probed and not in the firewall list",
                f"read the assignment: sed -n '{line},+5p' {path}" if line.isdigit() else
                "give @bypass_spam_checks_maps a plain value in /etc/amavis/conf.d/50-user",
                (setting.where,)))
    return found


def _kv_file(text: str) -> dict[str, tuple[str, int]]:
    """razor-agent.conf: `key = value` lines, `#` comment lines."""
    result: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.strip() and value.strip():
            result[key.strip()] = (value.strip(), number)
    return result


def _razor(fs: RootFS, config: SiteConfig, homes: list[str]) -> list[Dependency]:
    plugin = f"Razor2 plugin at {config.plugins['Razor2']}"
    conf_path: str | None = None
    home: str | None = None
    if "razor_config" in config.settings:
        conf_path = config.settings["razor_config"][0]
        home = posixpath.dirname(conf_path)
    else:
        for candidate in [posixpath.join(h, ".razor") for h in homes] + list(RAZOR_HOMES):
            if fs.is_dir(candidate):
                home = candidate
                conf_path = posixpath.join(candidate, "razor-agent.conf")
                break
    conf = _kv_file(fs.read_text(conf_path) or "") if conf_path else {}
    if "razorhome" in conf:
        home = conf["razorhome"][0]
    discovery = conf.get("razordiscovery")
    deps = [Dependency(
        DepKind.TCP, hostport(discovery[0] if discovery else RAZOR_DISCOVERY, RAZOR_PORT), Role.RUNTIME,
        f"{conf_path}:{discovery[1]}" if discovery else "razor default",
        note=f"{plugin}; asked when the cached server lists are missing or older than rediscovery_wait")]
    for key in RAZOR_LISTS if home else ():
        name = conf.get(key, (f"servers.{key.split('_')[1]}.lst", 0))[0]
        path = name if name.startswith("/") else posixpath.join(home or "", name)
        for number, line in enumerate((fs.read_text(path) or "").splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            parts = split_hostport(entry) if entry else None
            port = parse_port(parts[1], RAZOR_PORT) if parts else None
            if parts and port:
                deps.append(Dependency(DepKind.TCP, hostport(parts[0], port), Role.RUNTIME, f"{path}:{number}",
                                       note=f"{plugin}; cached razor server list"))
    return deps


def _pyzor(fs: RootFS, config: SiteConfig, homes: list[str]) -> list[Dependency]:
    plugin = f"Pyzor plugin at {config.plugins['Pyzor']}"
    candidates: list[str] = []
    if "pyzor_server_file" in config.settings:
        candidates.append(config.settings["pyzor_server_file"][0])
    options = config.settings.get("pyzor_options", ("", ""))[0].split()
    for index, word in enumerate(options):
        if word.startswith("--homedir="):
            candidates.append(posixpath.join(word.split("=", 1)[1], "servers"))
        elif word == "--homedir" and index + 1 < len(options):
            candidates.append(posixpath.join(options[index + 1], "servers"))
    candidates += [posixpath.join(h, ".pyzor", "servers") for h in homes] + list(PYZOR_FILES)
    for path in candidates:
        text = fs.read_text(path) if path.startswith("/") else None
        if text is None:
            continue
        deps: list[Dependency] = []
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.strip()
            parts = split_hostport(entry) if entry and not entry.startswith("#") else None
            port = parse_port(parts[1], PYZOR_PORT) if parts else None
            if parts and port:
                deps.append(Dependency(DepKind.UDP, hostport(parts[0], port), Role.RUNTIME, f"{path}:{number}",
                                       note=plugin))
        if deps:
            return deps
    return [Dependency(DepKind.UDP, hostport(*PYZOR_DEFAULT), Role.RUNTIME, "pyzor default", note=plugin)]
