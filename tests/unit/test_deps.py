"""`deps`: commands found in the start path, sa-update's endpoints and timing, and the risk findings."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.analyze import UnitDeps, analyze
from mailpreflight.deps.base import KEPT, by_identity
from mailpreflight.deps.saupdate import dotted, installed_version, parse_args, plan, worst_cases
from mailpreflight.deps.view import deps_view
from mailpreflight.model import FoundCommand, Source
from mailpreflight.render.deps import render_json
from mailpreflight.units.loader import UnitLoader
from mailpreflight.units.timeouts import parse_timespan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "units" / "examples" / "opensuse-leap15-mail"
SCHEMA = json.loads((REPO / "docs" / "schemas" / "deps.schema.json").read_text())
UNIT_DIR = "/etc/systemd/system"
SA_DIR = "/var/lib/spamassassin/4.000001"
MIRRORS = "http://m1.example.org/ weight=5\n# http://gone.example.org/\nhttps://m2.example.net/updates/ weight=1\n"


def sa_root(tmp_path: Path, unit: str, **extra: Any) -> Path:
    """A Debian-like root with SpamAssassin 4.0.1, curl, a cached mirror list and the given spamd unit."""
    tree: dict[str, Any] = {
        "/etc/os-release": "ID=debian\nVERSION_ID=12\n",
        "/usr/share/perl5/Mail/SpamAssassin.pm": 'package Mail::SpamAssassin;\nour $VERSION = "4.000001";\n',
        "/usr/bin/curl": "#!/bin/false\n",
        "/etc/resolv.conf": "nameserver 192.0.2.53\n",
        f"{SA_DIR}/updates_spamassassin_org/MIRRORED.BY": MIRRORS,
        f"{SA_DIR}/updates_spamassassin_org.cf": "# UPDATE version 1913000\n",
        f"{UNIT_DIR}/spamd.service": unit,
    }
    tree.update(extra)
    return make_tree(tmp_path, tree)


def run(root: Path, name: str = "spamd.service", sa_version: str | None = None) -> UnitDeps:
    fs = RootFS(str(root))
    return analyze(UnitLoader(fs).load(name), fs, sa_version)


def codes(result: UnitDeps) -> dict[str, str]:
    return {f.code: f.severity.value for f in result.findings}


def sa_command(result: UnitDeps) -> Any:
    return next(e for e in result.commands if e.command.tool == "sa-update")


SPAMD = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n"
         "[Service]\n{pre}\nExecStart=/usr/sbin/spamd\n")


def test_seed_case_opensuse_spamd_bash_or_true() -> None:
    result = run(EXAMPLE)
    entry = sa_command(result)
    assert entry.command.tolerated and entry.command.tolerated_why == ("'|| true'",)
    assert entry.command.via == ("bash -c",)
    assert str(entry.command.source) == "/usr/lib/systemd/system/spamd.service:17"
    targets = [d.target for d in entry.dependencies]
    assert "TXT 5.4.3.updates.spamassassin.org" in targets  # SpamAssassin 3.004005 from the guest
    assert "TXT mirrors.updates.spamassassin.org" in targets
    mirrors = [d for d in entry.dependencies if d.kind.value in ("http", "https")]
    assert [m.target for m in mirrors] == ["http://sa-update.mirror.example.org/",
                                           "https://spamassassin.mirror.example.net/updates/",
                                           "http://sa-update.rules.example.com/"]
    assert all("MIRRORED.BY:" in m.learned_from for m in mirrors)
    assert "weight 5" in mirrors[0].note
    assert all(d.role.value == "start" for d in entry.dependencies)
    found = codes(result)
    assert "MP101" not in found and "MP102" not in found  # the exit code is tolerated...
    assert found["MP103"] == "critical"  # ...a hang is not: 150 s of dropped DNS > TimeoutStartSec=120
    hang = next(f for f in result.findings if f.code == "MP103")
    assert "150 s" in hang.message and "120 s" in hang.message


def test_bare_sa_update_fails_on_ordinary_days(tmp_path: Path) -> None:
    result = run(sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=/usr/bin/sa-update")))
    found = codes(result)
    assert found["MP101"] == "critical" and found["MP102"] == "critical"
    assert "exits 1" in next(f.message for f in result.findings if f.code == "MP102")


def test_dash_prefix_tolerates_exit_code_not_hang(tmp_path: Path) -> None:
    result = run(sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update")))
    entry = sa_command(result)
    assert entry.command.tolerated and entry.command.tolerated_why == ("'-' prefix",)
    found = codes(result)
    assert "MP101" not in found and "MP102" not in found
    assert found["MP103"] == "critical"  # 2 x 75 s of Net::DNS > 90 s default


def test_hang_within_timeout_is_not_reported(tmp_path: Path) -> None:
    unit = SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update\nTimeoutStartSec=5min")
    assert "MP103" not in codes(run(sa_root(tmp_path, unit)))


def test_oneshot_without_timeout_warns_of_slow_boot(tmp_path: Path) -> None:
    unit = ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\n"
            "ExecStart=-/usr/bin/sa-update --channel a.example --channel b.example --channel c.example\n")
    result = run(sa_root(tmp_path, unit))
    assert result.timeout.seconds == float("inf")
    assert codes(result)["MP104"] == "warning"  # 3 channels x 150 s


def test_resolver_options_and_default_timeout_from_system_conf(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"), **{
        "/etc/resolv.conf": "nameserver 192.0.2.1\nnameserver 192.0.2.2\noptions timeout:2 attempts:2\n",
        "/etc/systemd/system.conf": "[Manager]\nDefaultTimeoutStartSec=10s\n",
    })
    result = run(root)
    entry = sa_command(result)
    assert entry.plan is not None
    dns = next(s for s in worst_cases(entry.plan) if s.name.startswith("DNS answers"))
    assert dns.seconds == 2 * (2 + 4)
    assert result.timeout.seconds == 10 and result.timeout.learned_from == "/etc/systemd/system.conf:2"
    assert {d.target for d in entry.dependencies if d.kind.value == "udp"} == {"192.0.2.1:53", "192.0.2.2:53"}


def test_channels_updatedir_nogpg_refresh(tmp_path: Path) -> None:
    unit = SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update --nogpg --refreshmirrors --updatedir=/srv/sa "
                            "--channel Sought.Rules.Yerp.Org --channel updates.spamassassin.org")
    root = sa_root(tmp_path, unit, **{"/srv/sa/sought_rules_yerp_org/MIRRORED.BY": "http://y.example.org/\n"})
    entry = sa_command(run(root))
    assert entry.plan is not None
    assert [c.channel for c in entry.plan.channels] == ["sought.rules.yerp.org", "updates.spamassassin.org"]
    assert entry.plan.channels[0].directory == "/srv/sa/sought_rules_yerp_org"
    assert entry.plan.channels[0].needs_mirror_refresh  # --refreshmirrors
    assert "TXT 1.0.4.sought.rules.yerp.org" in [d.target for d in entry.dependencies]
    assert any(".sha512" in d.note for d in entry.dependencies if d.kind.value == "http")


def test_channelfile_and_missing_channelfile(tmp_path: Path) -> None:
    unit = SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update --channelfile /etc/sa-channels")
    root = sa_root(tmp_path, unit, **{"/etc/sa-channels": "# ours\n  Updates.Example.COM \n\nbad/name\n"})
    entry = sa_command(run(root))
    assert entry.plan is not None and [c.channel for c in entry.plan.channels] == ["updates.example.com"]
    (root / "etc/sa-channels").unlink()
    entry = sa_command(run(root))
    assert entry.plan is not None and any("does not exist" in n for n in entry.plan.notes)


def test_install_uses_no_network(tmp_path: Path) -> None:
    result = run(sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=/usr/bin/sa-update --install /srv/1913000.tgz")))
    assert sa_command(result).dependencies == ()


def test_proxy_from_environment_file(tmp_path: Path) -> None:
    unit = SPAMD.format(pre="EnvironmentFile=/etc/default/spamd\nExecStartPre=-/usr/bin/sa-update")
    root = sa_root(tmp_path, unit, **{"/etc/default/spamd": 'http_proxy="http://proxy.example.net:8080/"\n'})
    entry = sa_command(run(root))
    targets = [d.target for d in entry.dependencies]
    assert "proxy.example.net:8080" in targets
    assert "A m1.example.org" not in targets  # no address-family lookup for proxied http mirrors (l.1796)
    assert "A m2.example.net" in targets  # https has no proxy here
    assert "TXT 1.0.4.updates.spamassassin.org" in targets  # DNS is never proxied


def test_an_environment_file_that_is_dev_null_reads_empty_without_the_guests_dev(tmp_path: Path) -> None:
    """`EnvironmentFile=/dev/null` (a way to blank a packaged one): at boot /dev/null is there and reads empty,
    whether or not the offline root holds a /dev; no "cannot be read: the start will fail"."""
    from mailpreflight.units.loader import UnitLoader, exec_environment

    unit = SPAMD.format(pre="EnvironmentFile=/dev/null\nExecStartPre=-/usr/bin/sa-update")
    root = sa_root(tmp_path, unit)
    assert not (root / "dev").exists()
    loader = UnitLoader(RootFS(str(root)))
    assert exec_environment(loader.load("spamd.service"), loader.fs).problems == ()


@pytest.mark.parametrize(("programs", "expected", "per_url"), [
    (["/usr/bin/curl"], "curl", 30), (["/usr/bin/wget"], "wget", 90), ([], "lwp", 180)])
def test_downloader_from_the_tree(tmp_path: Path, programs: list[str], expected: str, per_url: int) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"))
    (root / "usr/bin/curl").unlink()
    make_tree(root, {p: "#!/bin/false\n" for p in programs})
    entry = sa_command(run(root))
    assert entry.plan is not None and entry.plan.downloader == expected
    http = next(s for s in worst_cases(entry.plan) if s.name.startswith("HTTP"))
    assert http.seconds == 2 * per_url + 2  # two mirrors and one 2 s pause


def test_stale_mirror_list_adds_a_refresh(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"))
    old = time.time() - 8 * 24 * 3600
    os.utime(root / SA_DIR.lstrip("/") / "updates_spamassassin_org/MIRRORED.BY", (old, old))
    entry = sa_command(run(root))
    assert entry.plan is not None and entry.plan.channels[0].needs_mirror_refresh
    http = next(s for s in worst_cases(entry.plan) if s.name.startswith("HTTP"))
    assert http.seconds == 30 + 2 * 30 + 2


def test_versions() -> None:
    assert dotted("4.000001") == "4.0.1" and dotted("3.004006") == "3.4.6" and dotted("3.12") == "3.1.2"
    assert dotted("4.1") is None and dotted("3.3.2") is None  # sa-update dies on these (l.266)
    # Getopt::Long with no_auto_abbrev and bundling (l.182-183): no abbreviations, long options need "--"
    args = parse_args(["sa-update", "-vD", "--updatedir=/x", "--nogpg", "--refreshmirrors", "--channel", "A.b"])
    assert (args.updatedir, args.gpg, args.refreshmirrors, args.channels, args.unknown) == (
        "/x", False, True, ("a.b",), ())
    assert parse_args(["sa-update", "--chan", "x", "-channel", "y"]).unknown == ("--chan", "x", "-channel", "y")
    assert parse_args(["sa-update", "-D", "--gpgkey", "ABC", "--allowplugins"]).gpg_keys == ("ABC",)


def test_installed_version_and_override(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"))
    assert installed_version(RootFS(str(root))) == ("4.000001", "/usr/share/perl5/Mail/SpamAssassin.pm:2")
    entry = sa_command(run(root, sa_version="3.004006"))
    assert "TXT 6.4.3.updates.spamassassin.org" in [d.target for d in entry.dependencies]


@pytest.mark.parametrize(("pre", "user", "via"), [
    ("/usr/sbin/runuser -u debian-spamd -- /usr/bin/sa-update", "debian-spamd", ("runuser",)),
    ("/bin/su debian-spamd -s /bin/sh -c 'sa-update --nogpg'", "debian-spamd", ("su", "sh -c")),
    ("/usr/bin/env http_proxy=http://p.example:3128 /usr/bin/sa-update", None, ("env",)),
    ("/usr/bin/timeout 60 /usr/bin/sa-update", None, ("timeout",)),
    ("/usr/bin/nice -n 10 /usr/bin/ionice -c3 /usr/bin/sa-update", None, ("nice", "ionice")),
    ("/usr/bin/setpriv --reuid=debian-spamd --clear-groups /usr/bin/sa-update", None, ("setpriv",)),
    ("/usr/bin/sudo -u debian-spamd /usr/bin/sa-update", "debian-spamd", ("sudo",)),
    ("/usr/bin/chpst -u debian-spamd /usr/bin/sa-update", "debian-spamd", ("chpst",)),
    ("/usr/bin/flock /run/sa.lock /usr/bin/sa-update", None, ("flock",)),
    ("/bin/dash -c 'set -e; cd /; exec /usr/bin/sa-update -v'", None, ("dash -c",)),
])
def test_wrappers_are_seen_through(tmp_path: Path, pre: str, user: str | None, via: tuple[str, ...]) -> None:
    entry = sa_command(run(sa_root(tmp_path, SPAMD.format(pre=f"ExecStartPre=-{pre}"))))
    assert entry.command.user == user
    assert entry.command.via == via
    assert entry.dependencies


@pytest.mark.parametrize(("pre", "severity"), [
    ("ExecStartPre=/usr/bin/sa-update --allowplugins", "critical"),
    ("ExecStartPre=-/usr/bin/sa-update -channel x", "warning"),
])
def test_command_lines_sa_update_refuses(tmp_path: Path, pre: str, severity: str) -> None:
    assert codes(run(sa_root(tmp_path, SPAMD.format(pre=pre))))["MP108"] == severity


def test_errexit_flag_of_the_shell(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=/bin/sh -ec 'sa-update; echo done'"))
    entry = sa_command(run(root))
    assert not entry.command.tolerated  # with -e, sa-update failing ends the script
    root2 = sa_root(tmp_path / "b", SPAMD.format(pre="ExecStartPre=/bin/sh -c 'sa-update; echo done'"))
    assert sa_command(run(root2)).command.tolerated_why == ("not the last command",)


def test_start_stop_daemon_exec(tmp_path: Path) -> None:
    unit = ("[Service]\nType=forking\nExecStart=/sbin/start-stop-daemon --start --pidfile /run/f.pid "
            "--exec /usr/bin/curl -- -fsS https://rules.example.org/x\n")
    result = run(make_tree(tmp_path, {f"{UNIT_DIR}/f.service": unit}), "f.service")
    assert [(e.command.tool, e.command.via) for e in result.commands] == [("curl", ("start-stop-daemon",))]
    assert [d.target for d in result.commands[0].dependencies] == ["https://rules.example.org/x"]


MAINT = """#!/bin/sh
# a maintenance script like Debian's spamassassin-maint, written for this test
set -e
umask 022
rc=0
runuser -u debian-spamd -- sa-update --gpghomedir /var/lib/spamassassin/sa-update-keys || rc=$?
if [ "$rc" -eq 0 ]; then
    sa-compile > /dev/null 2>&1 || true
    systemctl try-reload-or-restart spamd.service
