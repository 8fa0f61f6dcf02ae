"""Dependency rules for freshclam, SpamAssassin's network plugins, fetchmail, Postfix and URL fetchers,
read from small guest roots under tests/corpus/deps/ (and the example root under units/examples/)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import CORPUS, make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import RuleContext, command_role
from mailpreflight.deps.fetchmail import FetchmailRule, parse_argv, parse_rc, tokenize
from mailpreflight.deps.freshclam import FreshclamRule, parse_config, server_url
from mailpreflight.deps.postfix import PostfixRule, destination_deps, expand, read_main_cf
from mailpreflight.deps.spamassassin_plugins import SpamAssassinPluginsRule, site_dir
from mailpreflight.deps.urls import (
    UnknownCommandRule,
    UrlFetchRule,
    hostport_words,
    split_hostport,
)
from mailpreflight.model import Confidence, Dependency, DepKind, FoundCommand, Role, Source
from mailpreflight.units.loader import Unit, UnitLoader, exec_environment, expand_command

DEPS = CORPUS / "deps"
EXAMPLE = Path(__file__).resolve().parents[2] / "units" / "examples" / "opensuse-leap15-mail"
DEBIAN = 'ID=debian\nVERSION_ID="12"\n'
SUSE = 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n'


def root_of(case: str | Path) -> Path:
    return case if isinstance(case, Path) else DEPS / case / "root"


@dataclass(frozen=True)
class UnitContext(RuleContext):
    """What the rules get, and the unit it was made of (the tests run its Exec lines)."""

    unit: Unit = field(kw_only=True)


def context(case: str | Path, unit: str) -> UnitContext:
    fs = RootFS(str(root_of(case)))
    loaded = UnitLoader(fs).load(unit)
    made = RuleContext.of(loaded, fs)
    return UnitContext(made.fs, made.service_type, made.user, unit=loaded)


def command(argv: Sequence[str], key: str = "ExecStart", env: Mapping[str, str] | None = None,
            user: str | None = None, source: Source | None = None) -> FoundCommand:
    return FoundCommand(argv[0].rsplit("/", 1)[-1], tuple(argv), key, source or Source("/etc/test.service", 7),
                        False, env=dict(env or {}), user=user)


def from_unit(ctx: UnitContext, key: str, index: int = 0, user: str | None = None) -> FoundCommand:
    """The unit's own Exec line, with the environment systemd would give it."""
    exec_command = ctx.unit.exec[key][index]
    env = dict(exec_environment(ctx.unit, ctx.fs).variables)
    argv = expand_command(exec_command, env.items())
    return command(argv, key, env, user, exec_command.source)


def line(case: str | Path, guest: str, needle: str) -> str:
    """`guest:N` of the first line of a fixture file that contains needle."""
    text = (root_of(case) / guest.lstrip("/")).read_text(encoding="utf-8")
    number = next(n for n, text_line in enumerate(text.splitlines(), 1) if needle in text_line)
    return f"{guest}:{number}"


def by_target(deps: list[Dependency]) -> dict[str, Dependency]:
    return {f"{d.kind.value} {d.target}": d for d in deps}


def tmp_context(tmp_path: Path, tree: dict[str, str], unit: str = "t.service",
                service: str = "[Service]\nExecStart=/bin/true\n") -> UnitContext:
    make_tree(tmp_path, {f"/etc/systemd/system/{unit}": service, **tree})
    return context(tmp_path, unit)


# ----------------------------------------------------------------------------------------------- shared

def test_command_role(tmp_path: Path) -> None:
    simple = tmp_context(tmp_path / "a", {})
    oneshot = tmp_context(tmp_path / "b", {}, service="[Service]\nType=oneshot\nExecStart=/bin/true\n")
    assert command_role(command(["/bin/x"], "ExecStart"), simple.service_type) is Role.RUNTIME
    assert command_role(command(["/bin/x"], "ExecStart"), oneshot.service_type) is Role.START
    for key in ("ExecCondition", "ExecStartPre", "ExecStartPost"):
        assert command_role(command(["/bin/x"], key), simple.service_type) is Role.START


def test_rule_context_of_a_unit(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {}, service="[Service]\nUser=mail\nUser=filter\nExecStart=/bin/true\n")
    assert (ctx.service_type, ctx.user) == ("simple", "filter")
    assert ctx.user_of(command(["/bin/x"])) == "filter"
    assert ctx.user_of(command(["/bin/x"], user="root")) == "root"  # runuser, sudo, …: the command says
    assert ctx.role(command(["/bin/x"], "ExecStart")) is Role.RUNTIME
    # what guard has: the tree only; an ExecStartPre is start work whatever the unit's type
    bare = RuleContext(ctx.fs)
    assert (bare.service_type, bare.user_of(command(["/bin/x"]))) == ("", None)
    assert bare.role(command(["/bin/x"], "ExecStartPre")) is Role.START


def test_split_hostport() -> None:
    assert split_hostport("mail.example.com") == ("mail.example.com", None)
    assert split_hostport("mail.example.com:25") == ("mail.example.com", "25")
    assert split_hostport("[2001:db8::1]:25") == ("2001:db8::1", "25")
    assert split_hostport("[relay.example.net]") == ("relay.example.net", None)
    assert split_hostport("2001:db8::1") == ("2001:db8::1", None)
    assert split_hostport("not a host") is None
    assert split_hostport("host:") is None
    assert split_hostport("[unclosed:25") is None


# ------------------------------------------------------------------------------------------- freshclam

