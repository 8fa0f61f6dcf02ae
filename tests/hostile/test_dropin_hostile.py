"""`dropin` in a hostile root: a planted backup (a link to a host file, a FIFO, someone else's file) is never
read nor moved; a drop-in or a directory on the way that is a link is refused; text a unit contains can never
become a live directive of the generated drop-in; the raised TimeoutStartSec= covers every guarded command."""

from __future__ import annotations

import os
import stat

import pytest
from hostile_roots import Guest

from mailpreflight.fix.dropin import BACKUP_SUFFIX, GUARD_GRACE, START_MARGIN
from mailpreflight.units.syntax import parse_unit_file

UNIT = "/etc/systemd/system/spamd.service"
DIR = "/etc/systemd/system/spamd.service.d"
DROPIN = f"{DIR}/zz-mailpreflight.conf"
BACKUP = DROPIN + BACKUP_SUFFIX
SPAMD = ("[Service]\nExecStartPre=/usr/bin/mkdir -p /run/spamd\n"
         "ExecStartPre=/usr/bin/sa-update --channel updates.spamassassin.org\nExecStart=/usr/sbin/spamd\n")


def installed(guest: Guest) -> str:
    guest.write(UNIT, SPAMD)
    done = guest.run("dropin", "install", "spamd", "--no-reload", bound=20)
    assert done.returncode == 0, done.stderr
    return guest.path(DROPIN).read_text()


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_backup_planted_as_a_link_to_a_host_file_is_neither_read_nor_moved(guest: Guest, how: str) -> None:
    ours = installed(guest)
    # absolute: what a plain open() under the root followed to the host; relative: climbs out of the root
    target = str(guest.canary) if how == "absolute" else "../" * 8 + str(guest.canary).lstrip("/")
    guest.link(BACKUP, target)
    for dry in (("--dry-run",), ()):
        done = guest.run("dropin", "remove", "spamd", "--no-reload", *dry, bound=20)
        assert done.returncode == 3
        assert done.stderr.startswith(f"mailpreflight: {BACKUP} is a symlink, not a backup mailpreflight made: "
                                      "it was neither read nor moved (look at it, remove it")
        assert done.stdout == ""
    assert os.readlink(guest.path(BACKUP)) == target  # still there, still a link
    assert guest.path(DROPIN).read_text() == ours  # and our drop-in untouched


def test_a_fifo_backup_and_someone_elses_backup_are_refused(guest: Guest) -> None:
    installed(guest)
    guest.fifo(BACKUP)
    done = guest.run("dropin", "remove", "spamd", "--no-reload", bound=20)
    assert done.returncode == 3 and "is a FIFO (named pipe), not a backup mailpreflight made" in done.stderr
    assert stat.S_ISFIFO(os.lstat(guest.path(BACKUP)).st_mode)
    if os.geteuid() == 0:
        guest.path(BACKUP).unlink()
        guest.write(BACKUP, "[Service]\nExecStartPre=/bin/evil\n")
        os.chown(guest.path(BACKUP), 4321, 4321)
        done = guest.run("dropin", "remove", "spamd", "--no-reload", bound=20)
        assert done.returncode == 3 and "is a file owned by uid 4321, not a backup mailpreflight made" in done.stderr


def test_a_real_backup_is_put_back(guest: Guest) -> None:
    guest.write(UNIT, SPAMD)
    guest.write(DROPIN, "[Service]\nNice=5\n")
    assert guest.run("dropin", "install", "spamd", "--no-reload", bound=20).returncode == 0
    assert guest.path(BACKUP).read_text() == "[Service]\nNice=5\n"
    done = guest.run("dropin", "remove", "spamd", "--no-reload", bound=20)
    assert done.returncode == 0 and f"restored your previous {DROPIN}" in done.stderr
    assert guest.path(DROPIN).read_text() == "[Service]\nNice=5\n" and not guest.path(BACKUP).exists()