elif [ "$rc" -ne 1 ]; then
    exit $rc
fi
"""


def test_script_is_read_one_level_deep(tmp_path: Path) -> None:
    unit = "[Service]\nType=oneshot\nExecStart=/usr/sbin/spamassassin-maint\n"
    root = sa_root(tmp_path, "", **{f"{UNIT_DIR}/maint.service": unit, "/usr/sbin/spamassassin-maint": MAINT,
                                    "/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                                   "debian-spamd:x:108:113::/var/lib/spamassassin:/bin/sh\n"})
    result = run(root, "maint.service")
    tools = [e.command.tool for e in result.commands]
    assert tools[:2] == ["spamassassin-maint", "sa-update"]
    entry = sa_command(result)
    assert str(entry.command.source) == "/usr/sbin/spamassassin-maint:6"
    assert entry.command.via == ("/usr/sbin/spamassassin-maint", "runuser")
    assert entry.command.user == "debian-spamd"
    assert entry.command.tolerated
    assert "MP105" not in codes(result)  # runs as the distribution's user


def test_sa_update_as_root_where_distribution_uses_its_own_user(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"), **{
        "/etc/passwd": "root:x:0:0::/root:/bin/bash\ndebian-spamd:x:108:113::/var/lib/spamassassin:/bin/sh\n"})
    result = run(root)
    assert codes(result)["MP105"] == "warning"


PASSWD = "root:x:0:0::/root:/bin/bash\ndebian-spamd:x:108:113::/var/lib/spamassassin:/bin/sh\n"


def hint(result: UnitDeps, code: str) -> str:
    return next(f.hint for f in result.findings if f.code == code)


def run_sed(root: Path, command: str) -> None:
    """A hint's `sed -i ...` on the tree (its file taken inside it)."""
    argv = shlex.split(command)
    subprocess.run([*argv[:-1], str(root) + argv[-1]], check=True)