def test_freshclam_debian_daemon() -> None:
    case = "debian-freshclam"
    ctx = context(case, "clamav-freshclam.service")
    deps = FreshclamRule().dependencies(from_unit(ctx, "ExecStart"), ctx)
    conf = "/etc/clamav/freshclam.conf"
    assert [(d.kind, d.target) for d in deps] == [
        (DepKind.DNS, "TXT current.cvd.clamav.net"), (DepKind.HTTPS, "https://database.clamav.net")]
    assert all(d.role is Role.RUNTIME and d.confidence is Confidence.HIGH for d in deps)  # -d: daemon
    assert deps[0].learned_from == line(case, conf, "DNSDatabaseInfo")
    assert "falls back to HTTP" in deps[0].note
    # db.local.clamav.net is rewritten to the CDN name, so both mirror lines give one dependency.
    assert deps[1].learned_from == line(case, conf, "db.local.clamav.net")
    assert deps[1].note == "ConnectTimeout 30 s, no ReceiveTimeout"


def test_freshclam_server_url() -> None:
    assert server_url("db.de.clamav.net", "https") == "https://database.clamav.net"
    assert server_url("database.clamav.net", "https") == "https://database.clamav.net"
    assert server_url("mirror.lan", "http") == "http://mirror.lan"
    assert server_url("https://mirror.lan:8443", "http") == "https://mirror.lan:8443"


def test_freshclam_private_mirror_oneshot() -> None:
    case = "debian-freshclam-private"
    ctx = context(case, "clamav-update-once.service")
    deps = FreshclamRule().dependencies(from_unit(ctx, "ExecStart"), ctx)
    conf = "/etc/clamav/freshclam.conf"
    # PrivateMirror: no TXT check, DatabaseMirror ignored, http:// by default, inline comment stripped.
    assert [(d.kind, d.target) for d in deps] == [
        (DepKind.HTTP, "http://clamav-mirror.corp.example"),
        (DepKind.HTTPS, "https://clamav-backup.corp.example:8443")]
    assert all(d.role is Role.START for d in deps)  # Type=oneshot ExecStart
    assert deps[1].learned_from == line(case, conf, "clamav-backup")
    assert deps[0].note == "ConnectTimeout 10 s, ReceiveTimeout 60 s"


def test_freshclam_proxy_in_execstartpre() -> None:
    case = "debian-freshclam-proxy"
    ctx = context(case, "clamav-daemon.service")
    found = from_unit(ctx, "ExecStartPre")
    assert found.argv[1] == "--config-file=/etc/clamav/freshclam-proxy.conf"
    deps = by_target(FreshclamRule().dependencies(found, ctx))
    conf = "/etc/clamav/freshclam-proxy.conf"
    assert set(deps) == {"dns TXT current.cvd.clamav.net", "https https://database.clamav.net",
                         "tcp proxy.corp.example:3128"}
    assert all(d.role is Role.START for d in deps.values())
    mirror = deps["https https://database.clamav.net"]
    assert mirror.note == "via proxy proxy.corp.example:3128; ConnectTimeout 15 s, ReceiveTimeout 90 s"
    assert deps["tcp proxy.corp.example:3128"].learned_from == line(case, conf, "HTTPProxyServer")
    # --config-file FILE (separate word) works the same way.
    split = command(["/usr/bin/freshclam", "--config-file", conf], "ExecStartPre")
    assert set(by_target(FreshclamRule().dependencies(split, ctx))) == set(deps)


def test_freshclam_opensuse_defaults() -> None:
    case = "opensuse-freshclam"
    ctx = context(case, "freshclam.service")
    deps = FreshclamRule().dependencies(from_unit(ctx, "ExecStart"), ctx)
    assert [(d.target, d.learned_from) for d in deps] == [
        ("TXT current.cvd.clamav.net", "freshclam default"),  # commented out: the built-in name
        ("https://database.clamav.net", line(case, "/etc/freshclam.conf", "DatabaseMirror"))]
    assert deps[1].note == "ConnectTimeout 30 s, ReceiveTimeout 60 s"
    assert all(d.role is Role.RUNTIME for d in deps)


def test_freshclam_without_daemon_in_simple_execstart_is_runtime() -> None:
    ctx = context("debian-freshclam", "clamav-freshclam.service")
    deps = FreshclamRule().dependencies(command(["/usr/bin/freshclam", "--quiet"]), ctx)
    assert {d.role for d in deps} == {Role.RUNTIME}
    pre = FreshclamRule().dependencies(command(["/usr/bin/freshclam", "--quiet"], "ExecCondition"), ctx)
    assert {d.role for d in pre} == {Role.START}


@pytest.mark.parametrize(("conf", "argv", "expected"), [
    ("DNSDatabaseInfo no\nDatabaseMirror database.clamav.net\n", (), {"https https://database.clamav.net"}),
    ("DNSDatabaseInfo current.cvd.clamav.net\nDatabaseMirror database.clamav.net\n", ("--no-dns",),
     {"https https://database.clamav.net"}),
    # first value of a single-valued option wins; names are case-sensitive
    ("DNSDatabaseInfo first.example\nDNSDatabaseInfo second.example\ndnsdatabaseinfo no\n"
     "DatabaseMirror database.clamav.net\n", (), {"dns TXT first.example", "https https://database.clamav.net"}),
    # quoted argument, custom URLs (http(s) only), short lines ignored
    ('x\nDatabaseMirror "mirror.example.net"\nDatabaseCustomURL http://sigs.example.net/x.ndb\n'
     "DatabaseCustomURL file:///srv/local.ndb\n", (),
     {"dns TXT current.cvd.clamav.net", "https https://mirror.example.net", "http http://sigs.example.net/x.ndb"}),
    # unterminated quote: the line is skipped
    ('DatabaseMirror "broken\nDatabaseMirror database.clamav.net\n', (),
     {"dns TXT current.cvd.clamav.net", "https https://database.clamav.net"}),
])
def test_freshclam_config_variants(tmp_path: Path, conf: str, argv: tuple[str, ...], expected: set[str]) -> None:
    ctx = tmp_context(tmp_path, {"/etc/os-release": DEBIAN, "/etc/clamav/freshclam.conf": conf})
    deps = FreshclamRule().dependencies(command(["/usr/bin/freshclam", *argv]), ctx)
    assert set(by_target(deps)) == expected


