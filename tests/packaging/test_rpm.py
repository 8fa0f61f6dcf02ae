"""packaging/rpm/mailpreflight.spec: its version is mailpreflight's; it parses for openSUSE Leap 15, Leap 16 /
Tumbleweed and Fedora with the right interpreter and package names; rpmlint finds no error in it; and `rpmbuild -bb`
runs its %build, %install and %check on this Debian machine (Debian's rpm, python3 and pip).

What cannot be checked here: the distributions' own macros (systemd-rpm-macros' %systemd_post & co. are not in
Debian's rpm, so the scriptlets stay unexpanded), their package names existing, their python3.11/pip. See
packaging/rpm/README.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailpreflight import __version__

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging/rpm/mailpreflight.spec"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
UNITS = ("mailpreflight-check.service", "mailpreflight-check.timer", "mailpreflight@.service")

DISTRIBUTIONS = {
    # name: (rpm --define, interpreter, package prefix, dbus-python's package)
    "leap15": ("suse_version 1500", "/usr/bin/python3.11", "python311", "python311-dbus-python"),
    "leap16": ("suse_version 1600", "/usr/bin/python3", "python3", "python3-dbus-python"),
    "fedora": ("fedora 41", "/usr/bin/python3", "python3", "python3-dbus"),
}


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env or ENV, cwd=REPO)


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool, path=ENV["PATH"]) is None:
            pytest.skip(f"{tool} not found (Debian: apt-get install rpm rpmlint; ./bootstrap does)")


def rpmspec(define: str, *query: str) -> list[str]:
    done = run(["rpmspec", "--define", define, *query, str(SPEC)])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_version_and_changelog_are_mailpreflights() -> None:
    text = SPEC.read_text()
    assert re.search(r"^Version:\s+(\S+)$", text, re.M)[1] == __version__  # type: ignore[index]
    changelog = text.split("\n%changelog\n", 1)[1]
    first = changelog.splitlines()[0]
    assert first.startswith("* ") and first.endswith(f" - {__version__}-1"), first


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_rpmspec_per_distribution(distribution: str) -> None:
    need("rpmspec")
    define, python, prefix, dbus = DISTRIBUTIONS[distribution]
    assert rpmspec(define, "-q", "--qf", "%{name} %{version} %{arch}\n") == [f"mailpreflight {__version__} noarch"]
    requires = set(rpmspec(define, "-q", "--requires"))
    assert {f"{prefix}-dnspython >= 2.3", f"{prefix}-requests >= 2.28", dbus} <= requires, requires
    assert rpmspec(define, "-q", "--qf", "[%{RECOMMENDS}\n]") == [f"{prefix}-pystemd"]
    build_requires = set(rpmspec(define, "-q", "--buildrequires"))
    assert {f"{prefix}-pip", f"{prefix}-setuptools", f"{prefix}-wheel", "systemd-rpm-macros"} <= build_requires
    assert ("bash-completion" in build_requires) == distribution.startswith("leap")
    parsed = "\n".join(rpmspec(define, "-P"))
    assert f"\n{python} -m pip wheel " in parsed and f"\n{python} -m pip install " in parsed
    # the units' scriptlets (the macros themselves come from systemd-rpm-macros on the distribution)
    units = "mailpreflight-check.service mailpreflight-check.timer"
    for scriptlet in (f"%post\n%systemd_post {units}", f"%preun\n%systemd_preun {units}",
                      "%postun\n%systemd_postun_with_restart mailpreflight-check.timer\n"
                      "%systemd_postun mailpreflight-check.service"):
        assert scriptlet in parsed, scriptlet
    assert (f"%pre\n%service_add_pre {units}" in parsed) == distribution.startswith("leap")


def test_rpmlint_finds_no_errors_in_the_spec() -> None:
    need("rpmlint")
    done = run(["rpmlint", str(SPEC)])
    assert done.returncode == 0 and " 0 errors," in done.stdout, done.stdout + done.stderr


def test_rpmbuild_on_debian(tmp_path: Path) -> None:
    """The spec's own %build/%install/%check with Debian's python3 and pip (the generic branch: python3)."""
    need("rpmbuild", "rpm2cpio", "cpio")
    if run(["/usr/bin/python3", "-c", "import setuptools, wheel, pip, dns, requests"]).returncode != 0:
        pytest.skip("Debian's python3 needs pip, dnspython, requests, setuptools, wheel for this "
                    "(apt-get install python3-pip python3-dnspython python3-requests python3-setuptools python3-wheel)")
    # deb_system: Debian's pip installs --prefix /usr into /usr/lib/python3/dist-packages and /usr/bin, as the
    # RPM distributions' pip do into theirs (without it Debian's pip adds /usr/local)
    env = {**ENV, "DEB_PYTHON_INSTALL_LAYOUT": "deb_system"}
    # --nodeps: the BuildRequires are RPM package names, unknown to this machine's (empty) RPM database
    done = run([str(REPO / "packaging/rpm/build"), "--nodeps"], timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rpm = REPO / "dist" / f"mailpreflight-{__version__}-1.noarch.rpm"
    assert done.stdout.splitlines() == [str(REPO / "dist" / f"mailpreflight-{__version__}.tar.gz"), str(rpm)]
    files = set(run(["rpm", "-qlp", str(rpm)]).stdout.splitlines())
    expected = {"/usr/bin/mailpreflight", "/usr/share/doc/mailpreflight/units.md",
                "/usr/share/licenses/mailpreflight/LICENSE", "/usr/share/bash-completion/completions/mailpreflight",
                *(f"/usr/lib/systemd/system/{unit}" for unit in UNITS)}
    assert expected <= files, expected - files
    assert any(f.startswith("/usr/share/man/man1/mailpreflight.1") for f in files)
    assert any(f.endswith("/mailpreflight/units/keys-252.txt") for f in files)
    assert any(re.search(r"/mailpreflight/cli/__pycache__/__init__\.cpython-\d+\.pyc$", f) for f in files)
    assert not [f for f in files if f.startswith("/usr/local")]
    requires = run(["rpm", "-qp", "--requires", str(rpm)]).stdout
    assert "python3-dnspython >= 2.3" in requires and "python3-dbus" in requires
    # the payload: units name the packaged program and docs; no build path left in any file
    payload = tmp_path / "payload"
    payload.mkdir()
    extract = subprocess.run(f"rpm2cpio {rpm} | cpio -idm --quiet", shell=True, cwd=payload, env=ENV,
                             capture_output=True, text=True, timeout=120)
    assert extract.returncode == 0, extract.stderr
    service = (payload / "usr/lib/systemd/system/mailpreflight-check.service").read_text()
    assert "ExecStart=/usr/bin/mailpreflight check " in service and "/usr/local" not in service
    assert "Documentation=file:/usr/share/doc/mailpreflight/units.md\n" in service
    leaked = run(["grep", "-rl", "rpmbuild/BUILD", str(payload)])
    assert leaked.stdout == "", leaked.stdout