def test_sa_update_as_root_hints_that_work(tmp_path: Path) -> None:
    # the admin's own unit: its line changed in place (a drop-in's reset would not reach a later drop-in)
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update --nogpg"), **{"/etc/passwd": PASSWD})
    text = hint(run(root), "MP105")
    [command] = re.findall(r"`([^`]+)`", text)
    assert command == ("sed -i '5s|/usr/bin/sa-update|/usr/sbin/runuser -u debian-spamd -- /usr/bin/sa-update|' "
                       "/etc/systemd/system/spamd.service")
    run_sed(root, command)
    assert "ExecStartPre=-/usr/sbin/runuser -u debian-spamd -- /usr/bin/sa-update --nogpg" in \
        (root / "etc/systemd/system/spamd.service").read_text()
    after = run(root)
    assert "MP105" not in codes(after) and sa_command(after).command.user == "debian-spamd"
    # a vendor unit: the key's lines written again in a drop-in, sa-update's through runuser
    vendor = sa_root(tmp_path / "vendor", "", **{"/etc/passwd": PASSWD, "/lib/systemd/system/rules.service":
                                                SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update --nogpg\n"
                                                                 "ExecStartPre=/bin/true")})
    assert hint(run(vendor, "rules.service"), "MP105") == (
        "run it as debian-spamd: systemctl edit rules.service (add `ExecStartPre=` and `ExecStartPre=-/usr/sbin/"
        "runuser -u debian-spamd -- /usr/bin/sa-update --nogpg` and `ExecStartPre=/bin/true`)")
    # sa-update is all the unit runs: the unit's User=
    alone = sa_root(tmp_path / "alone", "", **{"/etc/passwd": PASSWD, f"{UNIT_DIR}/sa.service":
                                              "[Service]\nType=oneshot\nExecStart=-/usr/bin/sa-update\n"})
    assert hint(run(alone, "sa.service"), "MP105") == \
        "run it as debian-spamd: systemctl edit sa.service (add `User=debian-spamd`)"


