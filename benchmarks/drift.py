#!/usr/bin/env python3
"""snapshot + drift on a realistic openSUSE Leap 15 mail root grown to N config files, against the admin's
manual way in the same run: `cp -a` of the same directories before the upgrade and `diff -r` after it.

The "upgrade" deletes /etc/pam.d/imap and /etc/pam.d/smtp (the incident), changes 1 % of the files, deletes
and adds a few. Both methods must find every change; mailpreflight also says which findings they cause.

    .venv/bin/python benchmarks/drift.py [--files N]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mailpreflight.access.rootfs import RootFS
from mailpreflight.access.safewrite import write_atomically
from mailpreflight.baseline.digestkey import load_or_create
from mailpreflight.baseline.document import load_baseline
from mailpreflight.baseline.drift import compare
from mailpreflight.baseline.snapshot import MAIL_PATHS, take
from mailroots import leap15, write


def grow(root: Path, files: int, rng: random.Random) -> list[str]:
    """Postfix maps, dovecot and SpamAssassin snippets, unit drop-ins: N text files of 0.5-4 KiB."""
    places = ("/etc/postfix/maps", "/etc/dovecot/conf.d", "/etc/mail/spamassassin", "/etc/systemd/system/x.d")
    paths = []
    for i in range(files):
        path = f"{places[i % len(places)]}/f{i:06d}.cf"
        write(root, path, "".join(f"key{j} = value {rng.random():.12f}\n" for j in range(rng.randint(16, 128))))
        paths.append(path)
    return paths


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    rng = random.Random(25)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        root = leap15(work / "root")
        paths = grow(root, args.files, rng)
        fs = RootFS(str(root))
        baseline = work / "baseline.json"
        key = work / "baseline.key"  # never the host's /var/lib/mailpreflight/baseline.key
        dirs = [d for d in MAIL_PATHS if (root / d.lstrip("/")).exists()]

        def snapshot() -> None:
            write_atomically(str(baseline), json.dumps(take(fs, str(root), load_or_create(str(key)))), mode=0o600)

        def copy() -> None:
            for d in dirs:
                target = work / "copy" / d.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "-a", str(root / d.lstrip("/")), str(target)], check=True)

        t_snapshot, t_copy = timed(snapshot), timed(copy)
        # the upgrade
        (root / "etc/pam.d/imap").unlink()
        (root / "etc/pam.d/smtp").unlink()
        changed = rng.sample(paths, max(1, len(paths) // 100))
        for path in changed:
            with open(root / path.lstrip("/"), "a") as handle:
                handle.write("upgraded = yes\n")
        for path in paths[:5]:
            (root / path.lstrip("/")).unlink()
        for i in range(5):
            write(root, f"/etc/postfix/maps/new{i}.cf", "new = 1\n")
        result = None

        def drift() -> None:
            nonlocal result
            result = compare(str(baseline), load_baseline(str(baseline)), RootFS(str(root)), digest_key=str(key))

        diff_lines: list[str] = []

        def diff() -> None:
            for d in dirs:
                done = subprocess.run(["diff", "-r", str(work / "copy" / d.lstrip("/")), str(root / d.lstrip("/"))],
                                      capture_output=True, text=True)
                diff_lines.extend(line for line in done.stdout.splitlines() if line.startswith(("diff ", "Only in")))

        t_drift, t_diff = timed(drift), timed(diff)
        assert result is not None
        kinds = {k: sum(1 for c in result.changes if c.change == k) for k in ("deleted", "added", "changed")}
        expected = {"deleted": 7, "added": 5, "changed": len(changed)}
        causes = sorted({f.finding.code for c in result.changes for f in c.causes})
        size = baseline.stat().st_size
        print(f"root: {args.files + 150} files ({len(load_baseline(str(baseline)).files)} recorded paths, baseline "
              f"{size / 1024 / 1024:.1f} MiB)")
        print(f"  mailpreflight snapshot {t_snapshot:6.2f} s    peer cp -a of the same dirs {t_copy:6.2f} s    "
              f"ratio {t_snapshot / t_copy:5.2f}x")
        print(f"  mailpreflight drift    {t_drift:6.2f} s    peer diff -r               {t_diff:6.2f} s    "
              f"ratio {t_drift / t_diff:5.2f}x")
        print(f"  drift found {kinds} (expected {expected}); findings caused: {causes}; "
              f"diff -r reported {len(diff_lines)} entries and no findings")
        assert kinds == expected, kinds
        assert "MP301" in causes
        shutil.rmtree(work / "copy", ignore_errors=True)


if __name__ == "__main__":
    main()