@pytest.mark.parametrize("verb", ["show", "remove", "install"])
def test_a_dropin_that_is_a_link_to_a_host_file_is_refused(guest: Guest, verb: str) -> None:
    guest.write(UNIT, SPAMD)
    guest.link(DROPIN, str(guest.canary))
    done = guest.run("dropin", verb, "spamd", "--no-reload", bound=20)
    assert done.returncode == 3 and "symlink" in done.stderr, done.stderr
    assert os.readlink(guest.path(DROPIN)) == str(guest.canary)


@pytest.mark.parametrize("linked", [DIR, "/etc/systemd/system", "/etc/systemd"])
def test_no_write_through_a_linked_directory(guest: Guest, linked: str) -> None:
    """A directory on the way that is a link to a host directory (relative: it climbs out of the root)."""
    guest.write("/usr/lib/systemd/system/spamd.service", SPAMD)
    depth = linked.count("/")
    guest.link(linked, "../" * (depth + 2) + str(guest.host_dir).lstrip("/"))
    done = guest.run("dropin", "install", "spamd", "--no-reload", bound=20)
    assert done.returncode == 3 and f"refusing to write through the symlink {linked}" in done.stderr
    assert sorted(p.name for p in guest.host_dir.iterdir()) == [f"{guest.secret}-{i}.conf" for i in range(3)]


INJECTED = ('ExecStartPre=/usr/bin/sa-update --channel "one.example.org\\n[Unit]\\nExecStart=/bin/evil-n"\n'
            'ExecStartPre=/usr/bin/sa-update --channel "two.example.org\\r\\nExecStartPost=/bin/evil-r \\\\"\n'
            'ExecStartPre=/usr/bin/sa-update --channel "three.example.org\\u2028ExecStop=/bin/evil-u\\u0085x"\n')


def test_newlines_in_exec_arguments_never_become_directives(guest: Guest) -> None:
    guest.write(UNIT, f"[Service]\n{INJECTED}ExecStart=/usr/sbin/spamd\n")
    before = guest.run("show", "spamd", "--format", "json", bound=15)
    assert before.returncode == 0
    done = guest.run("dropin", "install", "spamd", "--no-reload", bound=20)
    assert done.returncode == 0, done.stderr
    data = guest.path(DROPIN).read_bytes()
    parsed = parse_unit_file(data, DROPIN)
    assert parsed.fatal is None and parsed.diagnostics == ()
    keys = [(a.section, a.key) for a in parsed.assignments]
    assert keys == [("Unit", "Wants"), ("Unit", "After"), ("Service", "ExecStartPre"),
                    *[("Service", "ExecStartPre")] * 3, ("Service", "TimeoutStartSec")]
    # three guarded commands run one after the other: each one's bound and grace, and a margin
    assert parsed.assignments[-1].value == f"{3 * (60 + GUARD_GRACE) + START_MARGIN:g}"
    assert b"evil" not in b"".join(line for line in data.splitlines() if not line.startswith((b"#", b"ExecStartPre")))
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.units.loader import UnitLoader

    unit = UnitLoader(RootFS(str(guest.root))).load("spamd")
    channels = [c.argv[-1] for c in unit.exec["ExecStartPre"]]
    assert channels == ["one.example.org\n[Unit]\nExecStart=/bin/evil-n",
                        "two.example.org\r\nExecStartPost=/bin/evil-r \\",
                        "three.example.org\u2028ExecStop=/bin/evil-u\x85x"]  # the same argv, guarded
    # the guest has no mailpreflight: coreutils' timeout bounds each command (fix/inguest.py)
    assert all(c.argv[:3] == ("/usr/bin/timeout", "--kill-after=5", "60") for c in unit.exec["ExecStartPre"])
    assert "ExecStart" not in {a.key for a in unit.assignments if a.source.file == DROPIN}
    comments = [line for line in data.decode().splitlines() if line.startswith("#")]
    assert any("one.example.org\\n[Unit]\\nExecStart=/bin/evil-n" in line for line in comments)
    assert any("two.example.org\\x0d\\nExecStartPost=/bin/evil-r \\\\" in line for line in comments)
    assert any("three.example.org\\u2028ExecStop=/bin/evil-u\\x85x" in line for line in comments)
