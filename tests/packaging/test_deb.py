"""The Debian package, end to end on this machine: `packaging/deb/build` makes dist/mailpreflight_<version>_all.deb,
lintian accepts it, `apt-get install ./dist/...deb` installs it, the installed tool works from /usr/bin with
Debian's own libraries (python3-dnspython, python3-pystemd, python3-dbus), its units pass systemd-analyze verify,
the drop-in it writes names /usr/bin/mailpreflight, and `apt-get purge` leaves nothing behind.

Needs root, Debian's dpkg/apt and the build tools (./bootstrap installs them); skips, saying why, elsewhere.
It installs the package on THIS machine and purges it again at the end (also when a test fails), together
with any package the install pulled in that was not there before."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ansible_run
import pytest

from mailpreflight import __version__

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "units/examples/opensuse-leap15-mail"
DEB = REPO / "dist" / f"mailpreflight_{__version__}_all.deb"
PROGRAM = "/usr/bin/mailpreflight"
UNIT_DIR = "/usr/lib/systemd/system"
UNITS = ("mailpreflight-check.service", "mailpreflight-check.timer", "mailpreflight@.service")
DEPENDS = ("python3-dnspython", "python3-requests", "python3-urllib3", "python3-dbus", "python3-pystemd")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"]
# the tests of the D-Bus backends (pystemd and dbus-python, against a real systemd) and of the DNS/HTTP probes
# (dnspython, requests, against dnsmasq and an HTTP server on loopback), run on the INSTALLED package
LIBRARY_TESTS = ("tests/integration/test_explain_systemd.py", "tests/integration/test_check_loopback.py")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: installs the package on this machine with apt-get and purges it again"
    if not Path("/etc/debian_version").exists():
        return "not a Debian system"
    for tool in ("dpkg-buildpackage", "dpkg-deb", "dpkg-query", "apt-get", "lintian", "systemd-analyze"):
        if shutil.which(tool, path=APT_ENV["PATH"]) is None:
            return f"{tool} not found (./bootstrap installs dpkg-dev, lintian, debhelper, systemd)"
    return None


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None,
        cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def deb(request: pytest.FixtureRequest) -> Path:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    assert request.getfixturevalue("built_deb") == DEB  # built once per session (conftest.py)
    return DEB


@dataclass(frozen=True)
class Installed:
    pulled_in: tuple[str, ...]  # what apt installed besides mailpreflight (its Depends, if missing)
    files: tuple[str, ...]  # the package's own paths (dpkg -L, those naming mailpreflight)


def _new_packages(apt_output: str) -> list[str]:
    """The packages apt-get itself says it installs ("The following NEW packages will be installed:"): the
    only ones this test may purge again. Never a diff of the whole package list: other work on a shared
    machine installs packages at the same time."""
    match = re.search(r"^The following NEW packages will be installed:\n((?:  .*\n)+)", apt_output, re.M)
    return match[1].split() if match else []


def _is_installed() -> bool:
    return run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "mailpreflight"], env=APT_ENV).stdout.startswith("i")


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Installed]:
    """The package installed on this machine; purged afterwards with whatever its install pulled in."""
    if _is_installed():
        pytest.skip("mailpreflight is installed on this machine already: the test would replace it "
                    "(apt-get purge mailpreflight first)")
    # --no-install-recommends: the Recommends python3-guestfs would bring libguestfs with its appliance
    # (qemu, a kernel): hundreds of MB this test does not use
    done = run([*APT, "install", "--no-install-recommends", str(deb)], timeout=600, env=APT_ENV)
    new = _new_packages(done.stdout)
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        assert "mailpreflight" in new, done.stdout[-2000:]
        listed = run(["dpkg", "-L", "mailpreflight"], env=APT_ENV).stdout.splitlines()
        yield Installed(tuple(p for p in new if p != "mailpreflight"),
                        tuple(p for p in listed if "mailpreflight" in p))
    finally:
        leftovers = [p for p in new if p != "mailpreflight"] + (["mailpreflight"] if _is_installed() else [])
        if leftovers:
            run([*APT, "purge", *leftovers], timeout=600, env=APT_ENV)


# --------------------------------------------------------------------------------------- the built package
def test_lintian_finds_no_errors_or_warnings(deb: Path) -> None:
    done = run(["lintian", "--fail-on", "error,warning", "--no-tag-display-limit", str(deb)], timeout=300,
               env=APT_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")], done.stdout


def test_control_fields(deb: Path) -> None:
    fields = run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Depends", "Recommends"],
                 env=APT_ENV).stdout
    assert f"Version: {__version__}\n" in fields and "Architecture: all\n" in fields
    depends = fields.split("Depends: ", 1)[1].split("\n", 1)[0]
    assert all(package in depends.replace(",", " ").split() for package in DEPENDS), depends
    assert "python3:any (>= 3.11~)" in depends  # Debian's python3, not a venv's
    # gpg: check judges sa-update's signatures with it (predict/keyring.py); python3-guestfs: --image/--domain
    assert "Recommends: gpg, python3-guestfs\n" in fields


def test_contents(deb: Path, tmp_path: Path) -> None:
    listing = run(["dpkg-deb", "--contents", str(deb)], env=APT_ENV).stdout
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    expected = {PROGRAM, "/usr/lib/python3/dist-packages/mailpreflight/cli/__init__.py",
                "/usr/lib/python3/dist-packages/mailpreflight/units/keys-252.txt",
                "/usr/share/man/man1/mailpreflight.1.gz", "/usr/share/bash-completion/completions/mailpreflight",
                "/usr/share/doc/mailpreflight/copyright", "/usr/share/doc/mailpreflight/changelog.gz",
                "/usr/share/doc/mailpreflight/units.md", "/usr/share/doc/mailpreflight/README.md",
                *(f"{UNIT_DIR}/{unit}" for unit in UNITS)}
    assert expected <= paths, expected - paths
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]  # compiled by py3compile on install
    assert not [p for p in paths if p.startswith(("/etc/systemd", "/lib/"))]  # nothing enabled, units in /usr
    run(["dpkg-deb", "--extract", str(deb), str(tmp_path)], env=APT_ENV)
    # units/ name /usr/local/bin (pip, pipx); the package's name /usr/bin/mailpreflight
    for unit in UNITS:
        text = (tmp_path / UNIT_DIR.lstrip("/") / unit).read_text()
        assert "/usr/local" not in text, unit
        assert unit.endswith(".timer") or f"ExecStart={PROGRAM} check " in text, unit
    # the Debian changelog is CHANGELOG.md's, and its newest entry is this version
    changelog = gzip.decompress((tmp_path / "usr/share/doc/mailpreflight/changelog.gz").read_bytes()).decode()
    assert changelog.startswith(f"mailpreflight ({__version__}) ")
    assert (tmp_path / "usr/share/man/man1/mailpreflight.1.gz").exists()


# ------------------------------------------------------------------------------------- installed with apt
def test_installed_from_usr_bin_without_extra_packages(installed: Installed) -> None:
    # ./bootstrap installs the Depends beforehand, so the package itself is all the install adds
    assert not installed.pulled_in, f"apt-get install also installed {sorted(installed.pulled_in)}: add them to " \
                                    "APT_PACKAGES in ./bootstrap"
    assert run(["dpkg-query", "-S", PROGRAM], env=APT_ENV).stdout.startswith("mailpreflight: ")
    version = run([PROGRAM, "--version"], env=APT_ENV)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"mailpreflight {__version__}"


def test_deps_on_the_example_guest(installed: Installed) -> None:
    done = run([PROGRAM, "deps", "--root", str(EXAMPLE)], env=APT_ENV, cwd="/")
    # 2: the example's spamd has the critical sa-update risk on purpose (README, bootstrap's demo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "spamd.service" in done.stdout and "CRITICAL" in done.stdout and "sa-update" in done.stdout


def _verify(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # log level warning: unknown keys and bad values are warnings, which "err" would hide
    env = {**APT_ENV, "SYSTEMD_LOG_LEVEL": "warning", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"}
    return run(["systemd-analyze", "verify", "--man=no", *args], env=env, cwd=cwd)


def test_installed_units_verify_and_are_not_enabled(installed: Installed, tmp_path: Path) -> None:
    # the files where apt put them; the template as it is used, instantiated with a full unit name
    # (Wants=mailpreflight@%n.service), looked up by name in the system's unit path
    done = _verify([f"{UNIT_DIR}/mailpreflight-check.service", f"{UNIT_DIR}/mailpreflight-check.timer",
                    "mailpreflight@spamd.service.service"], tmp_path)
    assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr
    # the same check fails when the program the units run is not there: verify really looked at ExecStart=
    broken = tmp_path / "mailpreflight-check.service"
    broken.write_text(Path(UNIT_DIR, "mailpreflight-check.service").read_text().replace(PROGRAM, PROGRAM + "-gone"))
    failed = _verify([str(broken)], tmp_path)
    assert failed.returncode != 0 and f"{PROGRAM}-gone is not executable" in failed.stdout + failed.stderr
    for unit in ("mailpreflight-check.timer", "mailpreflight-check.service"):
        state = run(["systemctl", "is-enabled", unit], env=APT_ENV).stdout.strip()
        assert state in ("disabled", "static"), (unit, state)


def test_installed_dropin_names_usr_bin(installed: Installed, tmp_path: Path) -> None:
    root = tmp_path / "guest"
    shutil.copytree(EXAMPLE, root, symlinks=True)
    # the guest has the package too (a drop-in written into a guest calls only what the guest has: its own
    # /usr/bin/mailpreflight here; fix/inguest.py)
    (root / "usr/bin/mailpreflight").write_text("#!/usr/bin/python3\n")
    (root / "usr/bin/mailpreflight").chmod(0o755)
    # another mailpreflight first on PATH (a venv, /usr/local/bin): the drop-in must still name the program
    # that wrote it, /usr/bin/mailpreflight, which every host with the package has
    decoy = tmp_path / "bin"
    decoy.mkdir()
    (decoy / "mailpreflight").write_text("#!/bin/sh\nexit 99\n")
    (decoy / "mailpreflight").chmod(0o755)
    env = {**APT_ENV, "PATH": f"{decoy}:{APT_ENV['PATH']}"}
    done = run(["mailpreflight", "dropin", "install", "spamd.service", "--root", str(root)], env=env)
    assert done.returncode == 99  # the decoy: PATH really comes first
    done = run([PROGRAM, "dropin", "install", "spamd.service", "--root", str(root)], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (root / "etc/systemd/system/spamd.service.d/zz-mailpreflight.conf").read_text()
    assert f"# Installed by mailpreflight {__version__};" in text
    assert f'ExecStartPre=-{PROGRAM} guard --timeout 60 -- /bin/bash -c "sa-update || true"\n' in text, text
    # and the guard it names runs the wrapped command
    guarded = run([PROGRAM, "guard", "--timeout", "5", "--", "/bin/sh", "-c", "exit 0"], env=APT_ENV)
    assert guarded.returncode == 0, guarded.stderr


def test_debian_libraries_pass_the_backend_and_probe_tests(installed: Installed, tmp_path: Path) -> None:
    """Debian 12's python3 with python3-pystemd 0.11, python3-dbus 1.3.2, python3-dnspython 2.3 (older than
    what pip would install): the tests of the code that uses them pass on the installed package."""
    python = "/usr/bin/python3"
    env = {**APT_ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    if run([python, "-c", "import pytest, jsonschema"], env=env).returncode != 0:
        pytest.skip("python3-pytest and python3-jsonschema are needed to run the tests with Debian's python3")
    where = run([python, "-c", "import mailpreflight; print(mailpreflight.__file__)"], env=env, cwd=REPO)
    assert where.stdout.startswith("/usr/lib/python3/dist-packages/mailpreflight/"), where.stdout + where.stderr
    report = tmp_path / "report.xml"
    done = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={report}",
                *LIBRARY_TESTS], env=env, cwd=REPO, timeout=600)
    assert done.returncode in (0, 5) and report.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == 0, done.stdout[-3000:]
    if counts["skipped"]:
        pytest.skip(f"{counts['skipped']} of the library tests skipped here: {done.stdout[-1500:]}")
    assert counts["tests"] >= 15, counts


def test_ansible_role_configures_the_installed_package(installed: Installed, deb: Path, tmp_path: Path) -> None:
    """contrib/ansible's role for real on this machine: package (already installed from the same file: unchanged),
    textfile directory and the check service's drop-in, a guarded unit (in a copy of the example guest), the timer
    enabled; then a check-mode run finds nothing left to change."""
    if ansible_run.tool("ansible-playbook") is None:
        pytest.skip("ansible-playbook not installed (the `test` extra: pip install -e '.[test]')")
    textfile = tmp_path / "textfile"
    guest = tmp_path / "guest"
    shutil.copytree(EXAMPLE, guest, symlinks=True)
    (guest / "usr/bin/mailpreflight").write_text("#!/usr/bin/python3\n")  # the guest has the package too:
    (guest / "usr/bin/mailpreflight").chmod(0o755)  # the drop-in calls the guest's own (fix/inguest.py)
    variables = {"mailpreflight_package_file": str(deb), "mailpreflight_textfile_dir": str(textfile),
                 "mailpreflight_check_args": ["--deadline", "30"], "mailpreflight_dropin_units": ["spamd.service"],
                 "mailpreflight_dropin_root": str(guest),
                 # enabled, not started: on a machine where systemd runs, a started timer could run a real check
                 # (network probes) before the purge
                 "mailpreflight_timer_state": ""}
    conf_dir = Path("/etc/systemd/system/mailpreflight-check.service.d")
    cache = Path("/var/cache/mailpreflight")
    link = Path("/etc/systemd/system/timers.target.wants/mailpreflight-check.timer")
    leave = {p: os.path.lexists(p) for p in (conf_dir, cache, link)}
    assert not any(leave.values()), leave  # nothing of the role's on this machine before
    try:
        first = ansible_run.run_site(variables, tmp_path)
        assert first.returncode == 0 and first.recap.get("failed") == 0, first.output
        expected = {"Install the package file (Debian, Ubuntu)": "ok",  # the same version is installed
                    "Create the textfile directory": "changed",
                    "Point the check service at the textfile directory": "changed",
                    "Install the drop-in that guards the unit's network ExecStartPre": "changed",
                    "Enable the hourly check (and start it where systemd runs)": "changed"}
        assert {task: first.tasks.get(task) for task in expected} == expected, first.output
        assert textfile.is_dir() and (textfile.stat().st_mode & 0o777) == 0o755 and textfile.stat().st_uid == 0
        # the check service as systemd (verify) and mailpreflight's own loader see it with the drop-in
        done = _verify(["mailpreflight-check.service"], tmp_path)
        assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr
        shown = json.loads(run([PROGRAM, "show", "mailpreflight-check.service", "--format", "json"],
                               env=APT_ENV).stdout)
        assert shown["dropin_paths"] == [str(conf_dir / "ansible-textfile.conf")]
        assert [c["argv"] for c in shown["exec"]["ExecStart"]] == [
            [PROGRAM, "check", "--format", "prometheus", "--output", f"{textfile}/mailpreflight.prom",
             "--deadline", "30"]]
        assert f"\nReadWritePaths=\nReadWritePaths={textfile}\n" in (conf_dir / "ansible-textfile.conf").read_text()
        assert link.is_symlink()
        guarded = (guest / "etc/systemd/system/spamd.service.d/zz-mailpreflight.conf").read_text()
        assert f"ExecStartPre=-{PROGRAM} guard --timeout 60 -- " in guarded
        # run again in check mode: nothing left to change
        checked = ansible_run.run_site(variables, tmp_path, check=True)
        assert checked.returncode == 0 and checked.recap.get("changed") == 0, checked.output
        # in check mode the drop-in task runs `dropin install --dry-run`: current, so no diff
        assert checked.tasks.get("Install the drop-in that guards the unit's network ExecStartPre") == "ok"
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        if link.is_symlink():
            link.unlink()


# ------------------------------------------------------------------------------------------ last: purge
def test_purge_leaves_nothing(installed: Installed) -> None:
    assert installed.files and PROGRAM in installed.files
    # an admin enabled the timer (what contrib/ansible does); purge removes that link too (deb-systemd-helper)
    link = Path("/etc/systemd/system/timers.target.wants/mailpreflight-check.timer")
    try:
        enabled = run(["systemctl", "enable", "mailpreflight-check.timer"], env=APT_ENV)
        assert enabled.returncode == 0 and link.is_symlink(), enabled.stderr
        done = run([*APT, "purge", "mailpreflight"], timeout=600, env=APT_ENV)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        gone = not os.path.lexists(link)
    finally:
        if link.is_symlink():
            link.unlink()
    assert gone, f"{link} survived the purge"
    listed = run(["dpkg", "-L", "mailpreflight"], env=APT_ENV)
    assert listed.returncode != 0 and listed.stdout == "", listed.stdout
    assert not _is_installed()
    # the package's files, what py3compile made next to them (__pycache__ under its directory), dpkg's
    # records, deb-systemd-helper's state of the timer
    maintainer = [f"/var/lib/dpkg/info/mailpreflight.{s}" for s in ("list", "md5sums", "postinst", "postrm", "prerm")]
    state = ["/var/lib/systemd/deb-systemd-helper-enabled/mailpreflight-check.timer.dsh-also"]
    left = [p for p in (*installed.files, *maintainer, *state) if os.path.lexists(p)]
    assert not left, left
