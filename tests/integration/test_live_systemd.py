"""live/ against a REAL systemd (the lab's user manager on its real D-Bus session bus), through both transports:
every failure is one BackendError -- `explain` exits 3 with one line naming the bus and the unit, no traceback --
and daemon-reload goes through the same transport, also from `dropin install`'s call site in cli.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_lab import UserManagerLab

from mailpreflight.fix.dropin import DROPIN_NAME
from mailpreflight.live.backend import BackendError, open_backend
from mailpreflight.live.reload import daemon_reload

BACKENDS = ("pystemd", "dbus-python")
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
    <allow own="*"/></policy>
</busconfig>
"""


def explain(env: dict[str, str], backend: str, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailpreflight", "explain", "--user", "--backend", backend, unit,
                           "--format", "json", "--timeout", "1"], capture_output=True, text=True, env=env, timeout=60)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mailpreflight: "), done.stderr
    return done.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_such_unit(systemd_lab: UserManagerLab, backend: str) -> None:
    err = one_error_line(explain({**os.environ, **systemd_lab.env}, backend, "mpl-nosuch.service"))
    assert f"systemd on the user bus {systemd_lab.bus_address} has no unit mpl-nosuch.service " in err
    assert "list-unit-files" in err  # what to do


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_invalid_unit_name(systemd_lab: UserManagerLab, backend: str) -> None:
    """systemd answers LoadUnit with an error (InvalidArgs): it becomes the same one line."""
    err = one_error_line(explain({**os.environ, **systemd_lab.env}, backend, "mpl-tmpl@.service"))
    assert f"the user bus {systemd_lab.bus_address}: cannot read unit mpl-tmpl@.service: InvalidArgs: " in err
    assert "missing the instance name" in err and "give a valid unit name" in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dead_bus_socket(systemd_lab: UserManagerLab, tmp_path: Path, backend: str) -> None:
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    env = {**os.environ, **systemd_lab.env, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={dead}"}
    err = one_error_line(explain(env, backend, "dbus.socket"))
    assert f"cannot talk to systemd on the user bus unix:path={dead}: {backend}: " in err
    assert "Connection refused" in err and "DBUS_SESSION_BUS_ADDRESS" in err
    # and the lab's own bus, from the same environment otherwise, works: the bus was the only difference
    assert explain({**os.environ, **systemd_lab.env}, backend, "dbus.socket").returncode == 0


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture
def bus_without_systemd(tmp_path: Path) -> Iterator[str]:
    """A real dbus-daemon on a private socket, where nothing owns org.freedesktop.systemd1 (a desktop session bus
    with no user manager behind it)."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon not found")
    path = tmp_path / "bus"
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=path))
    proc = subprocess.Popen([daemon, f"--config-file={config}", "--nofork", "--nopidfile", "--nosyslog"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        # the socket file appears at bind(), before listen(): a client between the two gets ConnectionRefused
        while not _accepts(path):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "dbus-daemon did not accept connections on its socket"
            time.sleep(0.01)
        yield f"unix:path={path}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bus_without_systemd(systemd_lab: UserManagerLab, bus_without_systemd: str, backend: str) -> None:
    env = {**os.environ, **systemd_lab.env, "DBUS_SESSION_BUS_ADDRESS": bus_without_systemd}
    err = one_error_line(explain(env, backend, "dbus.socket"))
    assert f"systemd on the user bus {bus_without_systemd}: cannot read unit dbus.socket: ServiceUnknown: " in err
    assert "no systemd user manager owns this bus" in err


def exec_start_pre(lab: UserManagerLab, unit: str) -> list[list[str]]:
    return [c["argv"] for c in lab.properties(unit, "dbus-python")["exec"]["ExecStartPre"]]


def loaded_then_changed(lab: UserManagerLab, unit_dir: Path, unit: str) -> None:
    """The unit loaded (and pinned: started, so never garbage-collected and re-read), then its file changed on
    disk: only a daemon-reload makes systemd see /bin/false."""
    (unit_dir / unit).write_text("[Service]\nType=oneshot\nExecStartPre=/bin/true\nExecStart=/bin/true\n")
    lab.reload()
    assert lab.start_unit(unit)["Result"] == "success"
    (unit_dir / unit).write_text("[Service]\nType=oneshot\nExecStartPre=/bin/false\nExecStart=/bin/true\n")
    assert exec_start_pre(lab, unit) == [["/bin/true"]]  # not reloaded yet


@pytest.mark.parametrize("backend", BACKENDS)
def test_reload_through_each_transport(systemd_lab: UserManagerLab, lab_units: Path, backend: str) -> None:
    unit = f"mpl-reload-{backend}.service"
    loaded_then_changed(systemd_lab, lab_units, unit)
    daemon_reload(user=True, kind=backend, address=systemd_lab.bus_address)
    assert exec_start_pre(systemd_lab, unit) == [["/bin/false"]]
    live = open_backend(backend, user=True, address=systemd_lab.bus_address).unit(unit)
    assert not live.need_daemon_reload and [r.argv for r in live.exec["ExecStartPre"]] == [("/bin/false",)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reload_on_a_bus_without_systemd(bus_without_systemd: str, backend: str) -> None:
    with pytest.raises(BackendError) as caught:
        daemon_reload(user=True, kind=backend, address=bus_without_systemd)
    text = str(caught.value)
    assert "\n" not in text and f"the user bus {bus_without_systemd}: daemon-reload failed: ServiceUnknown" in text
    assert text.endswith("(run `systemctl --user daemon-reload` yourself)")


def dropin_install(env: dict[str, str], unit_text: str) -> subprocess.CompletedProcess[str]:
    """`mailpreflight dropin install` on the live root, in a private mount namespace where /etc/systemd/system is
    an empty tmpfs holding only our unit: the host's /etc is never written. Exit 90: the drop-in was not there."""
    script = ('mount -t tmpfs -o mode=0755,size=1m tmpfs /etc/systemd/system && printf %s "$1" > '
              '/etc/systemd/system/mpl-spamd.service && "$2" -m mailpreflight dropin install mpl-spamd.service; '
              f'rc=$?; [ -f /etc/systemd/system/mpl-spamd.service.d/{DROPIN_NAME} ] || exit 90; exit $rc')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", unit_text,
                           sys.executable], capture_output=True, text=True, env=env, timeout=60)


def test_dropin_install_reloads_systemd_through_the_transport(systemd_lab: UserManagerLab, lab_units: Path,
                                                              tmp_path: Path) -> None:
    """cli.py's call site: the reload after `dropin install` (system bus) reaches a real systemd -- the lab's,
    by DBUS_SYSTEM_BUS_ADDRESS -- and a dead bus is one line saying to reload by hand, the drop-in kept."""
    if not Path("/etc/systemd/system").is_dir():
        pytest.skip("no /etc/systemd/system to mount over")
    spamd = '[Service]\nExecStartPre=/bin/bash -c "sa-update || true"\nExecStart=/usr/sbin/spamd\n'
    probe = "mpl-dropin-reload.service"
    loaded_then_changed(systemd_lab, lab_units, probe)

    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": systemd_lab.bus_address}
    done = dropin_install(env, spamd)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "mailpreflight: systemd reloaded", done.stderr
    assert exec_start_pre(systemd_lab, probe) == [["/bin/false"]]  # that reload happened

    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    done = dropin_install({**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={dead}"}, spamd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"mailpreflight: cannot talk to systemd on the system bus unix:path={dead}: "), last
    assert last.endswith("run `systemctl daemon-reload` yourself)"), last
