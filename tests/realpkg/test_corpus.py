"""The real Debian 12 packages: the root they make, our loader on every unit they ship (against systemd's own
`systemd-analyze verify`), and the verbs on what the generators make of their init scripts."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import debroot
import pytest

from mailpreflight import cli
from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth.services import read_saslauthd
from mailpreflight.units.loader import LoadState, UnitLoader
from mailpreflight.units.searchpath import systemd_version

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system")
_MESSAGE = re.compile(r"^(?P<file>/\S+?):(?P<line>\d+): (?P<msg>.*)$")
GENERATED = ("exim4.service", "fetchmail.service", "saslauthd.service", "postfix@-.service")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), cli.Environment(stdout=out, stderr=err, stdout_isatty=False, environ={}))
    return code, out.getvalue(), err.getvalue()


def test_the_root_is_what_the_packages_make(debian_build: debroot.Build, debian_root: Path) -> None:
    fs = RootFS(str(debian_root))
    assert systemd_version(fs) == 252  # from libsystemd-shared-252.so in the multiarch dir
    assert (debian_root / "lib").is_symlink() and (debian_root / "usr/lib/systemd/system/spamd.service").is_file()
    enabled = dict((unit, package) for package, unit in debian_build.enabled)
    # what the postinsts enable on a fresh install (dh_installsystemd), and what they leave to upgrades
    assert {"spamd.service", "postfix.service", "dovecot.service", "clamav-daemon.service",
            "opendkim.service", "postgrey.service", "getty@tty1.service"} <= set(enabled)
    assert ("spamassassin", "spamassassin-maintenance.timer") in debian_build.not_enabled
    wants = debian_root / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "spamd.service") == "/lib/systemd/system/spamd.service"
    assert not (debian_root / "etc/systemd/system/timers.target.wants/spamassassin-maintenance.timer").exists()
    # update-rc.d: S01 for `defaults`, K01 for `defaults-disabled` (saslauthd, amavis-mc)
    assert os.readlink(debian_root / "etc/rc2.d/S01exim4") == "../init.d/exim4"
    assert (debian_root / "etc/rc2.d/K01saslauthd").is_symlink()
    assert not (debian_root / "etc/postfix/main.cf").exists()  # the postinst writes it, from debconf answers


def unit_files(root: Path) -> list[Path]:
    found = []
    for directory in UNIT_DIRS:
        for path in sorted((root / directory).glob("*")):
            name = path.name
            if "@" in name or path.is_dir() or not re.search(r"\.(service|socket|timer|path)$", name):
                continue
            if path.is_symlink() and os.readlink(path) == "/dev/null":
                continue
            found.append(path)
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_loader_agrees_with_systemd_analyze(debian_root: Path) -> None:
    """Every unit the packages ship, and what the sysv generator makes: systemd's own parser reports the same
    problems on the same lines (none, for these packages), and loads them."""
    loader = UnitLoader(RootFS(str(debian_root)))
    generated = debian_root.parent / "generated"
    generated.mkdir(exist_ok=True)
    assert loader.generated is not None
    for entry in loader.generated.files:
        if entry.data is not None:
            (generated / entry.path.rsplit("/", 1)[1]).write_bytes(entry.data)
    # one of ours, so that the comparison is seen to compare: both must flag its line 5
    (generated / "planted.service").write_text("[Unit]\nDescription=x\n\n[Service]\nNoSuchKey=1\n"
                                               "ExecStart=/bin/true\n", encoding="utf-8")
    paths = [p for p in unit_files(debian_root) if not p.is_symlink()] + sorted(generated.glob("*.service"))
    assert len(paths) > 100
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)], capture_output=True,
                          text=True, errors="replace", timeout=120,
                          env={"SYSTEMD_LOG_LEVEL": "info", "PATH": "/usr/bin:/bin"})
    theirs = {(m["file"], int(m["line"]), " ".join(m["msg"].split()[:3]))
              for m in map(_MESSAGE.match, proc.stderr.splitlines()) if m}
    planted = UnitLoader(RootFS(str(generated)), search_paths=["/"]).load("planted.service")
    ours = {(str(generated / "planted.service"), d.source.systemd_line, " ".join(d.message.split()[:3]))
            for d in planted.diagnostics if d.source.line}
    for path in paths:
        if path.name == "planted.service":
            continue
        unit = loader.load(path.name)
        assert unit.load_state is LoadState.LOADED, (path, unit.load_error)
        shown = str(path) if path.parent == generated else str(debian_root) + (unit.fragment_path or "")
        ours |= {(shown, d.source.systemd_line, " ".join(d.message.split()[:3])) for d in unit.diagnostics
                 if d.source.line}
    assert ours == theirs
    assert (str(generated / "planted.service"), 5, "Unknown key 'NoSuchKey'") in theirs
    assert "failed to load" not in proc.stderr and "bad unit file setting" not in proc.stderr


def test_generated_units_by_name_and_by_default(debian_root: Path) -> None:
    root = str(debian_root)
    loader = UnitLoader(RootFS(root))
    assert set(GENERATED) <= set(loader.service_names())  # what deps/check/firewall look at with no unit named
    code, out, err = run("deps", "--root", root, "--format", "json", *GENERATED)
    assert code != 3, err
    units = {u["name"]: u for u in json.loads(out)["units"]}
    assert {n: u["generated_by"] for n, u in units.items()} == {
        "exim4.service": "systemd-sysv-generator", "fetchmail.service": "systemd-sysv-generator",
        "saslauthd.service": "systemd-sysv-generator", "postfix@-.service": "postfix-instance-generator"}
    exim = units["exim4.service"]["commands"]
    assert exim[0]["argv"] == ["/etc/init.d/exim4", "start"] and exim[0]["dependencies"] == []
    assert any(c["tool"] == "exim4" and c["via"][:1] == ["/etc/init.d/exim4"] for c in exim)  # the script is read
    code, out, _ = run("show", "--root", root, "exim4.service")
    assert code == 0 and out.startswith("# made by systemd-sysv-generator at boot")
    assert "ExecStart=/etc/init.d/exim4 start" in out and "After=network-online.target" in out


def test_saslauthd_enabled_the_debian_way(debian_root: Path, tmp_path: Path) -> None:
    """sasl2-bin installs saslauthd disabled (update-rc.d defaults-disabled; its init script wants START=yes,
    which /etc/default/saslauthd does not set). The admin's two steps, with the real update-rc.d: then its
    generated unit is enabled."""
    root = debroot.linked_copy(debian_root, tmp_path / "root")
    loader = UnitLoader(RootFS(str(root)))
    found = read_saslauthd(loader.fs, loader)
    assert found is not None and (found.unit, found.enabled) == ("saslauthd.service", False)
    default = root / "etc/default/saslauthd"
    text = default.read_text(encoding="utf-8") + "START=yes\n"
    default.unlink()  # a linked copy: never write into the shared file
    default.write_text(text, encoding="utf-8")
    update_rc_d = shutil.which("update-rc.d") or "/usr/sbin/update-rc.d"
    subprocess.run([update_rc_d, "saslauthd", "enable"], env={**os.environ, "DPKG_ROOT": str(root)}, check=True,
                   capture_output=True)
    loader = UnitLoader(RootFS(str(root)))
    assert "multi-user.target.wants/saslauthd.service" in {
        f.path.split("generator.late/", 1)[-1] for f in loader.generated.files}  # type: ignore[union-attr]
    found = read_saslauthd(loader.fs, loader)
    assert found is not None and (found.unit, found.enabled, found.mechanism) == ("saslauthd.service", True, "pam")