@pytest.mark.parametrize(("tree", "argv"), [
    ({"/etc/clamav/freshclam.conf": "Example\nDatabaseMirror database.clamav.net\n"}, ()),
    ({"/etc/clamav/freshclam.conf": "DNSDatabaseInfo current.cvd.clamav.net\n"}, ()),  # no mirror at all
    ({"/etc/clamav/freshclam.conf": "PrivateMirror db.de.clamav.net\n"}, ()),
    ({"/etc/clamav/freshclam.conf": "DatabaseMirror database.clamav.net\n"}, ("--config-file=/etc/missing.conf",)),
    ({}, ()),
])
def test_freshclam_refused_configs_give_nothing(tmp_path: Path, tree: dict[str, str],
                                                argv: tuple[str, ...]) -> None:
    ctx = tmp_context(tmp_path, tree)
    assert FreshclamRule().dependencies(command(["/usr/bin/freshclam", *argv]), ctx) == []


@pytest.mark.parametrize(("proxy", "services", "expected"), [
    ("HTTPProxyServer proxy.lan\n", "webcache\t3128/tcp\t\t# WWW caching service\n", "tcp proxy.lan:3128"),
    ("HTTPProxyServer proxy.lan\n", "", "tcp proxy.lan:8080"),
    ("HTTPProxyServer proxy.lan:8888\nHTTPProxyPort 3128\n", "", "tcp proxy.lan:8888"),
    ("HTTPProxyServer http://[2001:db8::8]\nHTTPProxyPort 3128\n", "", "tcp [2001:db8::8]:3128"),
])
def test_freshclam_proxy_port(tmp_path: Path, proxy: str, services: str, expected: str) -> None:
    ctx = tmp_context(tmp_path, {"/etc/freshclam.conf": "DatabaseMirror database.clamav.net\n" + proxy,
                                 "/etc/services": services})
    deps = by_target(FreshclamRule().dependencies(command(["/usr/bin/freshclam"]), ctx))
    assert expected in deps
    assert deps["https https://database.clamav.net"].note.startswith(f"via proxy {expected[4:]}")


def test_freshclam_parse_config_quirks() -> None:
    parsed = parse_config('  DatabaseMirror a.example # comment\n\tConnectTimeout "20"\n', "/f")
    assert parsed.values["DatabaseMirror"] == [("a.example", 1)]
    assert parsed.first("ConnectTimeout") == ("20", 2)
    assert parse_config("# x\nExampleLine\n", "/f").broken == "/f:2: the 'Example' line must be removed"
    assert "DatabaseMirror" not in parse_config("DatabaseMirror # nothing but a comment\n", "/f").values


@pytest.mark.parametrize("proxy", ["HTTPProxyServer bad host!\n", "HTTPProxyServer proxy.lan:http\n"])
def test_freshclam_unusable_proxy_is_left_out(tmp_path: Path, proxy: str) -> None:
    ctx = tmp_context(tmp_path, {"/etc/freshclam.conf": "DatabaseMirror database.clamav.net\n" + proxy})
    deps = FreshclamRule().dependencies(command(["/usr/bin/freshclam"]), ctx)
    assert [d.target for d in deps] == ["TXT current.cvd.clamav.net", "https://database.clamav.net"]
    assert "proxy" not in deps[1].note


# ------------------------------------------------------------------------------ SpamAssassin plugins

def test_spamd_razor_and_pyzor_debian() -> None:
    case = "debian-spamd-plugins"
    ctx = context(case, "spamd.service")
    spamd = from_unit(ctx, "ExecStart")
    assert spamd.argv[:3] == ("/usr/sbin/spamd", "--pidfile=/run/spamd.pid", "--create-prefs")
    deps = by_target(SpamAssassinPluginsRule().dependencies([spamd], ctx))
    home = "/var/lib/spamassassin/.razor"
    assert set(deps) == {
        "tcp discovery.razor.cloudmark.com:2703", "tcp c301.cloudmark.com:2703", "tcp c302.cloudmark.com:2703",
        "tcp n001.cloudmark.com:2703", "udp public.pyzor.org:24441",
        "dns A discovery.razor.cloudmark.com", "dns A c301.cloudmark.com", "dns A c302.cloudmark.com",
        "dns A n001.cloudmark.com", "dns A public.pyzor.org"}
    assert all(d.role is Role.RUNTIME for d in deps.values())
    discovery = deps["tcp discovery.razor.cloudmark.com:2703"]
    assert discovery.learned_from == line(case, f"{home}/razor-agent.conf", "razordiscovery")
    assert line(case, "/etc/spamassassin/v310.pre", "Plugin::Razor2") in discovery.note
    assert deps["tcp c302.cloudmark.com:2703"].learned_from == f"{home}/servers.catalogue.lst:2"
    assert deps["udp public.pyzor.org:24441"].learned_from == "/var/lib/spamassassin/.pyzor/servers:2"
    assert deps["dns A c302.cloudmark.com"].learned_from == f"{home}/servers.catalogue.lst:2"
    assert not any("dcc" in key for key in deps)  # #loadplugin ...DCC does not count


def test_spamd_use_pyzor_off_dcc_on() -> None:
    case = "debian-spamd-nopyzor"
    ctx = context(case, "spamd.service")
    deps = by_target(SpamAssassinPluginsRule().dependencies([from_unit(ctx, "ExecStart")], ctx))
    # use_pyzor 0 drops Pyzor; use_razor2 0 sits in an ifplugin block of a plugin that is not loaded.
    assert set(deps) == {"tcp discovery.razor.cloudmark.com:2703", "udp dcc.dcc-servers.net:6277",
                         "dns A discovery.razor.cloudmark.com", "dns A dcc.dcc-servers.net"}
    assert deps["tcp discovery.razor.cloudmark.com:2703"].learned_from == "razor default"
    dcc = deps["udp dcc.dcc-servers.net:6277"]
    assert dcc.learned_from == "dcc default"
    assert "dcc servers (from /var/lib/dcc/map)" in dcc.note


