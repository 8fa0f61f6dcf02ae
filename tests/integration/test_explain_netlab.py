"""`explain` over the namespace lab: a REAL systemd user manager runs inside the firewalled "mail" namespace
and starts a spamd-like unit whose ExecStartPre is the REAL sa-update; explain must name the command, the
cause (exit code, or a timeout that `|| true` cannot save) and tie it to a fresh check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import NetLab, SigningKey, unavailable_reason
from systemd_lab import UserManagerLab
from systemd_lab import unavailable_reason as lab_unavailable

UNIT = "mp-spamd.service"


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetLab, UserManagerLab]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"systemd lab unavailable: {reason}")
    key = SigningKey.create(tmp_path / "signer")
    with NetLab(tmp_path / "net", signing_key=key) as net:
        net.firewall(request.param)
        with UserManagerLab(tmp_path / "sd", netns=net.mail_ns) as manager:
            yield net, manager
    key.close()


def spamd_unit(net: NetLab, updatedir: Path, pre: str, timeout: int) -> str:
    assert net.signing_key is not None
    sa_update = (f"/usr/bin/sa-update --gpgkey {net.signing_key.fingerprint} --gpghomedir {net.gpghomedir} "
                 f"--updatedir {updatedir}")
    return (f"[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\nType=oneshot\n"
            f"TimeoutStartSec={timeout}\nExecStartPre={pre.format(sa_update=sa_update)}\nExecStart=/bin/true\n")


def run_explain(net: NetLab, manager: UserManagerLab) -> dict[str, Any]:
    env = {**os.environ, **manager.env}
    done = subprocess.run(["ip", "netns", "exec", net.mail_ns, sys.executable, "-m", "mailpreflight", "explain",
                           "--user", UNIT, "--format", "json", "--timeout", "2"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("lab", ["http-reject"], indirect=True)
def test_real_sa_update_failing_by_exit_code(lab: tuple[NetLab, UserManagerLab], tmp_path: Path) -> None:
    net, manager = lab
    (manager.unit_dir / UNIT).write_text(spamd_unit(net, tmp_path / "upd", "{sa_update}", 90))
    manager.reload()
    assert manager.start_unit(UNIT, timeout=60)["Result"] == "exit-code"
    result = run_explain(net, manager)
    failed = result["failed_command"]
    assert failed["key"] == "ExecStartPre" and failed["argv"][0] == "/usr/bin/sa-update"
    assert (result["cause"], result["exit_status"]) == ("exit-code", 4)
    assert "every channel failed" in result["meaning"]
    assert "fail, expected exit 4" in result["diagnosis"]  # the fresh check agrees with what happened
    assert "dropin install" in result["diagnosis"]
    assert any(p["error"] == "refused" for p in result["probes"])


@pytest.mark.parametrize("lab", ["dns-drop-upstream"], indirect=True)
def test_real_sa_update_killed_by_the_start_timeout(lab: tuple[NetLab, UserManagerLab], tmp_path: Path) -> None:
    net, manager = lab
    (manager.unit_dir / UNIT).write_text(spamd_unit(net, tmp_path / "upd", '/bin/bash -c "{sa_update} || true"', 8))
    manager.reload()
    assert manager.start_unit(UNIT, timeout=60)["Result"] == "timeout"
    result = run_explain(net, manager)
    assert result["failed_command"]["argv"][:2] == ["/bin/bash", "-c"]
    assert result["cause"] == "timeout" and result["signal"] == "SIGTERM"
    assert "does not help" in result["diagnosis"]
    assert "~150 s" in result["diagnosis"]  # the fresh check: 2 x 75 s of Net::DNS, far beyond 8 s
