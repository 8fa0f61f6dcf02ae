"""Units generators make at boot (units/generators.py), as the loader and the verbs see them on an offline root.
Their agreement with the real systemd-sysv-generator and postfix-instance-generator, byte for byte, is
tests/realpkg/test_generators_real.py; here: when they run, how the tree looks with them, who uses them."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight import cli
from mailpreflight.access.rootfs import NotOnDisk, RootFS
from mailpreflight.deps.analyze import analyze, analyze_tree
from mailpreflight.units import generators
from mailpreflight.units.loader import UnitLoader

SYSV_GEN = "/lib/systemd/system-generators/systemd-sysv-generator"
POSTFIX_GEN = "/lib/systemd/system-generators/postfix-instance-generator"
FETCHMAIL_INIT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          fetchmail
# Required-Start:    $network $local_fs $remote_fs $syslog
# Default-Start:     2 3 4 5
# Short-Description: init-Script for system wide fetchmail daemon
### END INIT INFO
CONFFILE=/etc/fetchmailrc
case "$1" in
  start)
    start-stop-daemon -S -o -q -c fetchmail -x /usr/bin/fetchmail -- -f $CONFFILE
    ;;
  *)
    echo "Usage: /etc/init.d/fetchmail {start|stop|reload}"
    ;;
esac
"""


def debian_root(root: Path, **extra: object) -> Path:
    tree: dict[str, object] = {
        "/etc/os-release": 'ID=debian\nVERSION_ID="12"\n',
        "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so": "",
        "/lib/systemd/system/postfix@.service": "[Unit]\nDescription=Postfix (instance %i)\n[Service]\n"
                                                 "Type=forking\nExecStart=/usr/sbin/postmulti -i %i -p start\n",
        "/etc/init.d/fetchmail": FETCHMAIL_INIT,
        "/etc/rc2.d/S01fetchmail": {"symlink": "../init.d/fetchmail"},
        "/etc/fetchmailrc": "poll pop.example.org protocol pop3 user u password p\n",
        SYSV_GEN: "\x7fELF",
        POSTFIX_GEN: "#!/bin/sh\n",
        **extra,
    }
    make_tree(root, tree)  # type: ignore[arg-type]
    for path in ("/etc/init.d/fetchmail", SYSV_GEN, POSTFIX_GEN):
        (root / path.lstrip("/")).chmod(0o755)
    return root


def test_generated_units_are_loaded_and_marked(tmp_path: Path) -> None:
    loader = UnitLoader(RootFS(str(debian_root(tmp_path))))
    unit = loader.load("fetchmail.service")
    assert unit.fragment_path == "/run/systemd/generator.late/fetchmail.service"
    assert unit.generated_by == generators.SYSV
    assert [c.argv for c in unit.exec["ExecStart"]] == [("/etc/init.d/fetchmail", "start")]
    assert unit.last("Unit", "SourcePath").value == "/etc/init.d/fetchmail"  # type: ignore[union-attr]
    assert unit.last("Service", "TimeoutSec").value == "5min"  # type: ignore[union-attr]
    instance = loader.load("postfix@-.service")
    assert (instance.fragment_path, instance.generated_by) == ("/lib/systemd/system/postfix@.service",
                                                               generators.POSTFIX)
    assert loader.load("postfix@other.service").generated_by is None  # no generator names that one
    # deps/check/firewall with no unit named: enabled instances are services too
    assert {"fetchmail.service", "postfix@-.service"} <= set(loader.service_names())


def test_only_the_guests_own_generators_run(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / SYSV_GEN.lstrip("/")).unlink()
    (root / POSTFIX_GEN.lstrip("/")).unlink()
    loader = UnitLoader(RootFS(str(root)))
    assert loader.generated is not None and loader.generated.files == ()
    assert "fetchmail.service" not in loader.service_names()


def test_a_masked_or_replaced_generator_is_not_modelled(tmp_path: Path) -> None:
    root = debian_root(tmp_path, **{"/etc/systemd/system-generators/systemd-sysv-generator": {"symlink": "/dev/null"},
                                    "/etc/systemd/system-generators/postfix-instance-generator": "#!/bin/sh\n"})
    (root / "etc/systemd/system-generators/postfix-instance-generator").chmod(0o755)
    generated = UnitLoader(RootFS(str(root))).generated
    assert generated is not None and generated.files == ()
    assert generated.notes == ("/etc/systemd/system-generators/postfix-instance-generator replaces the packaged "
                               "postfix-instance-generator: its output is not modelled",)


