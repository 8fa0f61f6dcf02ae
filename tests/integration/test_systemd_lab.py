"""Real systemd + real D-Bus: what the manager reports for unit files, through both bindings."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from systemd_lab import BINDINGS, EXEC_KEYS, UserManagerLab

CLD_EXITED = 1  # ExecStatus code for a normal exit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def assert_plain(value: Any) -> None:
    """Only builtin types, no subclasses (dbus.String, dbus.Boolean, ...) and no bytes."""
    assert type(value) in (str, int, bool, list, dict), repr(value)
    if type(value) is list:
        for v in value:
            assert_plain(v)
    elif type(value) is dict:
        for k, v in value.items():
            assert type(k) is str
            assert_plain(v)


def props_both(lab: UserManagerLab, unit: str) -> dict[str, Any]:
    """properties() through both bindings; they must agree exactly."""
    first, second = (lab.properties(unit, b) for b in BINDINGS)
    assert first == second
    assert_plain(first)
    assert set(first) == {"Id", "Names", "LoadState", "LoadError", "FragmentPath", "DropInPaths",
                          "Environment", "EnvironmentFiles", "TimeoutStartUSec", "Type", "exec"}
    assert tuple(first["exec"]) == EXEC_KEYS
    return first


FAILING_PRE = """
    [Service]
    Type=oneshot
    ExecStartPre=/bin/sh -c "exit 4 || true"
    ExecStart=/bin/true
