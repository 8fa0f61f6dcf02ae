"""contrib/ansible: the role and the playbooks pass ansible-lint (production profile) and `ansible-playbook
--syntax-check`, and the role runs against this machine in check mode (--check, connection local) for both install
methods, reporting what it would do and changing nothing. tests/packaging/test_deb.py runs it for real against the
installed package (twice: the second run changes nothing)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_run import REPO, environment, run_site, tool

pytestmark = pytest.mark.packaging

PLAYBOOKS = (REPO / "contrib/ansible/site.yml", REPO / "docs/fleet/ansible-check.yml")
# what a real run would create; check mode must leave all of them as they were
TOUCHED = ("/var/cache/mailpreflight", "/etc/systemd/system/mailpreflight-check.service.d",
           "/etc/systemd/system/mailpreflight-check.service", "/etc/systemd/system/mailpreflight-check.timer",
           "/etc/systemd/system/timers.target.wants/mailpreflight-check.timer", "/opt/pipx/venvs/mailpreflight",
           "/usr/local/bin/mailpreflight", "/usr/bin/mailpreflight")


def need(name: str) -> str:
    found = tool(name)
    if found is None:
        pytest.skip(f"{name} not installed (the `test` extra: pip install -e '.[test]')")
    return found


def test_ansible_lint(tmp_path: Path) -> None:
    lint = need("ansible-lint")
    done = subprocess.run([lint, "--offline", "-c", "contrib/ansible/.ansible-lint", "contrib/ansible",
                           "docs/fleet/ansible-check.yml"], capture_output=True, text=True, timeout=300,
                          env=environment(tmp_path), cwd=REPO)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "0 failure(s), 0 warning(s)" in output, output


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_syntax_check(playbook: Path, tmp_path: Path) -> None:
    done = subprocess.run([need("ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)],
                          capture_output=True, text=True, timeout=120, env=environment(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def _existing() -> dict[str, bool]:
    return {path: os.path.lexists(path) for path in TOUCHED}


@pytest.fixture
def fresh_host(tmp_path: Path) -> Iterator[Path]:
    """This machine without mailpreflight; afterwards, nothing the role would create exists."""
    need("ansible-playbook")
    if os.geteuid() != 0:
        pytest.skip("needs root: the role's apt and systemd tasks look at this machine as root would")
    if not Path("/usr/bin/apt-get").exists() or not Path("/usr/bin/python3").exists():
        pytest.skip("needs a Debian machine (apt, /usr/bin/python3 with python3-apt)")
    before = _existing()
    if before["/usr/bin/mailpreflight"] or before["/usr/local/bin/mailpreflight"]:
        pytest.skip("mailpreflight is installed on this machine: not the fresh host the check-mode run is about")
    yield tmp_path
    assert _existing() == before, "check mode changed the machine"


def test_check_mode_package(fresh_host: Path, request: pytest.FixtureRequest) -> None:
    built_deb = request.getfixturevalue("built_deb")  # after fresh_host: a session fixture would come first
    textfile = fresh_host / "textfile"
    run = run_site({"mailpreflight_package_file": str(built_deb), "mailpreflight_textfile_dir": str(textfile),
                    "mailpreflight_dropin_units": ["spamd.service"]}, fresh_host, check=True)
    assert run.returncode == 0 and run.recap.get("failed") == 0, run.output
    expected = {
        "Copy the package file to the host": "changed",
        # nothing was copied, so there is nothing to install from yet: the copy above says it would change
        "Install the package file (Debian, Ubuntu)": "skipping",
        "Create the textfile directory": "changed",
        "Point the check service at the textfile directory": "changed",
        # no program and no units yet
        "Guard the listed units with a drop-in": "skipping",
        "Enable the hourly check (and start it where systemd runs)": "skipping",
    }
    assert {task: run.tasks.get(task) for task in expected} == expected, run.output
    assert f"+ExecStart=/usr/bin/mailpreflight check --format prometheus --output {textfile}/mailpreflight.prom\n" \
        in run.output
    assert not textfile.exists()


def test_check_mode_pipx(fresh_host: Path) -> None:
    wheels = fresh_host / "wheels"
    # offline, with Debian's pip, setuptools and wheel (as the RPM test builds)
    built = subprocess.run(["/usr/bin/python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(fresh_host)})
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"Debian's python3 cannot build the wheel (apt-get install python3-pip python3-wheel): "
                    f"{built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("mailpreflight-*.whl"))
    run = run_site({"mailpreflight_install_method": "pipx", "mailpreflight_pipx_source": str(wheel),
                    "mailpreflight_textfile_dir": str(fresh_host / "textfile")}, fresh_host, check=True)
    assert run.returncode == 0 and run.recap.get("failed") == 0, run.output
    assert run.tasks.get("Install pipx") in ("ok", "changed")
    expected = {
        "Copy the wheel to the host": "changed",
        # a command with creates=: check mode says it would run (and does not run it)
        "Install mailpreflight with pipx, its venv in /opt/pipx": "changed",
        "Install the units": "changed",
        "Enable the hourly check (and start it where systemd runs)": "skipping",
    }
    assert {task: run.tasks.get(task) for task in expected} == expected, run.output
    # a pipx install runs /usr/local/bin/mailpreflight
    assert "+ExecStart=/usr/local/bin/mailpreflight check --format prometheus " in run.output


def test_the_role_refuses_what_it_cannot_write_into_a_unit(tmp_path: Path) -> None:
    need("ansible-playbook")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs /usr/bin/python3 to run the modules")
    run = run_site({"mailpreflight_check_args": ["--deadline 30"]}, tmp_path, check=True)
    assert run.returncode != 0 and run.tasks.get("Check the role's variables") == "fatal", run.output
    assert "plain words" in run.output