def test_amavis_pyzor_homedir_opensuse() -> None:
    case = "opensuse-amavis-plugins"
    ctx = context(case, "amavis.service")
    deps = SpamAssassinPluginsRule().dependencies(
        [from_unit(ctx, "ExecStartPre"), from_unit(ctx, "ExecStart")], ctx)
    servers = "/var/spool/amavis/.pyzor/servers"
    assert [(d.kind, d.target, d.learned_from) for d in deps if d.kind is not DepKind.DNS] == [
        (DepKind.TCP, "discovery.razor.cloudmark.com:2703", "razor default"),
        (DepKind.UDP, "pyzor.corp.example:24441", line(case, servers, "pyzor.corp.example")),
        (DepKind.UDP, "public.pyzor.org:24441", line(case, servers, "public.pyzor.org"))]  # junk line skipped
    assert "/etc/mail/spamassassin/v310.pre" in deps[1].note
    assert [d.target for d in deps if d.kind is DepKind.DNS] == [
        "A discovery.razor.cloudmark.com", "A pyzor.corp.example", "A public.pyzor.org"]


def _sa_tree(local_cf: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    pre = "loadplugin Mail::SpamAssassin::Plugin::Razor2\nloadplugin Mail::SpamAssassin::Plugin::Pyzor\n"
    return {"/etc/os-release": DEBIAN, "/etc/spamassassin/v310.pre": pre, "/etc/spamassassin/local.cf": local_cf,
            **(extra or {})}


@pytest.mark.parametrize(("local_cf", "extra", "expected"), [
    ("USE_RAZOR2 no\n", None, {"udp public.pyzor.org:24441", "dns A public.pyzor.org"}),
    ("ifplugin Mail::SpamAssassin::Plugin::Razor2\n  use_razor2 0  # off\nelse\n  use_pyzor 0\nendif\n", None,
     {"udp public.pyzor.org:24441", "dns A public.pyzor.org"}),
    ("use_razor2 0\nuse_pyzor 0\ntryplugin Mail::SpamAssassin::Plugin::DCC\n", None,
     {"udp dcc.dcc-servers.net:6277", "dns A dcc.dcc-servers.net"}),
    ("use_razor2 0\npyzor_server_file /etc/mail/pyzor-servers\n",
     {"/etc/mail/pyzor-servers": "# perl client list\n192.0.2.7:24441\n"}, {"udp 192.0.2.7:24441"}),
    ("use_pyzor 0\nrazor_config /etc/razor/razor-agent.conf\n",
     {"/etc/razor/razor-agent.conf": "razordiscovery = razor.corp.example\n",
      "/etc/razor/servers.catalogue.lst": "c9.corp.example\n"},
     {"tcp razor.corp.example:2703", "tcp c9.corp.example:2703", "dns A razor.corp.example",
      "dns A c9.corp.example"}),
    ("if (version >= 4.000000)\n  use_pyzor 0\nendif\npyzor_options --homedir=/srv/pyzor\n"
     "razor_config /etc/razor/razor-agent.conf\n",
     {"/etc/razor/razor-agent.conf": "razorhome = /srv/razor\n", "/srv/razor/servers.catalogue.lst": "c7.example\n"},
     {"tcp discovery.razor.cloudmark.com:2703", "tcp c7.example:2703", "dns A discovery.razor.cloudmark.com",
      "dns A c7.example"}),
    ("use_razor2 0\npyzor_options --homedir=/srv/pyzor\n", {"/srv/pyzor/servers": "[2001:db8::7]:24441\n"},
     {"udp [2001:db8::7]:24441"}),
])
def test_spamassassin_settings(tmp_path: Path, local_cf: str, extra: dict[str, str] | None,
                               expected: set[str]) -> None:
    ctx = tmp_context(tmp_path, _sa_tree(local_cf, extra))
    deps = SpamAssassinPluginsRule().dependencies([command(["/usr/sbin/spamd"])], ctx)
    assert set(by_target(deps)) == expected


def test_pyzor_default_learned_from(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, _sa_tree("use_razor2 0\n"))
    deps = SpamAssassinPluginsRule().dependencies([command(["/usr/sbin/spamd"])], ctx)
    assert [(d.target, d.learned_from) for d in deps] == [("public.pyzor.org:24441", "pyzor default"),
                                                          ("A public.pyzor.org", "pyzor default")]


@pytest.mark.parametrize("argv", [["/usr/sbin/spamd", "-d", "-c", "-L"], ["/usr/sbin/spamd", "--local"],
                                  ["/usr/sbin/spamd", "-d -c -L"], ["/usr/bin/spamassassin", "-L"]])
def test_local_tests_only_means_no_plugin_network(tmp_path: Path, argv: list[str]) -> None:
    ctx = tmp_context(tmp_path, _sa_tree(""))
    assert SpamAssassinPluginsRule().dependencies([command(argv)], ctx) == []


def test_amavis_sa_local_tests_only(tmp_path: Path) -> None:
    tree = _sa_tree("", {"/etc/amavis/conf.d/20-debian_defaults": "$sa_local_tests_only = 0;\n",
                         "/etc/amavis/conf.d/50-user": "$sa_local_tests_only = 1;   # no network tests\n"})
    ctx = tmp_context(tmp_path, tree)
    assert SpamAssassinPluginsRule().dependencies([command(["/usr/sbin/amavisd", "foreground"])], ctx) == []
    # spamd is not amavis: its own switches decide
    assert SpamAssassinPluginsRule().dependencies([command(["/usr/sbin/spamd"])], ctx) != []


def test_plugins_rule_ignores_other_units_and_missing_config(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path / "a", _sa_tree(""))
    assert SpamAssassinPluginsRule().dependencies([command(["/usr/bin/freshclam"])], ctx) == []
    empty = tmp_context(tmp_path / "b", {})
    assert SpamAssassinPluginsRule().dependencies([command(["/usr/sbin/spamd"])], empty) == []


def test_site_dir_choice(tmp_path: Path) -> None:
    both = {"/etc/spamassassin/local.cf": "", "/etc/mail/spamassassin/local.cf": ""}
    debian = tmp_context(tmp_path / "d", {"/etc/os-release": DEBIAN, **both})
    suse = tmp_context(tmp_path / "s", {"/etc/os-release": SUSE, **both})
    assert site_dir(debian.fs, [command(["/usr/sbin/spamd"])]) == "/etc/spamassassin"
    assert site_dir(suse.fs, [command(["/usr/sbin/spamd"])]) == "/etc/mail/spamassassin"
    assert site_dir(suse.fs, [command(["/usr/sbin/spamd", "--siteconfigpath=/opt/sa"])]) == "/opt/sa"
    assert site_dir(suse.fs, [command(["/usr/sbin/spamd", "--siteconfigpath", "/opt/sa2"])]) == "/opt/sa2"


# --------------------------------------------------------------------------------------------- fetchmail

def test_fetchmail_daemon_opensuse() -> None:
    case = "opensuse-fetchmail-daemon"
    ctx = context(case, "fetchmail.service")
    env = dict(exec_environment(ctx.unit, ctx.fs).variables)
    assert env["FETCHMAIL_RC_PATH"] == "/etc/fetchmailrc"
    # what the wrapper runs (guest scripts are never executed; the discoverer hands us the command)
    found = command(["/usr/bin/fetchmail", "--nodetach"], env=env, user="fetchmail")
    deps = FetchmailRule().dependencies(found, ctx)
    rc = "/etc/fetchmailrc"
    assert [(d.target, d.learned_from) for d in deps] == [
        ("imap.example.com:993", line(case, rc, "poll imap.example.com")),  # defaults: imap + ssl
        ("pop.example.org:1110", line(case, rc, "server pop.example.org")),  # service 1110, no ssl
        ("gw.example.net:995", line(case, rc, "via gw.example.net"))]  # the gateway, not the label
    assert all(d.kind is DepKind.TCP and d.role is Role.RUNTIME for d in deps)  # set daemon 300
    assert deps[2].note == "pop3 over TLS; poll branch-office via gw.example.net"


def test_fetchmail_named_on_command_line_polls_skip_entries() -> None:
    ctx = context("opensuse-fetchmail-daemon", "fetchmail.service")
    found = command(["/usr/bin/fetchmail", "-f", "/etc/fetchmailrc", "old.example.net", "other.example.org"],
                    "ExecStartPre")
    deps = FetchmailRule().dependencies(found, ctx)
    assert [(d.target, d.learned_from) for d in deps] == [
        ("old.example.net:993", line("opensuse-fetchmail-daemon", "/etc/fetchmailrc", "skip old")),
        ("other.example.org:993", "/etc/test.service:7")]  # not in the rc file: gets its `defaults`
    # the rc file's `set daemon` still applies
    assert {d.role for d in deps} == {Role.RUNTIME}


def test_fetchmail_cli_overrides_and_daemon_off() -> None:
    ctx = context("opensuse-fetchmail-daemon", "fetchmail.service")
    found = command(["/usr/bin/fetchmail", "-d0", "--fetchmailrc=/etc/fetchmailrc", "-p", "pop3", "-P", "2110"],
                    "ExecStartPre")
    deps = FetchmailRule().dependencies(found, ctx)
    assert [d.target for d in deps] == ["imap.example.com:2110", "pop.example.org:2110", "gw.example.net:2110"]
    assert {d.role for d in deps} == {Role.START}  # -d0: one poll, and it runs before the start completes


def test_fetchmail_oneshot_user_home() -> None:
    case = "debian-fetchmail-oneshot"
    ctx = context(case, "fetchmail-once.service")
    deps = FetchmailRule().dependencies(from_unit(ctx, "ExecStart", user="mailfetch"), ctx)
    rc = "/home/mailfetch/.fetchmailrc"
    assert [(d.target, d.learned_from, d.role) for d in deps] == [
        ("mail.example.com:993", line(case, rc, "mail.example.com"), Role.START),  # proto IMAP, port 993
        ("pop.example.org:995", line(case, rc, "service pop3s"), Role.START)]  # service name


def test_fetchmail_user_from_unit_when_command_has_none() -> None:
    ctx = context("debian-fetchmail-oneshot", "fetchmail-once.service")
    deps = FetchmailRule().dependencies(command(["/usr/bin/fetchmail"]), ctx)
    assert [d.target for d in deps] == ["mail.example.com:993", "pop.example.org:995"]


@pytest.mark.parametrize(("rc", "argv", "env", "expected"), [
    # auto (the default protocol) tries IMAP, then POP3; with ssl their TLS ports
    ("poll a.example.com\n", (), {}, ["a.example.com:143", "a.example.com:110"]),
    ("defaults ssl\npoll a.example.com\n", (), {}, ["a.example.com:993", "a.example.com:995"]),
    ("poll a.example.com proto kpop\npoll b.example.com proto odmr\n", (), {},
     ["a.example.com:1109", "b.example.com:366"]),
    ("poll a.example.com proto imap sslmode wrapped\n", (), {}, ["a.example.com:993"]),
    ("poll a.example.com proto imap service imaps\n", ("--ssl",), {}, ["a.example.com:993"]),
    # keywords in any case; `#` starts a comment only at the start of a token; quoted names stay names
    ("# poll commented.example.com\nPOLL a.example.com PROTO IMAP\n user poll password pass#word\n"
     " password \"skip x.example.com\" is here\n", (), {}, ["a.example.com:143"]),
    ("poll a.example.com proto pop3\n", (), {"FETCHMAILHOME": "/srv/fm"}, ["fm.example.com:110"]),
    ('poll "" proto pop3\npoll a.example.com proto pop3\n', ("--", "a.example.com"), {}, ["a.example.com:110"]),
    ('poll "" proto pop3\n', (), {}, []),
])
def test_fetchmail_rc_variants(tmp_path: Path, rc: str, argv: tuple[str, ...], env: dict[str, str],
                               expected: list[str]) -> None:
    tree = {"/root/.fetchmailrc": rc, "/srv/fm/fetchmailrc": "poll fm.example.com proto pop3\n",
            "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"}
    ctx = tmp_context(tmp_path, tree)
    deps = FetchmailRule().dependencies(command(["/usr/bin/fetchmail", *argv], env=env), ctx)
    assert [d.target for d in deps] == expected


def test_fetchmail_plugin_note_and_cli_only_server(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {"/etc/fetchmailrc": 'poll a.example.com proto imap plugin "ssh a nc %h %p"\n'})
    deps = FetchmailRule().dependencies(command(["/usr/bin/fetchmail", "-f", "/etc/fetchmailrc"]), ctx)
    assert deps[0].note == "imap; connection made by a plugin command"
    # no rc file anywhere: servers named on the command line are still polled
    bare = tmp_context(tmp_path / "bare", {})
    deps = FetchmailRule().dependencies(command(["/usr/bin/fetchmail", "-p", "IMAP", "mail.example.net"]), bare)
    assert [(d.target, d.learned_from) for d in deps] == [("mail.example.net:143", "/etc/test.service:7")]
    # a named rc file that does not exist: fetchmail gives up
    assert FetchmailRule().dependencies(command(["/usr/bin/fetchmail", "-f", "/etc/nope"]), bare) == []


def test_fetchmail_tokens_and_argv() -> None:
    tokens = tokenize('poll "x y";port:995 # c\nuser=me\n')
    assert [(t.text, t.line, t.quoted) for t in tokens] == [
        ("poll", 1, False), ("x y", 1, True), ("port", 1, False), ("995", 1, False), ("user", 2, False),
        ("=", 2, False), ("me", 2, False)]
    assert parse_rc("set daemon 120\n").daemon == 120
    cli = parse_argv(("-d", "60", "-f", "/etc/rc", "--service=993", "--protocol", "imap", "a.example"))
    assert (cli.daemon, cli.rcfile, cli.service, cli.proto, cli.servers) == (60, "/etc/rc", "993", "imap",
                                                                             ("a.example",))


# ----------------------------------------------------------------------------------------------- postfix

def test_postfix_default_instance() -> None:
    case = "debian-postfix-relay"
    ctx = context(case, "postfix@-.service")
    found = from_unit(ctx, "ExecStart")
    assert found.argv == ("/usr/sbin/postmulti", "-i", "-", "-p", "start")
    deps = PostfixRule().dependencies(found, ctx)
    main = "/etc/postfix/main.cf"
    assert [(d.kind, d.target, d.learned_from) for d in deps] == [
        (DepKind.TCP, "smtp.provider.example:587", line(case, main, "relayhost =")),  # [$var]:587
        (DepKind.DNS, "MX backup-relay.example.net", line(case, main, "smtp_fallback_relay")),
        (DepKind.TCP, "backup-relay.example.net:2525", line(case, main, "smtp_fallback_relay")),
        (DepKind.TCP, "out.provider.example:587", line(case, main, "default_transport"))]  # :submission
    assert all(d.role is Role.RUNTIME for d in deps)
    assert deps[0].note == "relayhost; no MX lookup"
    assert deps[2].note.startswith("smtp_fallback_relay; MX lookup first")


def test_postfix_second_instance() -> None:
    case = "debian-postfix-relay"
    ctx = context(case, "postfix@postfix-out.service")
    deps = PostfixRule().dependencies(from_unit(ctx, "ExecStart"), ctx)
    main = "/etc/postfix-out/main.cf"
    assert [(d.target, d.learned_from) for d in deps] == [
        ("MX bulk.example.org", line(case, main, "relayhost")), ("bulk.example.org:25", line(case, main, "relayhost"))]
    # the same directory by -c, and by MAIL_CONFIG
    assert PostfixRule().dependencies(command(["/usr/sbin/postfix", "-c", "/etc/postfix-out", "start"]), ctx) == deps
    assert PostfixRule().dependencies(command(["/usr/lib/postfix/sbin/master", "-c/etc/postfix-out"]), ctx) == deps
    assert PostfixRule().dependencies(
        command(["/usr/sbin/postfix", "start"], env={"MAIL_CONFIG": "/etc/postfix-out"}), ctx) == deps


def test_postfix_instance_name_convention(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {"/etc/postfix-out/main.cf": "relayhost = [relay.example.net]\n"})
    deps = PostfixRule().dependencies(command(["/usr/sbin/postmulti", "-i", "out", "-p", "start"]), ctx)
    assert [d.target for d in deps] == ["relay.example.net:25"]


@pytest.mark.parametrize(("value", "expected"), [
    ("relay.example.net", ["MX relay.example.net", "relay.example.net:25"]),
    ("[relay.example.net]", ["relay.example.net:25"]),
    ("[relay.example.net]:2525", ["relay.example.net:2525"]),
    ("relay.example.net:submission", ["MX relay.example.net", "relay.example.net:587"]),
    ("[192.0.2.25]:smtps", ["192.0.2.25:465"]),
    ("[ipv6:2001:db8::25]", ["[2001:db8::25]:25"]),
    (", [d.example]", ["d.example:25"]),
    ("a.example, [b.example]:587 bad!host [c.example]:nosuchservice", ["MX a.example", "a.example:25",
                                                                        "b.example:587"]),
])
def test_postfix_destination_forms(value: str, expected: list[str]) -> None:
    assert [d.target for d in destination_deps(value, "/etc/postfix/main.cf:1")] == expected


def test_postfix_expansion() -> None:
    settings = read_main_cf("a = one\nb = ${a?set}\nc = ${nothing:fallback}\nd = $(a).x\ne = $undefined\n"
                            "f = first\n   second\n# comment\n  third\n")
    assert settings["f"] == ("first second third", 6)
    assert expand(settings["b"][0], settings) == "set"
    assert expand(settings["c"][0], settings) == "fallback"
    assert expand(settings["d"][0], settings) == "one.x"
    assert expand(settings["e"][0], settings) is None


@pytest.mark.parametrize(("main_cf", "expected"), [
    ("myhostname = mx.example.org\nrelayhost = $mydomain\n", ["MX example.org", "example.org:25"]),
    ("relayhost = $nowhere\n", []),
    ("default_transport = lmtp:inet:lmtp.example.net\nrelay_transport = lmtp:unix:private/lmtp\n",
     ["MX lmtp.example.net", "lmtp.example.net:24"]),
    ("default_transport = error:outbound mail disabled\nrelayhost =\n", []),
    # no relayhost, default_transport smtp: direct delivery to any host's port 25 after an MX lookup
    ("relay_transport = smtp:[r1.example], [r2.example]:2525\n", ["r1.example:25", "r2.example:2525", "MX *",
                                                                  "*:25"]),
    ("not a setting\n", ["MX *", "*:25"]),
    ("relayhost =\ndefault_transport = smtp\n", ["MX *", "*:25"]),
    ("relayhost = [smarthost.example]\n", ["smarthost.example:25"]),
    ("default_transport = discard\n", []),
    ("relayhost = $relayhost\n", []),  # a reference loop resolves to nothing
    ("default_transport = smtp:unix:/run/relay.sock, [r3.example]\n", ["r3.example:25"]),
])
def test_postfix_main_cf_variants(tmp_path: Path, main_cf: str, expected: list[str]) -> None:
    ctx = tmp_context(tmp_path, {"/etc/postfix/main.cf": main_cf})
    assert [d.target for d in PostfixRule().dependencies(command(["/usr/sbin/postfix", "start"]), ctx)] == expected


# --------------------------------------------------------------------------------------- URL fetchers

def test_curl_proxy_flag_in_execstartpre() -> None:
    ctx = context("debian-fetch-prestart", "rbl-sync.service")
    found = from_unit(ctx, "ExecStartPre", 0)
    deps = UrlFetchRule().dependencies(found, ctx)
    where = str(found.source)
    assert [(d.kind, d.target, d.role, d.learned_from, d.confidence) for d in deps] == [
        (DepKind.HTTPS, "https://rbl.example.com/export/list.txt", Role.START, where, Confidence.HIGH),
        (DepKind.TCP, "proxy.corp.example:3128", Role.START, where, Confidence.HIGH)]
    assert deps[0].note == f"via proxy proxy.corp.example:3128 (-x at {where})"  # -x beats https_proxy


def test_wget_environment_proxy_and_no_proxy() -> None:
    ctx = context("debian-fetch-prestart", "rbl-sync.service")
    proxied = UrlFetchRule().dependencies(from_unit(ctx, "ExecStartPre", 1), ctx)
    assert [(d.target, d.note) for d in proxied] == [
        ("https://lists.example.net/extra.txt", "via proxy proxy.corp.example:8080 (https_proxy)"),
        ("proxy.corp.example:8080", "proxy from https_proxy")]
    direct = UrlFetchRule().dependencies(from_unit(ctx, "ExecStartPre", 2), ctx)  # .corp.example in no_proxy
    assert [(d.target, d.note) for d in direct] == [("https://intranet.corp.example/site.txt", "")]


def test_curl_in_execstartpost_strips_credentials() -> None:
    ctx = context("debian-fetch-prestart", "rbl-sync.service")
    deps = UrlFetchRule().dependencies(from_unit(ctx, "ExecStartPost"), ctx)
    assert deps[0].target == "https://status.example.com/ping?job=rbl"
    assert deps[0].role is Role.START
    assert "monitor" not in " ".join(d.target for d in deps)  # the -u value is not a URL


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["curl", "-x", "", "https://a.example/"], {"https_proxy": "http://p.example:3128"}, ["https https://a.example/"]),
    (["curl", "-x", "proxy.lan", "http://a.example/"], {}, ["http http://a.example/", "tcp proxy.lan:1080"]),
    (["curl", "http://a.example/"], {"HTTP_PROXY": "http://p.example:3128"}, ["http http://a.example/"]),
    (["curl", "http://a.example/"], {"ALL_PROXY": "socks5://s.example"}, ["http http://a.example/",
                                                                          "tcp s.example:1080"]),
    (["curl", "--noproxy", "*", "https://a.example/"], {"https_proxy": "p.example:1"}, ["https https://a.example/"]),
    (["GET", "http://a.example/"], {"HTTP_PROXY": "http://p.example:3128"}, ["http http://a.example/",
                                                                             "tcp p.example:3128"]),
    (["lwp-request", "-P", "http://a.example/"], {"http_proxy": "http://p.example:3128"}, ["http http://a.example/"]),
    (["lwp-request", "-p", "http://lp.example:8000/", "http://a.example/"], {}, ["http http://a.example/",
                                                                                  "tcp lp.example:8000"]),
    (["wget", "-e", "use_proxy=off", "https://a.example/"], {"https_proxy": "http://p.example:3128"},
     ["https https://a.example/"]),
    (["wget", "--no-proxy", "https://a.example/"], {"https_proxy": "http://p.example:3128"},
     ["https https://a.example/"]),
    (["wget", "--execute=https_proxy=http://w.example:3128", "https://a.example/"], {},
     ["https https://a.example/", "tcp w.example:3128"]),
    (["wget", "https://a.example/"], {"HTTPS_PROXY": "http://p.example:3128"}, ["https https://a.example/"]),
    (["curl", "https://a.example/"], {"https_proxy": ""}, ["https https://a.example/"]),  # emptied by a drop-in
    (["curl", "https://a.example/"], {"https_proxy": "http://:3128"}, ["https https://a.example/"]),
    (["fetch", "-o", "/tmp/x", "ftp://files.example.org/pub/x"], {}, ["tcp files.example.org:21"]),
    (["curl", "-sSo", "out.txt", "example.com/file", "--url", "https://b.example:8443/"], {},
     ["http http://example.com/file", "https https://b.example:8443/"]),
    (["curl", "-e", "http://referer.example/", "-H", "X: http://h.example/", "--", "https://c.example/"], {},
     ["https https://c.example/"]),
])
def test_url_fetch_variants(tmp_path: Path, argv: list[str], env: dict[str, str], expected: list[str]) -> None:
    ctx = tmp_context(tmp_path, {})
    deps = UrlFetchRule().dependencies(command([f"/usr/bin/{argv[0]}", *argv[1:]], env=env), ctx)
    assert list(by_target(deps)) == expected
    assert {d.role for d in deps} == {Role.RUNTIME}  # ExecStart of a simple service