def test_what_the_guests_run_dir_holds_is_replaced(tmp_path: Path) -> None:
    """A root copied from a running system: systemd empties the generator dirs at boot and runs them again."""
    root = debian_root(tmp_path, **{"/run/systemd/generator.late/stale.service": "[Service]\nExecStart=/bin/x\n",
                                    "/run/systemd/generator.late/fetchmail.service": "[Service]\nExecStart=/bin/y\n"})
    loader = UnitLoader(RootFS(str(root)))
    assert "stale.service" not in loader.service_names()
    assert loader.load("fetchmail.service").exec["ExecStart"][0].argv[0] == "/etc/init.d/fetchmail"
    assert loader.fs.read_text("/run/systemd/generator.late/stale.service") is None
    assert loader.fs.listdir("/run/systemd/generator.late") == ["fetchmail.service", "multi-user.target.wants"]
    # generators off: the tree as it is on disk
    plain = UnitLoader(RootFS(str(root)), run_generators=False)
    assert "stale.service" in plain.service_names() and plain.generated is None


def test_a_link_into_the_generated_dirs_reads_what_the_generator_makes_not_the_disk(tmp_path: Path) -> None:
    """The read gate opens a path without links in one call; a link that leads into /run/systemd/generator* is
    answered from the generated units (RootFS refuses it with NotOnDisk), never from a stale file on the disk."""
    root = debian_root(tmp_path, **{
        "/run/systemd/generator.late/fetchmail.service": "[Service]\nExecStart=/bin/stale\n",
        "/etc/fetchmail-unit": {"symlink": "/run/systemd/generator.late/fetchmail.service"}})
    fs = UnitLoader(RootFS(str(root))).fs
    made = fs.read_bytes("/run/systemd/generator.late/fetchmail.service")
    assert b"/etc/init.d/fetchmail" in made and b"stale" not in made
    assert fs.read_bytes("/etc/fetchmail-unit") == made
    assert fs.read_head("/etc/fetchmail-unit", 9) == made[:9]
    assert fs.read_text("/etc/fetchmailrc") == "poll pop.example.org protocol pop3 user u password p\n"
    # read_optional (EnvironmentFile=-...): the same answers, None where nothing is, on the disk or generated
    assert fs.read_optional("/run/systemd/generator.late/fetchmail.service") == made
    assert fs.read_optional("/etc/fetchmail-unit") == made
    assert fs.read_optional("/run/systemd/generator.late/none.service") is None
    assert fs.read_optional("/etc/none") is None
    with pytest.raises(IsADirectoryError):
        fs.read_optional("/run/systemd/generator.late")


def test_a_link_into_the_generated_dirs_lists_what_the_generator_makes_not_the_disk(tmp_path: Path) -> None:
    """Listing: a directory of the guest's own is listed by RootFS; a link that leads into the generated dirs is
    refused there (NotOnDisk) and listed from the generated units, never from stale entries on the disk."""
    root = debian_root(tmp_path, **{
        "/run/systemd/generator.late/stale.service": "[Service]\nExecStart=/bin/x\n",
        "/etc/generated": {"symlink": "/run/systemd/generator.late"},
        "/etc/own/a.conf": "x\n"})
    fs = UnitLoader(RootFS(str(root))).fs
    made = fs.scan("/run/systemd/generator.late")
    assert [name for name, _ in made] == ["fetchmail.service", "multi-user.target.wants"]
    assert fs.scan("/etc/generated") == made
    assert fs.scan("/etc/own") == [("a.conf", stat.S_IFREG)]
    with pytest.raises(NotOnDisk):
        RootFS.scan(fs, "/etc/generated")  # RootFS's own listing never reads the generated dirs from the disk


def test_not_on_a_live_system() -> None:
    assert generators.at_boot(RootFS("/"), UnitLoader(RootFS("/")).search_paths) is None