"""


def test_lab_started_quickly(systemd_lab: UserManagerLab) -> None:
    assert systemd_lab.start_seconds is not None and systemd_lab.start_seconds < 10


@pytest.mark.parametrize("binding", BINDINGS)
def test_failing_exec_start_pre(systemd_lab: UserManagerLab, lab_units: Path, binding: str) -> None:
    unit = f"mp-a-{binding}.service"
    fragment = write(lab_units / unit, FAILING_PRE)
    systemd_lab.reload()
    p = props_both(systemd_lab, unit)
    assert (p["Id"], p["LoadState"], p["FragmentPath"], p["Type"]) == (unit, "loaded", str(fragment),
                                                                       "oneshot")
    assert p["exec"]["ExecStartPre"] == [
        {"path": "/bin/sh", "argv": ["/bin/sh", "-c", "exit 4 || true"], "ignore": False, "flags": []}]

    r = systemd_lab.start_unit(unit, binding)
    assert_plain(r)
    assert (r["ActiveState"], r["SubState"], r["Result"]) == ("failed", "failed", "exit-code")
    assert r["ExecMainStatus"] == 0  # the main process never ran; the status is on ExecStartPre
    [pre] = r["exec_status"]["ExecStartPre"]
    assert (pre["code"], pre["status"]) == (CLD_EXITED, 4)
    assert pre["pid"] > 0 and 0 < pre["start_us"] <= pre["exit_us"]
    assert r["exec_status"]["ExecStart"][0]["pid"] == 0
    assert len(r["InvocationID"]) == 32


def test_drop_in_reset_takes_effect_after_reload(systemd_lab: UserManagerLab, lab_units: Path) -> None:
    unit = "mp-b.service"
    write(lab_units / unit, FAILING_PRE)
    systemd_lab.reload()
    assert systemd_lab.start_unit(unit)["Result"] == "exit-code"

    drop_in = write(lab_units / f"{unit}.d" / "override.conf", """
        [Service]
        ExecStartPre=
        ExecStartPre=-/bin/false
    """)
    systemd_lab.reload()
    p = props_both(systemd_lab, unit)
    assert p["DropInPaths"] == [str(drop_in)]
    assert p["exec"]["ExecStartPre"] == [
        {"path": "/bin/false", "argv": ["/bin/false"], "ignore": True, "flags": ["ignore-failure"]}]

    r = systemd_lab.start_unit(unit, "pystemd")
    assert (r["ActiveState"], r["Result"]) == ("inactive", "success")
    [pre] = r["exec_status"]["ExecStartPre"]
    assert (pre["code"], pre["status"]) == (CLD_EXITED, 1)  # failed, and the failure was ignored
    assert r["exec_status"]["ExecStart"][0]["status"] == 0 and r["exec_status"]["ExecStart"][0]["pid"] > 0


def test_masked_unit(systemd_lab: UserManagerLab, lab_units: Path) -> None:
    os.symlink("/dev/null", lab_units / "mp-c.service")
    drop_in = write(lab_units / "mp-c.service.d" / "x.conf", "[Service]\nExecStart=/bin/true\n")
    systemd_lab.reload()
    p = props_both(systemd_lab, "mp-c.service")
    assert p["LoadState"] == "masked"
    assert p["LoadError"] == ["org.freedesktop.systemd1.UnitMasked", "Unit mp-c.service is masked."]
    # systemd 252 reports the symlink itself (not /dev/null) and still lists the drop-ins
    assert p["FragmentPath"] == str(lab_units / "mp-c.service")
    assert p["DropInPaths"] == [str(drop_in)]
    assert p["exec"] == {k: [] for k in EXEC_KEYS}  # not loaded: service properties are defaults


def test_exec_prefix_flags(systemd_lab: UserManagerLab, lab_units: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    write(lab_units / "mp-d.service", f"""
        [Service]
        Type=oneshot
        StandardOutput=append:{out}
        ExecCondition=@/bin/sh mp-argv0 -c "exit 0"
        ExecStartPre=:+/bin/echo $HOME
        ExecStartPre=-!/bin/true
        ExecStart=!!/bin/true
        ExecStartPost=@-:!!/bin/echo x
        ExecStop=/bin/echo $HOME
    """)
    systemd_lab.reload()
    ex = props_both(systemd_lab, "mp-d.service")["exec"]
    seen = {k: [(c["path"], c["argv"], c["ignore"], c["flags"]) for c in ex[k]] for k in ex if ex[k]}
    assert seen == {
        # '@' has no flag: it only makes argv[1] the process's argv[0]
        "ExecCondition": [("/bin/sh", ["mp-argv0", "-c", "exit 0"], False, [])],
        "ExecStartPre": [("/bin/echo", ["/bin/echo", "$HOME"], False, ["privileged", "no-env-expand"]),
                         ("/bin/true", ["/bin/true"], True, ["ignore-failure", "no-setuid"])],
        "ExecStart": [("/bin/true", ["/bin/true"], False, ["ambient"])],
        # flags come out in systemd's fixed order, whatever the order of the prefixes
        "ExecStartPost": [("/bin/echo", ["x"], True, ["ignore-failure", "ambient", "no-env-expand"])],
        "ExecStop": [("/bin/echo", ["/bin/echo", "$HOME"], False, [])],
    }
    r = systemd_lab.start_unit("mp-d.service")
    assert r["Result"] == "success"
    # ':' really suppresses $VAR expansion; '@' made argv[0] of /bin/echo "x", so it prints nothing
    assert out.read_text().splitlines() == ["$HOME", "", systemd_lab.env["HOME"]]


@pytest.mark.parametrize("unit", ["dbus.service", "dbus.socket", "default.target", "mp-nope.service"])
def test_bindings_agree_on_stock_units(systemd_lab: UserManagerLab, unit: str) -> None:
    p = props_both(systemd_lab, unit)
    assert p["Id"] == unit
    if unit == "mp-nope.service":
        assert p["LoadState"] == "not-found"
        assert p["LoadError"][0] == "org.freedesktop.systemd1.NoSuchUnit"
    else:
        assert p["LoadState"] == "loaded" and p["FragmentPath"].startswith("/usr/lib/systemd/user/")
    if unit == "dbus.service":
        assert p["exec"]["ExecStart"][0]["path"] == "/usr/bin/dbus-daemon"


def test_unit_paths(systemd_lab: UserManagerLab) -> None:
    paths = systemd_lab.unit_paths()
    assert paths and all(type(p) is str for p in paths)
    assert str(systemd_lab.unit_dir) in paths
    # the lab's unit dir overrides the vendor dir
    assert paths.index(str(systemd_lab.unit_dir)) < paths.index("/usr/lib/systemd/user")