def test_wgetrc_no_proxy_and_odd_words(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {"/etc/wgetrc": "http_proxy = http://wr.example:3128/\nno_proxy = a.example\n"})
    deps = UrlFetchRule().dependencies(command(["/usr/bin/wget", "http://a.example/x", "http://[::1/", "http:///x",
                                                "https://a.example:99999/", "foo.123", "/var/tmp/x"]), ctx)
    assert [(d.target, d.note) for d in deps] == [("http://a.example/x", "")]
    bad_proxy = command(["/usr/bin/curl", "-x", "http://[bad", "https://b.example/"])
    assert [d.target for d in UrlFetchRule().dependencies(bad_proxy, ctx)] == ["https://b.example/"]


def test_wgetrc_proxy(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {"/etc/wgetrc": "# proxy for everyone\nhttps_proxy = http://wr.example:3128/\n"
                                                "use_proxy = on\n"})
    deps = UrlFetchRule().dependencies(command(["/usr/bin/wget", "https://a.example/"]), ctx)
    assert [(d.target, d.note) for d in deps] == [
        ("https://a.example/", "via proxy wr.example:3128 (/etc/wgetrc:2)"),
        ("wr.example:3128", "proxy from /etc/wgetrc:2")]


def test_unknown_command_hostport_and_urls() -> None:
    ctx = context("debian-unknown-hostport", "relay-watch.service")
    found = from_unit(ctx, "ExecStart")
    assert UnknownCommandRule().dependencies(found, ctx) == []  # nothing says it contacts them
    deps = UnknownCommandRule().mentions(found, ctx)
    assert UnknownCommandRule.tools == frozenset()
    assert [(d.kind, d.target) for d in deps] == [
        (DepKind.HTTP, "http://status.example.com/relay"), (DepKind.TCP, "relay.example.net:587"),
        (DepKind.TCP, "10.0.0.25:25"), (DepKind.TCP, "[2001:db8::25]:25")]  # not 12:30, version:2, localhost
    assert all(d.confidence is Confidence.LOW and d.role is Role.RUNTIME for d in deps)
    assert all(d.learned_from == str(found.source) for d in deps)


