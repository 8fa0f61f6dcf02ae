"""A VM guest's disks opened with libguestfs (`--image FILE`, `--domain NAME`), seen as an offline root.

One appliance launch per run (it costs 8-14 s on an idle machine). The guest's filesystems are mounted inside
the appliance as the guest's fstab says (inspection; failing that, the first filesystem with /etc and /usr),
then exposed to this process with libguestfs's own FUSE mount (`mount_local`) on a private temporary
directory — so every read still goes through RootFS, the one gate (regular files only, bounded, links
resolved inside the root), and nothing of the guest is ever mounted by the host kernel. Read-only unless a
verb writes (dropin install/remove, restore); then a running domain, or an image another process holds
locked (qemu takes fcntl locks on its disks), is refused.

Encrypted guests: LUKS keys as the virt tools take them (`--key DEVICE:key:PASSPHRASE`,
`--key DEVICE:file:PATH`, or asked on the terminal), then LVM volume groups are activated.

KVM is not usable on every host (nested virtualization): when the KVM launch fails, it is retried with TCG
(LIBGUESTFS_BACKEND_SETTINGS=force_tcg), as /work/shared/reference/VM-LAB.md measured.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mailpreflight.errors import MailpreflightError

INSTALL_HINT = ("install libguestfs's Python binding: apt-get install python3-guestfs libguestfs-tools "
                "(Fedora: dnf install python3-libguestfs; openSUSE: zypper install python3-libguestfs), then "
                "re-run ./bootstrap, or mount the guest yourself and use --root (docs/use-preboot-guest.md)")
MOUNT_WAIT_S = 60.0


@dataclass(frozen=True)
class Key:
    device: str  # e.g. /dev/sda2, or "all"
    kind: str  # key | file
    value: str

    def passphrase(self) -> str:
        if self.kind == "key":
            return self.value
        try:
            with open(self.value, encoding="utf-8") as handle:
                return handle.readline().rstrip("\n")
        except OSError as exc:
            raise MailpreflightError(f"--key {self.device}:file:{self.value}: cannot read it: {exc.strerror}") from exc


def parse_key(spec: str) -> Key:
    """`DEVICE:key:PASSPHRASE` or `DEVICE:file:PATH`, as virt-inspector and guestfish take them."""
    device, _, rest = spec.partition(":")
    kind, _, value = rest.partition(":")
    if not device or kind not in ("key", "file") or not value:
        raise MailpreflightError(f"--key {spec!r}: expected DEVICE:key:PASSPHRASE or DEVICE:file:PATH",
                                 hint="e.g. --key /dev/sda2:file:/root/guest.key, or --key all:key:secret")
    return Key(device, kind, value)


def _guestfs() -> Any:
    try:
        import guestfs  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise MailpreflightError("--image and --domain need libguestfs's Python binding, which is not installed",
                                 hint=INSTALL_HINT) from exc
    return guestfs


def locked_by_other(image: str) -> int | None:
    """The pid holding a write-conflicting fcntl lock on the image (a running qemu), or None."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid (x86-64 Linux)
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, getattr(fcntl, "F_OFD_GETLK", 36), query + b"\0" * 4)
        l_type, _, _, _, pid = struct.unpack("hhqqi", answer[:struct.calcsize("hhqqi")])
        return None if l_type == fcntl.F_UNLCK else (pid or -1)
    except OSError:
        return None
    finally:
        os.close(fd)


