"""A drop-in written into a guest calls only what the guest has (fix/inguest.py); one whose program is missing
is flagged; a oneshot whose ExecStart is the network command is guarded too; spamd gets the clean-up of the
empty rules directory a failed sa-update leaves (tests/vm/ boots the result)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tree
from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError
from mailpreflight.fix import dropin
from mailpreflight.units.loader import UnitLoader

SPAMD = '[Service]\nExecStartPre=/bin/sh -c "sa-update || true"\nExecStart=/usr/sbin/spamd\n'
FRESHCLAM_ONCE = "[Service]\nType=oneshot\nExecStart=/usr/bin/freshclam --stdout\n"


def guest(tmp_path: Path, *programs: str, unit: str = SPAMD, name: str = "spamd.service") -> UnitLoader:
    make_tree(tmp_path, {f"/lib/systemd/system/{name}": unit, "/usr/share/perl5/Mail/SpamAssassin.pm":
                         'our $VERSION = "4.000001";\n', "/etc/clamav/freshclam.conf":
                         "DatabaseMirror database.clamav.net\n", **{p: "" for p in programs}})
    for program in programs:
        (tmp_path / program.lstrip("/")).chmod(0o755)
    return UnitLoader(RootFS(str(tmp_path)))


def test_the_guests_own_mailpreflight_first(tmp_path: Path) -> None:
    planned = dropin.plan(guest(tmp_path, "/usr/bin/mailpreflight", "/usr/bin/timeout", "/bin/sh"), "spamd")
    assert "ExecStartPre=-/usr/bin/mailpreflight guard --timeout 60 -- /bin/sh -c" in planned.text
    assert any("the guest has mailpreflight at /usr/bin/mailpreflight" in w for w in planned.warnings)


def test_coreutils_and_logger_without_mailpreflight(tmp_path: Path) -> None:
    planned = dropin.plan(guest(tmp_path, "/usr/bin/timeout", "/bin/sh", "/usr/bin/logger"), "spamd", 20)
    line = next(x for x in planned.text.splitlines() if x.startswith("ExecStartPre=-/bin/sh -c"))
    assert "/usr/bin/timeout --kill-after=5 20" in line and "/usr/bin/logger -p daemon.warning" in line
    assert "the unit starts anyway" in line and "mailpreflight-guard /bin/sh -c" in line
    # the warning names the network program the shell runs, as the guard does (fix/guard.py named())
    assert "guard: sa-update (run by sh -c) exited $rc" in line, line
    # then the clean-up of the rules dir a failed sa-update leaves empty, which spamd would load
    assert planned.text.splitlines()[-2].startswith("ExecStartPre=-/bin/sh -c") or any(
        "mailpreflight-rules /var/lib/spamassassin/4.000001" in x for x in planned.text.splitlines())
    assert "TimeoutStartSec=" not in planned.text  # 20 s + 5 s grace + 10 s margin fit in the default 90 s


def test_plain_timeout_when_there_is_no_logger(tmp_path: Path) -> None:
    planned = dropin.plan(guest(tmp_path, "/usr/bin/timeout"), "spamd", 30)
    assert "ExecStartPre=-/usr/bin/timeout --kill-after=5 30 /bin/sh -c" in planned.text
    assert "mailpreflight-rules" not in planned.text  # no /bin/sh in this guest: no clean-up line calling it


def test_nothing_to_call(tmp_path: Path) -> None:
    with pytest.raises(MailpreflightError, match="neither mailpreflight nor coreutils"):
        dropin.plan(guest(tmp_path), "spamd")


def test_a_oneshot_whose_execstart_is_the_network_command(tmp_path: Path) -> None:
    loader = guest(tmp_path, "/usr/bin/timeout", unit=FRESHCLAM_ONCE, name="clamav-freshclam-once.service")
    planned = dropin.plan(loader, "clamav-freshclam-once", 40)
    assert "ExecStart=\nExecStart=-/usr/bin/timeout --kill-after=5 40 /usr/bin/freshclam --stdout" in planned.text


def test_show_flags_a_wrapper_missing_in_the_root(tmp_path: Path) -> None:
    loader = guest(tmp_path, "/usr/bin/timeout")
    dropin.install(loader, "spamd", 60, dry_run=False, program="/opt/host-venv/bin/mailpreflight")
    text, current = dropin.show(UnitLoader(RootFS(str(tmp_path))), "spamd")
    assert current is False
    assert "MISSING in this root: /opt/host-venv/bin/mailpreflight" in text and "missing, skipping" in text
