"""Run a guest root's own programs (its generators) as they would run at its boot, without touching the host.

In a private mount namespace (`unshare --mount --propagation private`, as root), a tmpfs becomes a view of
the guest: its /usr and /etc are overlays of the guest's on top of the host's (the guest's files win; the
host's only fill in what a bare package root lacks: libc, /bin/sh, coreutils), the directories generators read
are exactly the guest's (bind mounts: /etc/init.d, /etc/rc?.d, /etc/systemd/system, /usr/lib/systemd/system;
nothing of the host's units or scripts shows), and /run/systemd is an empty directory of the test's, where the
generators write. The program runs chrooted in that view. Nothing is mounted outside the namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GENERATOR_DIRS = ("generator", "generator.early", "generator.late")
EXACT_DIRS = ("/etc/init.d", *(f"/etc/rc{level}.d" for level in "0123456S"), "/etc/systemd/system",
              "/usr/lib/systemd/system", "/usr/local/lib/systemd/system")

_VIEW = r"""
set -eu
root=$1 view=$2 out=$3; shift 3
mount -t tmpfs -o mode=0755 mailpreflight-guest-view "$view"
cd "$view"
mkdir usr etc run dev tmp var
for name in bin sbin lib lib64; do ln -s "usr/$name" "$name"; done
mount -t overlay overlay -o "lowerdir=$root/usr:/usr" usr
mount -t overlay overlay -o "lowerdir=$root/etc:/etc" etc
mount --bind /dev dev
for dir in @EXACT@; do
    [ -d "$view$dir" ] || continue
    if [ -d "$root$dir" ]; then mount --bind "$root$dir" "$view$dir"
    else mount -t tmpfs -o mode=0755 empty "$view$dir"; fi
done
mkdir run/systemd
mount --bind "$out" run/systemd
exec chroot "$view" "$@"
""".replace("@EXACT@", " ".join(EXACT_DIRS))


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespaces, overlayfs, chroot)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        return f"cannot make a mount namespace: {probe.stderr.strip()}"
    return None


def run_generator(root: Path, program: str, out: Path, scratch: Path,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the guest's generator `program` (a guest path) as systemd 252 does at boot: argv = the normal,
    early and late output dirs (/run/systemd/generator, .early, .late, created empty beforehand),
    SYSTEMD_SCOPE=system, systemd's PATH. Its output lands in out/generator, out/generator.early,
    out/generator.late."""
    for name in ("usr", "etc"):
        if not (root / name).is_dir() or (root / name).is_symlink():
            raise ValueError(f"{root}/{name} is not a directory: the view needs a root with /usr merged")
    for name in GENERATOR_DIRS:
        (out / name).mkdir(parents=True, exist_ok=True)
    view = scratch / "view"
    view.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "SYSTEMD_SCOPE": "system",
           "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_LEVEL": "debug", "LANG": "C.UTF-8"}
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _VIEW, "view",
            str(root), str(view), str(out), program, *(f"/run/systemd/{name}" for name in GENERATOR_DIRS)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
