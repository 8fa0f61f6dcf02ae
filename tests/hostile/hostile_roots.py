"""The hostile-guest corpus' tools: small roots that try to hang a verb, make it read or move a host file, or write
outside its target. Every CLI run goes through `Guest.run`, which asserts what issue 17 asks of every case:
it finishes within its bound, prints no traceback, exits 0..3, and reads no byte from (nor writes any to)
outside the root: a canary host file beside the root must never show in the output and never change, nor may
anything else beside the root appear, vanish or change."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "mailpreflight"]
SPAMD = ("[Unit]\nDescription=spamd\n\n[Service]\nExecStartPre=/bin/bash -c \"sa-update || true\"\n"
         "ExecStart=/usr/sbin/spamd\n")
# A unit whose only endpoint is on loopback: `check` on it sends nothing beyond 127.0.0.1.
LOOPBACK = ("[Unit]\nDescription=fetches from loopback only\n\n[Service]\n"
            "ExecStartPre=/usr/bin/curl -fsS http://127.0.0.1:9/feed\nExecStart=/usr/sbin/fetchyd\n")


def _state(path: Path, read_too: bool = False) -> tuple[int, ...]:
    """What a write changes; with `read_too`, what a read changes as well: the access time, which the host
    files nothing may read are given older than their mtime (relatime then updates it on the next read)."""
    info = os.lstat(path)
    return (info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode, *((info.st_atime_ns,) if read_too else ()))


def _never_read(path: Path) -> None:
    info = os.stat(path)
    os.utime(path, ns=(info.st_mtime_ns - 10**9, info.st_mtime_ns))


@dataclass
class Guest:
    """A root under tmp_path/root, and host files beside it that nothing may read or touch."""

    tmp: Path
    root: Path = field(init=False)
    canary: Path = field(init=False)
    secret: str = field(init=False)
    host_dir: Path = field(init=False)
    resolv: Path = field(init=False)
    key: Path = field(init=False)
    extra_outputs: tuple[Path, ...] = ()  # files beside the root a test lets the verb write (--output)
    elapsed: float = 0.0  # of the last run
    _outside: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.tmp / "root"
        self.root.mkdir()
        # coreutils' timeout: what a drop-in written into this guest may call (fix/inguest.py)
        (self.root / "usr/bin").mkdir(parents=True)
        (self.root / "usr/bin/timeout").write_text("")
        (self.root / "usr/bin/timeout").chmod(0o755)
        self.secret = f"HOST-CANARY-{secrets.token_hex(8)}"
        self.canary = self.tmp / "host-secret"
        self.canary.write_text(f"{self.secret}\nnameserver 192.0.2.53\nX={self.secret}\n")
        self.host_dir = self.tmp / "host-dir"  # names a glob on the host would list
        self.host_dir.mkdir()
        for index in range(3):
            (self.host_dir / f"{self.secret}-{index}.conf").write_text(f"Y{index}={self.secret}\n")
            _never_read(self.host_dir / f"{self.secret}-{index}.conf")
        _never_read(self.canary)
        self.resolv = self.tmp / "resolv.conf"  # the host resolver `check` is given: loopback only
        self.resolv.write_text("nameserver 127.0.0.1\n")
        self.key = self.tmp / "baseline.key"  # the host's digest key (snapshot would make one in /var/lib)
        self.key.write_text(secrets.token_hex(32) + "\n")
        os.chmod(self.key, 0o600)
        self.write("/etc/os-release", 'ID=debian\nPRETTY_NAME="hostile guest"\n')

    # -- building the root ----------------------------------------------------------------------------------
    def path(self, guest: str) -> Path:
        return self.root / guest.lstrip("/")

    def write(self, guest: str, text: str | bytes, mode: int = 0o644) -> Path:
        target = self.path(guest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        os.chmod(target, mode)
        return target

    def link(self, guest: str, target: str) -> Path:
        where = self.path(guest)
        where.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, where)
        return where

    def fifo(self, guest: str) -> Path:
        where = self.path(guest)
        where.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(where)
        return where

    def node(self, guest: str, kind: int, major: int, minor: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("creating device nodes needs root (os.mknod)")
        where = self.path(guest)
        where.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(where, kind | 0o644, os.makedev(major, minor))
        return where

    # -- running and checking -------------------------------------------------------------------------------
    def _outside_state(self) -> dict[str, tuple[int, ...]]:
        state = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp):  # never into the root, never through links
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != self.root]
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                if path not in self.extra_outputs:
                    state[str(path)] = _state(path, read_too=path == self.canary or self.secret in name)
        return state

    def assert_outside_untouched(self) -> None:
        now = self._outside_state()
        changed = {p: "appeared" for p in set(now) - set(self._outside)}
        changed |= {p: "vanished" for p in set(self._outside) - set(now)}
        changed |= {p: "changed" for p in set(now) & set(self._outside) if now[p] != self._outside[p]}
        assert not changed, f"read or written outside the root: {changed}"

    def run(self, *args: str, bound: float = 30.0, root: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the CLI (with --root unless `root` is False) and assert the hostile-input contract."""
        if not self._outside:
            self._outside = self._outside_state()
        argv = [*CLI, *args, *(("--root", str(self.root)) if root else ())]
        environ = {**os.environ, "MAILPREFLIGHT_DIGEST_KEY": str(self.key)}
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=bound, stdin=subprocess.DEVNULL,
                                  errors="replace", env=environ)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(args)}: still running after {bound} s (a hang)")
        self.elapsed = time.monotonic() - started
        assert "Traceback" not in done.stderr, done.stderr
        assert 0 <= done.returncode <= 3, (done.returncode, done.stderr)
        assert self.secret not in done.stdout and self.secret not in done.stderr, "a host file was read"
        self.assert_outside_untouched()
        return done

    def check(self, *units: str, bound: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`check` that probes nothing beyond loopback: host resolver 127.0.0.1, no auth probes."""
        return self.run("check", *units, "--no-auth", "--timeout", "0.5", "--deadline", "5",
                        "--resolv-conf", str(self.resolv), bound=bound)
