"""FIFOs and device nodes where a guest file is read: every --root verb refuses them unopened (a FIFO would
block for ever, /dev/zero's numbers read without end, a block device is a host disk), says what they are
where unreadable files are reported, and carries on."""

from __future__ import annotations

import json
import stat

import pytest
from hostile_roots import LOOPBACK, SPAMD, Guest

pytestmark = pytest.mark.usefixtures("gate_way")  # each test with openat2 and with the walk

UNIT = "/etc/systemd/system/fetchy.service"
ENVFILE = "/etc/sysconfig/fetchy"  # a link to a special file
DIRECT_ENVFILE = "/etc/sysconfig/fetchy-direct"  # the special file itself ("-": optional)
DROPIN = "/etc/systemd/system/fetchy.service.d/50-hostile.conf"  # a link to a special file
DIRECT_DROPIN = "/etc/systemd/system/fetchy.service.d/60-direct.conf"  # the special file itself
WITH_ENV = LOOPBACK.replace("[Service]\n", f"[Service]\nEnvironmentFile={ENVFILE}\n"
                                          f"EnvironmentFile=-{DIRECT_ENVFILE}\n")
WHAT = {"fifo": "a FIFO (named pipe), not a regular file", "chr": "a character device (1,5), not a regular file",
        "blk": "a block device (7,0), not a regular file"}


def special(guest: Guest, where: str, make: str) -> None:
    if make == "fifo":
        guest.fifo(where)
    elif make == "chr":
        guest.node(where, stat.S_IFCHR, 1, 5)  # /dev/zero's numbers: st_size 0, endless zeros
    else:
        guest.node(where, stat.S_IFBLK, 7, 0)  # a loop device: a host disk, if it were opened


def hostile_root(guest: Guest, make: str) -> None:
    """The loopback unit; resolv.conf, both its environment files and two drop-ins are FIFOs or device nodes,
    directly or through a link (absolute: it is read inside the root)."""
    guest.write(UNIT, WITH_ENV)
    special(guest, "/etc/resolv.conf", make)
    special(guest, "/srv/hostile/env", make)
    guest.link(ENVFILE, "/srv/hostile/env")
    special(guest, DIRECT_ENVFILE, make)
    special(guest, "/srv/hostile/dropin", make)
    guest.link(DROPIN, "/srv/hostile/dropin")
    special(guest, DIRECT_DROPIN, make)


def said(text: str, what: str) -> None:
    assert what in text, text


@pytest.mark.parametrize("make", ["fifo", "chr", "blk"])
def test_show_deps_check_snapshot_carry_on(guest: Guest, make: str) -> None:
    hostile_root(guest, make)
    what = WHAT[make]
    shown = guest.run("show", "fetchy", "--expand-env", bound=15)
    # where unreadable files are reported: the unit's diagnostics, the environment's problems; then on
    said(shown.stdout, f"{DROPIN}: cannot read: {what}")
    said(shown.stdout, f"EnvironmentFile={ENVFILE} cannot be read ({what}")
    said(shown.stdout, f"EnvironmentFile={DIRECT_ENVFILE} cannot be read ({what}")  # optional: a warning
    assert "curl -fsS http://127.0.0.1:9/feed" in shown.stdout
    # not a regular file nor a link in a .d/ directory: systemd does not list it, nor do we
    assert DIRECT_DROPIN not in shown.stdout
    assert shown.returncode == 0  # the unit loads: a drop-in systemd cannot read is skipped
    for line in (f"mailpreflight: warning: {guest.root}{DROPIN}: {what}",  # every refusal, on stderr
                 f"mailpreflight: warning: {guest.root}{ENVFILE}: {what}",
                 f"mailpreflight: warning: {guest.root}{DIRECT_ENVFILE}: {what}"):
        said(shown.stderr, line)
    deps = guest.run("deps", "fetchy", bound=15)
    assert deps.returncode in (1, 2) and "http://127.0.0.1:9/feed" in deps.stdout
    check = guest.check("fetchy", bound=20)
    assert check.returncode == 2 and "http://127.0.0.1:9/feed" in check.stdout  # it carried on to the probe
    said(check.stderr, what)
    guest_dns = guest.run("check", "fetchy", "--no-auth", "--timeout", "0.5", "--deadline", "5", "--guest-dns",
                          bound=20)
    said(guest_dns.stderr, f"mailpreflight: warning: {guest.root}/etc/resolv.conf: {what}")
    snapshot = guest.run("snapshot", bound=30)
    assert snapshot.returncode == 0
    files = json.loads(snapshot.stdout)["files"]
    for path in ("/srv/hostile/dropin", DIRECT_DROPIN):  # recorded as what they are, never opened
        assert files[path]["type"] == "other" and "sha256" not in files[path], files[path]


def test_a_fifo_fragment_is_a_unit_that_does_not_load(guest: Guest) -> None:
    guest.fifo("/etc/systemd/system/fetchy.service")
    shown = guest.run("show", "fetchy", bound=15)
    assert shown.returncode == 2
    said(shown.stderr, "cannot read: a FIFO (named pipe), not a regular file")
    assert guest.run("deps", bound=15).returncode in (0, 1, 2)


def test_a_fifo_as_the_guest_firewall_ruleset_is_refused_before_anything_runs(guest: Guest) -> None:
    guest.write(UNIT, LOOPBACK)
    guest.fifo("/etc/nftables.conf")
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.firewall.guest import find_ruleset

    with pytest.raises(MailpreflightError, match=r"^/etc/nftables.conf: not a regular file: refused"):
        find_ruleset(RootFS(str(guest.root)))


def test_fifos_in_the_recorded_config_and_pam(guest: Guest) -> None:
    """snapshot/drift record a FIFO as what it is, never open it; PAM and postfix readers carry on."""
    guest.write("/etc/systemd/system/spamd.service", SPAMD)
    guest.fifo("/etc/pam.d/imap")
    guest.fifo("/etc/postfix/main.cf")
    guest.fifo("/etc/dovecot/dovecot.conf")
    guest.write("/etc/postfix/master.cf", "smtp inet n - n - - smtpd\n")
    baseline = guest.tmp / "baseline.json"
    guest.extra_outputs = (baseline,)
    done = guest.run("snapshot", "--output", str(baseline), bound=30)
    assert done.returncode == 0
    files = json.loads(baseline.read_text())["files"]
    assert files["/etc/pam.d/imap"]["type"] == "other" and "sha256" not in files["/etc/pam.d/imap"]
    drift = guest.run("drift", "--baseline", str(baseline), bound=30)
    assert drift.returncode == 0 and "No drift." in drift.stdout
    assert guest.check("spamd", bound=20).returncode in (0, 1, 2)