@pytest.mark.parametrize("pre", ["ExecStartPre=-/usr/bin/sa-update --allowplugins --nogpg",
                                 "ExecStartPre=-/usr/bin/sa-update --nogpg --bogus"])
def test_refused_command_line_hint_removes_the_words(tmp_path: Path, pre: str) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre=pre))
    [command] = re.findall(r"`([^`]+)`", hint(run(root), "MP108"))
    run_sed(root, command)
    assert "ExecStartPre=-/usr/bin/sa-update --nogpg\n" in (root / "etc/systemd/system/spamd.service").read_text()
    assert "MP108" not in codes(run(root))


def test_rule_directories_of_other_versions(tmp_path: Path) -> None:
    root = sa_root(tmp_path, SPAMD.format(pre="ExecStartPre=-/usr/bin/sa-update"),
                   **{"/var/lib/spamassassin/3.004006/updates_spamassassin_org.cf": "# UPDATE version 1\n"})
    result = run(root)
    found = codes(result)
    assert found["MP107"] == "info" and "MP106" not in found
    assert [f.hint for f in result.findings if f.code == "MP107"] == [
        "leftovers of an upgrade, not used; remove them: rm -r /var/lib/spamassassin/3.004006"]
    result = run(root, sa_version="4.000002")
    assert codes(result)["MP106"] == "warning"
    # the command to run by hand is the unit's (the directory to rmdir does not exist yet: that is MP116's hint)
    [hint] = [f.hint for f in result.findings if f.code == "MP106"]
    assert hint.endswith(": /usr/bin/sa-update") and "rmdir" not in hint


