"""The generated drop-in in a REAL systemd (user manager, real D-Bus): systemd reads back exactly the argv we
meant, and the guarded start survives a failing and a hanging sa-update."""

from __future__ import annotations

import time
from pathlib import Path

from systemd_lab import UserManagerLab

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.fix import dropin
from mailpreflight.units.loader import UnitLoader

REPO = Path(__file__).resolve().parents[2]
PROGRAM = str(REPO / ".venv/bin/mailpreflight")


def generated(tmp_path: Path, name: str, sa_update: Path, guard_timeout: float) -> tuple[str, str]:
    unit = (f"[Service]\nType=oneshot\nExecStartPre=/bin/sh -c \"{sa_update} --channel 'x.example' || true\"\n"
            "ExecStart=/bin/true\nTimeoutStartSec=20\n")
    root = tmp_path / "root"
    make_tree(root, {f"/etc/systemd/system/{name}": unit})
    planned = dropin.plan(UnitLoader(RootFS(str(root))), name, guard_timeout, PROGRAM)
    return unit, planned.text


def fake_sa_update(directory: Path, body: str) -> Path:
    script = directory / "sa-update"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def install(lab: UserManagerLab, unit_dir: Path, name: str, unit: str, text: str) -> None:
    (unit_dir / name).write_text(unit)
    (unit_dir / f"{name}.d").mkdir()
    (unit_dir / f"{name}.d" / dropin.DROPIN_NAME).write_text(text)
    lab.reload()


def test_systemd_reads_the_guarded_line_back(systemd_lab: UserManagerLab, lab_units: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    sa_update = fake_sa_update(tmp_path, f"touch {marker}; exit 4")
    unit, text = generated(tmp_path, "mpg-fail.service", sa_update, 5)
    install(systemd_lab, lab_units, "mpg-fail.service", unit, text)
    for binding in ("pystemd", "dbus-python"):
        pre = systemd_lab.properties("mpg-fail.service", binding)["exec"]["ExecStartPre"]
        assert [(c["argv"], c["ignore"]) for c in pre] == [
            ([PROGRAM, "guard", "--timeout", "5", "--", "/bin/sh", "-c", f"{sa_update} --channel 'x.example' || true"],
             True)]
    result = systemd_lab.start_unit("mpg-fail.service")
    assert result["Result"] == "success", (result, systemd_lab.manager_log()[-2000:])
    assert marker.exists()  # the original command really ran, through the guard


def test_a_hanging_sa_update_no_longer_blocks_the_start(systemd_lab: UserManagerLab, lab_units: Path,
                                                        tmp_path: Path) -> None:
    sa_update = fake_sa_update(tmp_path, "sleep 300")
    unit, text = generated(tmp_path, "mpg-hang.service", sa_update, 2)
    install(systemd_lab, lab_units, "mpg-hang.service", unit, text)
    started = time.monotonic()
    result = systemd_lab.start_unit("mpg-hang.service", timeout=30)
    assert result["Result"] == "success", result
    assert time.monotonic() - started < 15  # the guard's 2 s bound (+ grace), not sa-update's 300 s
