"""Small guest disks in three layouts for `--image`/`--domain`, made by libguestfs itself in ONE appliance
session (a launch costs 8-14 s under TCG: /work/shared/reference/VM-LAB.md), cached per recipe (this file's
hash) outside the repository and copied for each test session.

  plain  qcow2 (qemu-img create -f qcow2), MBR, one ext4 partition holding the whole tree
  lvm    raw, MBR, one PV; VG mplvm: LV root (ext4, /) and LV usr (ext4, /usr, mounted by the guest's fstab)
  luks   qcow2, MBR, one LUKS partition (/dev/sda1), inside it VG mpluks with LVs root and usr as above
         (LVM on LUKS, the Debian installer's "encrypted LVM")

Every layout holds the same small mail-server tree, with the layout's name in the places the tests read
(os-release's PRETTY_NAME, the unit's Description), so that a test sees which disk it really read. spamd.service
lives under /usr/lib/systemd/system: on the LVM layouts it is found only if /usr was mounted as the guest's
fstab says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAYOUTS = ("plain", "lvm", "luks")
# the cache is keyed on this file: any change to the recipe builds the disks again
RECIPE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(os.environ.get("MAILPREFLIGHT_VM_CACHE", "/var/cache/mailpreflight-vm")) / f"image-layouts-{RECIPE}"
PASSPHRASE = "mp lab passphrase 7"  # the LUKS key of the luks layout
FORMATS = {"plain": "qcow2", "lvm": "raw", "luks": "qcow2"}
SIZE_MB = {"plain": 64, "lvm": 96, "luks": 112}

SA_UPDATE = "/usr/bin/sa-update --nogpg --channel updates.spamassassin.org"
SA_VERSION = "3.004006"  # the guest's Mail/SpamAssassin.pm (on the /usr LV): not the host's 4.0.x


def tree(layout: str) -> dict[str, str]:
    """The guest's files (path -> text), with the layout's name where the tests look for it."""
    usr = {"plain": "", "lvm": "/dev/mapper/mplvm-usr /usr ext4 ro 0 2\n",
           "luks": "/dev/mapper/mpluks-usr /usr ext4 ro 0 2\n"}[layout]
    root = {"plain": "/dev/sda1", "lvm": "/dev/mapper/mplvm-root", "luks": "/dev/mapper/mpluks-root"}[layout]
    return {
        "/etc/os-release": f'PRETTY_NAME="Debian GNU/Linux 12 (bookworm) mp-{layout}"\nNAME="Debian GNU/Linux"\n'
                           'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
        "/etc/debian_version": "12.8\n",
        "/etc/hostname": f"mp-{layout}\n",
        "/etc/hosts": "127.0.0.1 localhost\n",
        "/etc/fstab": f"# mailpreflight image lab ({layout})\n{root} / ext4 errors=remount-ro 0 1\n{usr}",
        "/etc/resolv.conf": "nameserver 192.0.2.53\n",
        "/etc/default/spamd": "OPTIONS=\"--create-prefs --max-children 5\"\n",
        "/usr/lib/systemd/system/spamd.service":
            f"[Unit]\nDescription=Perl-based spam filter using text analysis (mp-{layout})\n"
            "After=network.target\n\n"
            "[Service]\nType=forking\nPIDFile=/run/spamd.pid\nEnvironmentFile=-/etc/default/spamd\n"
            f"ExecStartPre={SA_UPDATE}\n"
            "ExecStart=/usr/sbin/spamd --pidfile /run/spamd.pid -d $OPTIONS\n"
            "ExecReload=/bin/kill -HUP $MAINPID\n\n"
            "[Install]\nWantedBy=multi-user.target\n",
        "/usr/bin/sa-update": "#!/usr/bin/perl\n# stand-in: never run\nexit 0;\n",
        "/usr/sbin/spamd": "#!/usr/bin/perl\n# stand-in: never run\nexit 0;\n",
        "/usr/bin/perl": "#!/bin/sh\n# stand-in: never run\nexit 0\n",
        "/usr/bin/kill": "#!/bin/sh\nexit 0\n",
        "/usr/bin/sh": "#!/bin/sh\nexit 0\n",
        "/usr/share/perl5/Mail/SpamAssassin.pm": f"package Mail::SpamAssassin;\nour $VERSION = \"{SA_VERSION}\";\n1;\n",
    }


SYMLINKS = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib"}  # merged /usr, as Debian 12


def unavailable_reason() -> str | None:
    """Why the image-layout tests cannot run here, or None."""
    if os.environ.get("MAILPREFLIGHT_VM_TESTS", "") != "1":
        return "the guest-image suite is off (set MAILPREFLIGHT_VM_TESTS=1; tests/vm/ costs minutes)"
    try:
        import guestfs  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return "libguestfs's Python binding is not importable (apt-get install python3-guestfs; ./bootstrap)"
    for tool in ("qemu-img", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./bootstrap installs qemu-system-x86)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: --image exposes the guest through FUSE"
    return None


@dataclass(frozen=True)
class Disks:
    """The three disks of one test session (copies of the cached ones: a test may not change the cache)."""

    directory: Path

    def path(self, layout: str) -> Path:
        return self.directory / f"{layout}.{'img' if FORMATS[layout] == 'raw' else 'qcow2'}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def disks(directory: Path, cache: Path = CACHE) -> Disks:
    """The three disks copied into `directory`; built (one appliance launch) when the cache lacks them."""
    session = Disks(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable and not (cache / ".mp-built").exists():
        build(session)  # no cache for this user: built for this session only
        return session
    built = Disks(cache)
    if not (cache / ".mp-built").exists():
        with tempfile.TemporaryDirectory(dir=cache.parent, prefix="building-layouts-") as work:
            build(Disks(Path(work)))
            (Path(work) / ".mp-built").write_text(f"recipe {RECIPE}\n", encoding="utf-8")
            if cache.exists():
                shutil.rmtree(cache)
            Path(work).rename(cache)
            os.mkdir(work)  # TemporaryDirectory removes what it made
    for layout in LAYOUTS:
        subprocess.run(["cp", "--sparse=always", str(built.path(layout)), str(session.path(layout))], check=True,
                       timeout=120)
    return session


def build(into: Disks) -> None:
    """All three disks in one appliance session."""
    import guestfs  # type: ignore[import-not-found,import-untyped,unused-ignore]

    for layout in LAYOUTS:
        subprocess.run(["qemu-img", "create", "-q", "-f", FORMATS[layout], str(into.path(layout)),
                        f"{SIZE_MB[layout]}M"], check=True, timeout=60)
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    handle = guestfs.GuestFS(python_return_dict=True)
    if not os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
        handle.set_backend_settings(["force_tcg"])  # KVM is not usable on these machines (VM-LAB.md)
    for layout in LAYOUTS:
        handle.add_drive_opts(str(into.path(layout)), format=FORMATS[layout], readonly=False)
    handle.launch()
    try:
        plain, lvm, luks = handle.list_devices()
        for device in (plain, lvm, luks):
            handle.part_disk(device, "mbr")
        # plain: ext4 on the partition
        handle.mkfs("ext4", f"{plain}1")
        _fill(handle, "plain", {"/": f"{plain}1"})
        # lvm: PV on the partition, root and usr LVs
        handle.pvcreate(f"{lvm}1")
        handle.vgcreate("mplvm", [f"{lvm}1"])
        _volumes(handle, "mplvm")
        _fill(handle, "lvm", {"/": "/dev/mplvm/root", "/usr": "/dev/mplvm/usr"})
        # luks: LUKS on the partition, the PV inside it
        handle.luks_format(f"{luks}1", PASSPHRASE, 0)
        handle.cryptsetup_open(f"{luks}1", PASSPHRASE, "mpbuild")
        handle.pvcreate("/dev/mapper/mpbuild")
        handle.vgcreate("mpluks", ["/dev/mapper/mpbuild"])
        _volumes(handle, "mpluks")
        _fill(handle, "luks", {"/": "/dev/mpluks/root", "/usr": "/dev/mpluks/usr"})
        handle.vg_activate(False, ["mplvm", "mpluks"])
        handle.cryptsetup_close("/dev/mapper/mpbuild")
        handle.sync()
        handle.shutdown()
    finally:
        handle.close()


def _volumes(handle: Any, vg: str) -> None:
    handle.lvcreate("root", vg, 32)
    handle.lvcreate("usr", vg, 32)
    for lv in ("root", "usr"):
        handle.mkfs("ext4", f"/dev/{vg}/{lv}")


def _fill(g: Any, layout: str, mounts: dict[str, str]) -> None:
    """Mount the layout's filesystems (/ first), write the tree, unmount."""
    for point in sorted(mounts, key=len):
        if point != "/":
            g.mkdir_p(point)
        g.mount(mounts[point], point)
    for point in ("/usr/bin", "/usr/sbin", "/usr/lib", "/run", "/var/lib", "/tmp"):
        g.mkdir_p(point)
    for link, target in SYMLINKS.items():
        g.ln_s(target, link)
    for path, text in tree(layout).items():
        g.mkdir_p(path.rsplit("/", 1)[0] or "/")
        g.write(path, text.encode())
        if path.startswith(("/usr/bin/", "/usr/sbin/")):
            g.chmod(0o755, path)
    g.umount_all()
