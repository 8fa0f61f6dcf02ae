"""--output (check, snapshot): written only to a path whose every component was checked, atomically."""

from __future__ import annotations

import os
import stat

import pytest
from hostile_roots import LOOPBACK, SPAMD, Guest


@pytest.mark.parametrize("verb", ["check", "snapshot"])
def test_output_paths_are_checked_component_by_component(guest: Guest, verb: str) -> None:
    guest.write("/etc/systemd/system/spamd.service", SPAMD)
    guest.write("/etc/systemd/system/fetchy.service", LOOPBACK)
    linked = guest.tmp / "out-link"
    os.symlink(guest.host_dir, linked)
    fifo = guest.tmp / "out.fifo"
    os.mkfifo(fifo)
    args = ("check", "fetchy", "--no-auth", "--timeout", "0.5", "--deadline", "5", "--resolv-conf",
            str(guest.resolv), "--format", "prometheus") if verb == "check" else ("snapshot",)
    cases = [(f"{linked}/x.prom", f"refusing to write through the symlink {linked} (-> {guest.host_dir})"),
             (f"{guest.tmp}/../{guest.tmp.name}/x.prom", "a path with `..` in it is ambiguous"),
             (f"{guest.tmp}//x.prom", "a path with `//` or a trailing `/` in it is ambiguous"),
             (str(fifo), f"refusing to replace {fifo}: a FIFO (named pipe), not a regular file")]
    for output, error in cases:
        done = guest.run(*args, "--output", output, bound=30)
        assert done.returncode == 3 and error in done.stderr, done.stderr
    written = guest.tmp / "ok.out"
    guest.extra_outputs = (written,)
    done = guest.run(*args, "--output", str(written), bound=30)
    assert done.returncode in (0, 2) and written.read_text()
    if verb == "snapshot":
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [p.name for p in guest.tmp.iterdir() if p.name.startswith(".mailpreflight-")] == []
