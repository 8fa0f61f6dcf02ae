"""A real Debian 12 guest for the VM suite: built once with mmdebstrap (cached outside the repository), written
to an ext4 image without mounting anything (`mke2fs -d`), booted with QEMU under TCG (KVM is not usable on
this machine class: /work/shared/reference/VM-LAB.md), its verdict read back with debugfs.

The guest: systemd 252 as PID 1, SpamAssassin 4.0.1, Debian's own spamd.service (ProtectSystem=full) plus
a drop-in whose ExecStartPre runs sa-update, and a recorder unit ordered after spamd that writes what PID 1
decided (`systemctl show spamd`, the journal of the boot) to /var/log/mp-result and powers off.

Network conditions inside the guest (selected on the kernel command line, `mp.net=`):
  none     no NIC at all: no route, DNS fails at once
  dropped  a dummy interface with an address and a default route: packets vanish, DNS hangs
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MAILPREFLIGHT_VM_CACHE", "/var/cache/mailpreflight-vm"))
MIRROR = os.environ.get("MAILPREFLIGHT_VM_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("systemd-sysv", "dbus", "spamassassin", "spamd", "linux-image-amd64", "gpg", "gpg-agent", "iproute2",
            "kmod", "udev")
RECIPE = 4  # bump when the guest's recipe changes: the cache is keyed on it
BOOT_TIMEOUT = float(os.environ.get("MAILPREFLIGHT_VM_BOOT_TIMEOUT", "420"))

# What the guest gets on top of the packages. The spamd drop-in is the admin's classic "refresh the rules
# before starting" line; the recorder runs after spamd's start job has finished, whatever its outcome.
# The same spamd without the sandbox Debian gives it (what self-made and older units look like).
NO_SANDBOX = {"/etc/systemd/system/spamd.service.d/20-no-sandbox.conf":
              "[Service]\nProtectSystem=no\nPrivateTmp=no\n"}
GUEST_FILES: dict[str, str] = {
    "etc/systemd/system/spamd.service.d/10-sa-update.conf":
        "[Service]\nExecStartPre=/bin/sh -c \"sa-update || true\"\n",
    "etc/systemd/system/mp-net.service":
        "[Unit]\nDescription=mailpreflight lab: network condition from mp.net=\nDefaultDependencies=no\n"
        "Before=network.target spamd.service\nWants=network.target\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/mp-net\n"
        "[Install]\nWantedBy=multi-user.target\n",
    "usr/local/sbin/mp-net":
        "#!/bin/sh\n# mp.net=dropped: a route into a dummy interface, so that packets vanish without an error\n"
        "ip link set lo up\n"
        "case \" $(cat /proc/cmdline) \" in\n"
        "  *' mp.net=dropped '*)\n"
        "    modprobe dummy && ip link add mp0 type dummy && ip addr add 10.0.2.15/24 dev mp0 &&\n"
        "      ip link set mp0 up && ip route add default via 10.0.2.2 ;;\n"
        "esac\n"
        "exit 0\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/systemd/system/mp-record.service":
        "[Unit]\nDescription=mailpreflight lab: record what PID 1 decided about spamd, then power off\n"
        "After=spamd.service\n"
        "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/mp-record\n"
        "[Install]\nWantedBy=multi-user.target\n",
    "usr/local/sbin/mp-record":
        "#!/bin/sh\nout=/var/log/mp-result\n"
        "# Type=simple reports 'active' at once: watch a while for exits and restarts (Restart=always)\n"
        "for i in $(seq 1 ${MP_WATCH:-12}); do\n"
        "  case \"$(systemctl show spamd.service -p NRestarts -p ActiveState)\" in\n"
        "    *NRestarts=0*ActiveState=active*|*ActiveState=active*NRestarts=0*) sleep 4 ;;\n"
        "    *) break ;;\n"
        "  esac\n"
        "done\n"
        "{ systemctl show spamd.service -p ActiveState -p SubState -p Result -p ExecMainStatus"
        " -p ExecMainCode -p NRestarts -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic;\n"
        "  echo '--- journal'; journalctl -b -o short-monotonic --no-pager -u spamd.service; } > $out.tmp 2>&1\n"
        "sync; mv $out.tmp $out; sync\nsystemctl poweroff --no-block\n",
    "etc/hostname": "mpguest\n",
    "etc/fstab": "/dev/vda / ext4 rw 0 1\n",
}
EXECUTABLE = ("usr/local/sbin/mp-net", "usr/local/sbin/mp-record")
ENABLE = ("spamd.service", "mp-net.service", "mp-record.service")
MASK = ("serial-getty@ttyS0.service", "getty@tty1.service", "systemd-timesyncd.service",
        "spamassassin-maintenance.timer", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
        "fstrim.timer", "man-db.timer")


def unavailable_reason() -> str | None:
    """Why the VM suite cannot run here, or None."""
    if os.environ.get("MAILPREFLIGHT_VM_TESTS", "") != "1":
        return "the booted-guest suite is off (set MAILPREFLIGHT_VM_TESTS=1; it costs ~10 minutes)"
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, mke2fs -d of a root-owned tree)"
    for tool in ("mmdebstrap", "qemu-system-x86_64", "mke2fs", "debugfs"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./bootstrap installs it)"
    return None


@dataclass(frozen=True)
class Guest:
    root: Path  # the guest's tree, as built (the image is made from it)
    kernel: Path
    initrd: Path

    def image(self, directory: Path, extra: dict[str, str] | None = None, size: str = "3G") -> Path:
        """A fresh raw ext4 image of the guest's tree (each boot gets its own: guests write to their disk),
        plus `extra` files (guest path -> text) written into it with debugfs, in directories that exist."""
        image = directory / "guest.img"
        image.unlink(missing_ok=True)
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "mpguest", "-d", str(self.root), str(image), size],
                       check=True, capture_output=True, timeout=600)
        for guest_path, text in (extra or {}).items():
            source = directory / "extra.tmp"
            source.write_text(text, encoding="utf-8")
            folder, _, name = guest_path.rpartition("/")
            done = subprocess.run(["debugfs", "-w", "-f", "-", str(image)],
                                  input=f"cd {folder}\nwrite {source} {name}\n", capture_output=True, text=True,
                                  timeout=60)
            if done.returncode != 0 or read_file(image, guest_path) != text:
                raise RuntimeError(f"cannot write {guest_path} into {image}: {done.stderr.strip()}")
            source.unlink()
        return image


def build(cache: Path = CACHE) -> Guest:
    """The guest tree, built once per recipe and kept in the cache."""
    root = cache / f"guest-r{RECIPE}"
    done = root / ".mp-built"
    if not done.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix="building-") as work:
            tree = Path(work) / "root"
            subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                            "bookworm", str(tree), MIRROR], check=True, capture_output=True, timeout=1800)
            customize(tree)
            if root.exists():
                shutil.rmtree(root)
            tree.rename(root)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"{root}/boot has no kernel or initrd: rebuild with `rm -r {root}`")
    return Guest(root, kernels[-1], initrds[-1])


def customize(tree: Path) -> None:
    """The lab's files and enablement on top of the packages (the image is made from the tree)."""
    for name, text in GUEST_FILES.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_text(text, encoding="utf-8")
    for name in EXECUTABLE:
        (tree / name).chmod(0o755)
    subprocess.run(["systemctl", f"--root={tree}", "enable", *ENABLE], check=True, capture_output=True,
                   timeout=60)
    subprocess.run(["systemctl", f"--root={tree}", "mask", *MASK], check=True, capture_output=True,
                   timeout=60)
    (tree / "etc/machine-id").write_text("", encoding="utf-8")  # first boot makes one
    (tree / ".mp-built").write_text(f"recipe {RECIPE}\n", encoding="utf-8")




