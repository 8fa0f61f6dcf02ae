#!/usr/bin/env python3
"""Load every unit of a generated tree of 10,000 units (a third with drop-ins): units/second, peak memory,
and, as the peer in the same run, systemd's own loader: `systemd-analyze verify --root=DIR` over the same
units in one process (it loads every unit and its drop-ins and then checks each command's executable).

    .venv/bin/python benchmarks/load.py [--units N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.loader import UnitLoader

UNIT = """[Unit]
Description=Generated unit {i} for %n
After=network-online.target
Wants=network-online.target

[Service]
Type={type}
EnvironmentFile=-/etc/sysconfig/svc{i}
Environment="MODE=fast lane" LEVEL={i}
ExecStartPre=/bin/bash -c "sa-update --channel updates.example.org || true"
ExecStartPre=-/usr/bin/test -d %t/svc{i}
ExecStart=/usr/sbin/daemon{i} --pidfile=%t/d{i}.pid $OPTIONS \\
    --name '%p instance' --escape "\\x41\\t" ; /bin/echo done
ExecReload=/bin/kill -HUP $MAINPID
TimeoutStartSec=90

[Install]
WantedBy=multi-user.target
"""
DROPIN = "[Service]\nExecStartPre=\nExecStartPre=-/usr/local/bin/guard{i} -- sa-update\nTimeoutStartSec=120\n"


def generate(root: Path, count: int) -> list[str]:
    rng = random.Random(42)
    usr = root / "usr/lib/systemd/system"
    etc = root / "etc/systemd/system"
    usr.mkdir(parents=True)
    etc.mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=opensuse-leap\nVERSION_ID=15.6\n")
    names = []
    for i in range(count):
        name = f"svc{i}-worker.service"
        kind = rng.choice(["oneshot", "forking", "simple"])
        text = UNIT.format(i=i, type=kind)
        if kind != "oneshot":
            text = text.replace(" ; /bin/echo done", "")
        (usr / name).write_text(text)
        if i % 3 == 0:
            dropins = etc / f"{name}.d"
            dropins.mkdir()
            (dropins / "50-local.conf").write_text(DROPIN.format(i=i))
            if i % 6 == 0:
                (dropins / "10-env.conf").write_text("[Service]\nEnvironment=EXTRA=1\n")
        names.append(name)
    (usr / "service.d").mkdir()
    (usr / "service.d/10-all.conf").write_text("[Service]\nEnvironment=ALL=1\n")
    return names


def measure_ours(root: Path, names: list[str]) -> tuple[float, float]:
    """Seconds to load all units, keeping every result, and the growth of the process's peak RSS (MiB)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loader = UnitLoader(RootFS(str(root)))
    units = [loader.load(name) for name in names]
    elapsed = time.perf_counter() - start
    assert all(unit.load_error is None for unit in units)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return elapsed, (rss_after - rss_before) / 1024


def python_heap_peak(root: Path, names: list[str]) -> float:
    """Peak Python heap while loading (tracemalloc; slow, so not timed)."""
    tracemalloc.start()
    loader = UnitLoader(RootFS(str(root)))
    for name in names:
        loader.load(name)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def measure_systemd(root: Path, names: list[str]) -> float | None:
    if shutil.which("systemd-analyze") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["systemd-analyze", "verify", f"--root={root}", *names], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, env={"SYSTEMD_LOG_LEVEL": "err", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="generate into this dir and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mp-bench-"))
    try:
        t0 = time.perf_counter()
        names = generate(workdir, args.units)
        print(f"generated {len(names)} units ({len(names) // 3 + 1} with drop-ins) in "
              f"{time.perf_counter() - t0:.1f} s under {workdir}")
        elapsed, rss_growth = measure_ours(workdir, names)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"mailpreflight:          {len(names) / elapsed:8.0f} units/s ({elapsed:.2f} s); peak RSS {rss:.0f} MiB "
              f"(+{rss_growth:.0f} MiB holding all {len(names)} loaded units)")
        print(f"  python heap peak while loading (tracemalloc, untimed): {python_heap_peak(workdir, names):.1f} MiB")
        peer = measure_systemd(workdir, names)
        if peer is not None:
            print(f"systemd-analyze verify: {len(names) / peer:8.0f} units/s ({peer:.2f} s)")
            print(f"ratio: mailpreflight runs at {peer / elapsed:.2f}x the speed of systemd's own loader")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