def domain_running(name: str) -> bool:
    """Whether a libvirt domain is running (virsh domstate), for refusing writes."""
    if shutil.which("virsh") is None:
        return False
    done = subprocess.run(["virsh", "domstate", name], capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and done.stdout.strip() not in ("shut off", "crashed", "")


# What libguestfs's FUSE layer prints for every lookup of a path that does not exist (the loader probes dozens
# of search-path directories): expected, not an error of the run.
_EXPECTED = (b"No such file or directory", b"Not a directory")


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """While the guest is mounted, drop libguestfs's lines about missing paths from fd 2; pass the rest."""
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not (line.startswith(b"libguestfs: error: ") and any(e in line for e in _EXPECTED)):
                    os.write(original, line)

    worker = threading.Thread(target=pump, name="guestfs-stderr", daemon=True)
    worker.start()
    try:
        yield
    finally:
        os.dup2(original, 2)  # the pipe's last writer goes: the pump sees the end
        worker.join(timeout=5)
        os.close(original)


def _unmount(mountpoint: str) -> None:
    for attempt in range(50):
        done = subprocess.run([shutil.which("fusermount3") or "fusermount", "-u", mountpoint], capture_output=True,
                              timeout=30)
        if done.returncode == 0 or not os.path.ismount(mountpoint):
            return
        time.sleep(0.1 * (attempt + 1))  # busy: a reader has not let go yet


def _launch(guestfs: Any, add: Callable[[Any], None]) -> Any:
    """A launched handle: KVM (or whatever libguestfs picks) first, TCG when that launch fails."""
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    attempts = [None] if os.environ.get("LIBGUESTFS_BACKEND_SETTINGS") else [None, "force_tcg"]
    problem: Exception | None = None
    for settings in attempts:
        handle = guestfs.GuestFS(python_return_dict=True)
        if settings:
            handle.set_backend_settings([settings])
        add(handle)
        try:
            handle.launch()
            return handle
        except RuntimeError as exc:
            problem = exc
            handle.close()
    raise MailpreflightError(f"the libguestfs appliance did not start: {problem}",
                             hint="run libguestfs-test-tool to see why; on a host without usable KVM set "
                                  "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")


def _unlock(handle: Any, keys: Sequence[Key], ask: bool) -> None:
    """Open every LUKS device with its key, then activate LVM (the guest's root is often an LV inside)."""
    opened = 0
    for device, fstype in sorted(handle.list_filesystems().items()):
        if fstype != "crypto_LUKS":
            continue
        key = next((k for k in keys if k.device in (device, "all")), None)
        if key is not None:
            secret = key.passphrase()
        elif ask and os.isatty(0):
            secret = getpass.getpass(f"LUKS passphrase for {device}: ")
        else:
            raise MailpreflightError(f"{device} is LUKS-encrypted and no key was given",
                                     hint=f"add --key {device}:file:/path/to/keyfile (or {device}:key:PASSPHRASE)")
        name = f"mpluks{opened}"
        try:
            handle.cryptsetup_open(device, secret, name)
        except RuntimeError as exc:
            raise MailpreflightError(f"{device}: the LUKS key does not open it ({exc})",
                                     hint=f"check the key given with --key {device}:...") from exc
        opened += 1
    handle.vgscan()
    handle.vg_activate_all(True)


def _mount(handle: Any, readonly: bool) -> str:
    """Mount the guest's filesystems inside the appliance; returns the device mounted on /."""
    mount = handle.mount_ro if readonly else handle.mount
    roots = handle.inspect_os()
    if roots:
        root = roots[0]
        points = handle.inspect_get_mountpoints(root)
        for point, device in sorted(points.items(), key=lambda item: len(item[0])):
            with contextlib.suppress(RuntimeError):  # e.g. a swap or a missing device in fstab
                mount(device, point)
        return str(root)
    for device in sorted(handle.list_filesystems()):
        try:
            mount(device, "/")
        except RuntimeError:
            continue
        if handle.is_dir("/etc") and handle.is_dir("/usr"):
            return str(device)
        handle.umount("/")
    raise MailpreflightError("no filesystem of the guest holds /etc and /usr",
                             hint="check the image (virt-filesystems -a IMAGE --all), or give the right --key")


@contextlib.contextmanager
def open_guest(images: Sequence[str] = (), domain: str | None = None, keys: Sequence[Key] = (),
               readonly: bool = True, ask: bool = True) -> Iterator[str]:
    """Yield a host directory showing the guest's tree (FUSE from the appliance); undone on exit."""
    guestfs = _guestfs()
    if not readonly:
        if domain and domain_running(domain):
            raise MailpreflightError(f"the domain {domain} is running: writing into its disks would corrupt them",
                                     hint=f"shut it down first (virsh shutdown {domain}), or drop the write")
        for image in images:
            holder = locked_by_other(image)
            if holder is not None:
                raise MailpreflightError(f"{image} is locked by process {holder} (a running qemu?)",
                                         hint="shut the guest down first; mailpreflight only writes into stopped "
                                              "guests")
    for image in images:
        if not os.path.isfile(image) and not os.path.exists(image):
            raise MailpreflightError(f"--image {image}: no such file")

    def add(handle: Any) -> None:
        if domain:
            handle.add_domain(domain, readonly=readonly)
        for image in images:
            handle.add_drive_opts(image, readonly=readonly)

    handle = _launch(guestfs, add)
    mountpoint = tempfile.mkdtemp(prefix="mailpreflight-guest-")
    worker: threading.Thread | None = None
    quiet = contextlib.ExitStack()
    try:
        quiet.enter_context(_filtered_stderr())
        _unlock(handle, keys, ask)
        _mount(handle, readonly)
        handle.mount_local(mountpoint, readonly=readonly)
        worker = threading.Thread(target=handle.mount_local_run, name="guestfs-fuse", daemon=True)
        worker.start()
        deadline = time.monotonic() + MOUNT_WAIT_S
        while not os.path.ismount(mountpoint):
            if time.monotonic() > deadline or not worker.is_alive():
                raise MailpreflightError("the guest's filesystems did not appear through FUSE",
                                         hint="is /dev/fuse usable here? (modprobe fuse; apt-get install fuse3)")
            time.sleep(0.05)
        yield mountpoint
    finally:
        if worker is not None:
            # the handle is busy in mount_local_run for as long as the mount lives: unmount from outside it
            # (guestfs(3): fusermount -u or guestunmount), then mount_local_run returns
            _unmount(mountpoint)
            worker.join(timeout=30)
        with contextlib.suppress(RuntimeError):
            if not readonly:
                handle.sync()
            handle.shutdown()
        handle.close()
        quiet.close()
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)
