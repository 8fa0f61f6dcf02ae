#!/usr/bin/env python3
"""Time to verdict, `mailpreflight check` against the real sa-update, with N = 1, 4, 16 mirrors all dropped by
the mail host's firewall (the namespace lab of tests/integration/netlab.py; root, nft, dnsmasq, sa-update).

    .venv/bin/python benchmarks/check.py [--mirrors 1 4 16] [--timeout 3]

Every N runs in its own lab, all at the same time: the run takes as long as the slowest sa-update
(16 mirrors: 16 x 30 s + 15 x 2 s, about 8.5 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from netlab import CHANNEL_DIR, NetLab, SigningKey, unavailable_reason, write_guest_root  # noqa: E402


def one(n: int, base: Path, key: SigningKey, timeout: float) -> dict[str, float | int | str]:
    with NetLab(base / "lab", signing_key=key) as lab:
        root = write_guest_root(base / "root", (
            "[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
            'ExecStartPre=/bin/bash -c "sa-update --updatedir /var/lib/sa-lab || true"\nExecStart=/usr/sbin/spamd\n'))
        updatedir = root / "var/lib/sa-lab"
        mirrors = "".join(f"http://{lab.mirror_addrs['mirror1']}/m{i}/ weight=1\n" for i in range(n))
        (updatedir / CHANNEL_DIR).mkdir(parents=True)
        (updatedir / CHANNEL_DIR / "MIRRORED.BY").write_text(mirrors)
        lab.firewall("http-drop")
        check = lab.run([str(REPO / ".venv/bin/mailpreflight"), "check", "--root", str(root), "spamd.service",
                         "--format", "json", "--timeout", str(timeout)], timeout=300)
        verdict = json.loads(check.stdout)["units"][0]["commands"][0]
        real = lab.sa_update([], updatedir, timeout=900)
    return {"mirrors": n, "check_s": round(check.seconds, 2), "check_exit": verdict["predicted_exit"],
            "check_predicted_s": verdict["predicted_seconds"], "sa_update_s": round(real.seconds, 1),
            "sa_update_exit": real.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirrors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--timeout", type=float, default=3.0, help="check's per-probe timeout")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"benchmark needs the namespace lab: {reason}")
        return 1
    base = Path(tempfile.mkdtemp(prefix="mp-bench-check-"))
    key = SigningKey.create(base / "signer")
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(len(args.mirrors)) as pool:
            rows = list(pool.map(lambda n: one(n, base / f"n{n}", key, args.timeout), args.mirrors))
    finally:
        key.close()
    print(f"{'mirrors':>7} {'check s':>8} {'predicted s':>11} {'pred exit':>9} {'sa-update s':>11} "
          f"{'real exit':>9} {'ratio':>7}")
    for row in rows:
        ratio = float(row["sa_update_s"]) / max(float(row["check_s"]), 0.01)
        print(f"{row['mirrors']:>7} {row['check_s']:>8} {row['check_predicted_s']:>11} {row['check_exit']:>9} "
              f"{row['sa_update_s']:>11} {row['sa_update_exit']:>9} {ratio:>6.1f}x")
    print(f"(all in {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