def test_unknown_command_in_execstartpre_with_env_proxy(tmp_path: Path) -> None:
    ctx = tmp_context(tmp_path, {})
    found = command(["/opt/bin/sync-tool", "--src=https://data.example.com/feed", "mx.example.com:70000"],
                    "ExecStartPre", env={"HTTPS_PROXY": "proxy.example:3128"})
    assert UnknownCommandRule().dependencies(found, ctx) == []
    deps = UnknownCommandRule().mentions(found, ctx)
    assert [(d.target, d.role, d.confidence) for d in deps] == [
        ("https://data.example.com/feed", Role.START, Confidence.LOW),
        ("proxy.example:3128", Role.START, Confidence.LOW)]
    assert hostport_words(["--to=a.example:25", "1.2:3", "x:0", "192.0.2.1:53"]) == [("a.example", 25),
                                                                                     ("192.0.2.1", 53)]


# ------------------------------------------------------------------ example root (openSUSE Leap 15)

def test_example_root_freshclam() -> None:
    ctx = context(EXAMPLE, "freshclam.service")
    deps = FreshclamRule().dependencies(from_unit(ctx, "ExecStart"), ctx)
    assert [(d.target, d.learned_from, d.role) for d in deps] == [
        ("TXT current.cvd.clamav.net", line(EXAMPLE, "/etc/freshclam.conf", "DNSDatabaseInfo current"),
         Role.RUNTIME),
        ("https://database.clamav.net", line(EXAMPLE, "/etc/freshclam.conf", "DatabaseMirror database"),
         Role.RUNTIME)]