def test_a_native_unit_or_mask_wins(tmp_path: Path) -> None:
    root = debian_root(tmp_path, **{"/etc/systemd/system/fetchmail.service": {"symlink": "/dev/null"}})
    loader = UnitLoader(RootFS(str(root)))
    assert loader.load("fetchmail.service").masked
    assert loader.generated is not None
    assert not [f for f in loader.generated.files if f.generator == generators.SYSV]


def test_an_init_script_is_not_its_daemon(tmp_path: Path) -> None:
    """/etc/init.d/fetchmail start: the script is read and followed; "start" is no mail server."""
    loader = UnitLoader(RootFS(str(debian_root(tmp_path))))
    result = analyze(loader.load("fetchmail.service"), loader.fs)
    script, *inside = result.commands
    assert script.command.script == "/etc/init.d/fetchmail" and script.dependencies == ()
    targets = {d.target for entry in inside for d in entry.dependencies}
    assert "pop.example.org:110" in targets and not any(t.startswith("start") for t in targets)
    assert [r.unit.id for r in analyze_tree(loader)] == ["fetchmail.service"]


def test_show_and_deps_say_who_made_it(tmp_path: Path) -> None:
    root = str(debian_root(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    env = cli.Environment(stdout=out, stderr=err, stdout_isatty=False, environ={})
    assert cli.main(["show", "--root", root, "fetchmail.service", "--format", "json"], env) == 0
    assert json.loads(out.getvalue())["generated_by"] == "systemd-sysv-generator"
    out.truncate(0)
    out.seek(0)
    assert cli.main(["show", "--root", root, "fetchmail.service"], env) == 0
    text = out.getvalue()
    assert text.startswith("# made by systemd-sysv-generator at boot")
    assert "# /run/systemd/generator.late/fetchmail.service\n# Automatically generated by systemd-sysv-generator" \
        in text
    out.truncate(0)
    out.seek(0)
    cli.main(["deps", "--root", root, "--format", "json"], env)
    [unit] = json.loads(out.getvalue())["units"]
    assert (unit["name"], unit["generated_by"]) == ("fetchmail.service", "systemd-sysv-generator")


def test_saslauthd_from_its_init_script(tmp_path: Path) -> None:
    """Debian's saslauthd: enabled when START=yes and an S link (update-rc.d enable), as before the generated
    unit existed; its name is now the unit's."""
    from mailpreflight.auth.services import read_saslauthd

    root = debian_root(tmp_path, **{
        "/etc/init.d/saslauthd": "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: saslauthd\n### END INIT INFO\n",
        "/etc/rc2.d/K01saslauthd": {"symlink": "../init.d/saslauthd"},
        "/etc/default/saslauthd": 'START=yes\nMECHANISMS="pam"\n'})
    (root / "etc/init.d/saslauthd").chmod(0o755)
    loader = UnitLoader(RootFS(str(root)))
    found = read_saslauthd(loader.fs, loader)
    assert found is not None and (found.unit, found.enabled, found.mechanism) == ("saslauthd.service", False, "pam")
    (root / "etc/rc2.d/K01saslauthd").rename(root / "etc/rc2.d/S01saslauthd")
    loader = UnitLoader(RootFS(str(root)))
    found = read_saslauthd(loader.fs, loader)
    assert found is not None and found.enabled


def test_postconf_reads_main_cf_as_postconf_h(tmp_path: Path) -> None:
    """The last setting wins, continuation lines join, `#` lines are skipped, $names stay as written."""
    root = debian_root(tmp_path, **{
        "/etc/postfix/main.cf": "multi_instance_directories = /etc/postfix-x\n"
                                "multi_instance_directories = /etc/postfix-a\n# /etc/postfix-no\n"
                                "    $other /etc/postfix-b\n",
        "/etc/postfix-a/main.cf": "multi_instance_name = postfix-a\n",
        "/etc/postfix-b/main.cf": "multi_instance_name = postfix-b\n"})
    loader = UnitLoader(RootFS(str(root)))
    assert loader.generated is not None
    links = sorted(f.path.rsplit("/", 1)[1] for f in loader.generated.files if f.generator == generators.POSTFIX)
    # "$other": no such directory, no main.cf: postconf prints nothing, the link is postfix@.service
    assert links == ["postfix@-.service", "postfix@.service", "postfix@postfix-a.service",
                     "postfix@postfix-b.service"]