@dataclass(frozen=True)
class Boot:
    """What PID 1 decided about spamd.service in one boot, read back from the guest's disk."""

    properties: dict[str, str]
    journal: str
    seconds: float
    console: str

    @property
    def active(self) -> bool:
        return self.properties.get("ActiveState") == "active"

    @property
    def result(self) -> str:
        return self.properties.get("Result", "")


def boot(guest: Guest, image: Path, net: str, timeout: float = BOOT_TIMEOUT) -> Boot:
    """Boot the image once under `net` (none | dropped) and read the recorder's file back."""
    if net not in ("none", "dropped"):
        raise ValueError(net)
    argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-smp", "2", "-cpu", "max", "-m", "1024",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", f"root=/dev/vda rw console=ttyS0 quiet mp.net={net} systemd.show_status=0",
            "-drive", f"file={image},format=raw,if=virtio", "-nic", "none", "-no-reboot", "-nographic",
            "-serial", "stdio", "-monitor", "none"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    text = read_file(image, "/var/log/mp-result")
    if text is None:
        raise RuntimeError(f"the guest wrote no result (qemu exit {done.returncode}); console tail:\n"
                           + done.stdout[-3000:])
    head, _, journal = text.partition("--- journal\n")
    properties = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    return Boot(properties, journal, seconds, done.stdout)


def read_file(image: Path, path: str) -> str | None:
    """A file of the (powered-off) guest's ext4 image, without mounting it."""
    done = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, timeout=60)
    text = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0 or not text or re.search(r"File not found by ext2_lookup", done.stderr.decode()):
        return None
    return text