@pytest.mark.parametrize(("unit_section", "code"), [
    ("After=network-online.target\n", "MP110"),
    ("Wants=network-online.target\n", "MP111"),
    ("", "MP112"),
])
def test_network_online_ordering(tmp_path: Path, unit_section: str, code: str) -> None:
    unit = f"[Unit]\n{unit_section}[Service]\nExecStartPre=-/usr/bin/sa-update\nExecStart=/usr/sbin/spamd\n"
    found = codes(run(sa_root(tmp_path, unit)))
    assert found[code] == "warning"
    assert not {"MP110", "MP111", "MP112"} - {code} & set(found)


def test_timespans() -> None:
    assert parse_timespan("90") == 90 and parse_timespan("1min 30s") == 90 and parse_timespan("2.5h") == 9000
    assert parse_timespan("infinity") == float("inf") and parse_timespan("5 apples") is None


def test_json_matches_schema_for_every_unit_of_the_example() -> None:
    fs = RootFS(str(EXAMPLE))
    loader = UnitLoader(fs)
    results = [analyze(loader.load(n), fs) for n in loader.service_names() if not loader.load(n).masked]
    document = json.loads(render_json(deps_view(results)))
    jsonschema.validate(document, SCHEMA)
    spamd = next(u for u in document["units"] if u["name"] == "spamd.service")
    command = spamd["commands"][0]
    assert command["tool"] == "sa-update" and command["tolerated"] is True
    assert command["sa_update"]["version"] == "3.004005"