def test_example_root_spamd_plugins() -> None:
    ctx = context(EXAMPLE, "spamd.service")
    deps = by_target(SpamAssassinPluginsRule().dependencies(
        [from_unit(ctx, "ExecStartPre"), from_unit(ctx, "ExecStart")], ctx))
    assert set(deps) == {"tcp discovery.razor.cloudmark.com:2703", "udp public.pyzor.org:24441",
                         "dns A discovery.razor.cloudmark.com", "dns A public.pyzor.org"}  # use_dcc 0, no DCC
    assert line(EXAMPLE, "/etc/mail/spamassassin/v310.pre", "Plugin::Pyzor") in deps[
        "udp public.pyzor.org:24441"].note


def test_example_root_fetchmail_and_postfix() -> None:
    fetch_ctx = context(EXAMPLE, "fetchmail.service")
    env = dict(exec_environment(fetch_ctx.unit, fetch_ctx.fs).variables)
    deps = FetchmailRule().dependencies(command(["/usr/bin/fetchmail", "-d", "300"], env=env, user="fetchmail"),
                                        fetch_ctx)
    assert [(d.target, d.role) for d in deps] == [("pop.example.com:995", Role.RUNTIME)]
    assert deps[0].learned_from == line(EXAMPLE, "/etc/fetchmailrc", "poll pop.example.com")
    postfix_ctx = context(EXAMPLE, "postfix.service")
    deps = PostfixRule().dependencies(from_unit(postfix_ctx, "ExecStart"), postfix_ctx)
    assert [(d.kind, d.target, d.learned_from) for d in deps] == [
        (DepKind.TCP, "smtp.example.net:587", line(EXAMPLE, "/etc/postfix/main.cf", "relayhost ="))]