def test_schema_rejects_what_the_contract_forbids() -> None:
    bad = {"schema_version": 1, "units": [{"name": "x", "commands": [{
        "tool": "t", "argv": [], "source": "/f:1", "tolerated": False,
        "dependencies": [{"kind": "dns", "target": "example.org", "role": "start", "learned_from": "x"}]}],
        "findings": []}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailpreflight", *args], capture_output=True, text=True, timeout=60)


def test_cli_deps_whole_tree_lists_only_network_units() -> None:
    proc = cli("deps", "--root", str(EXAMPLE), "--format", "json")
    assert proc.returncode == 2, proc.stderr  # spamd's MP103 is critical
    names = [u["name"] for u in json.loads(proc.stdout)["units"]]
    assert "spamd.service" in names and "fetchmail.service" in names and "freshclam.service" in names
    assert "dovecot.service" not in names and "saslauthd.service" not in names


def test_cli_deps_text_and_unknown_unit() -> None:
    proc = cli("deps", "--root", str(EXAMPLE), "spamd")
    assert "TXT 5.4.3.updates.spamassassin.org" in proc.stdout and "MP103" in proc.stdout
    proc = cli("deps", "--root", str(EXAMPLE), "nothere.service")
    assert proc.returncode == 3 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_by_identity_tells_equal_objects_apart_and_keeps_a_few() -> None:
    """deps/base.py by_identity(): an equal object that is not the same one gets its own answer, and the cache
    holds at most `most` objects."""
    cache: dict[int, tuple[object, str]] = {}
    first, second = tuple([1, 2]), tuple([1, 2])
    assert by_identity(cache, first, lambda: "first") == "first"
    assert by_identity(cache, second, lambda: "second") == "second"
    assert by_identity(cache, first, lambda: "again") == "first"
    for number in range(3 * KEPT):
        by_identity(cache, (number,), str)
    assert len(cache) == KEPT


def test_found_command_is_plain_data() -> None:
    command = FoundCommand("sa-update", ("sa-update",), "ExecStartPre", Source("/u", 1), False)
    assert plan(command, RootFS("/nonexistent-root-for-test")).channels[0].channel == "updates.spamassassin.org"
