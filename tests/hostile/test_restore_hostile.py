"""`restore`/`drift` with tampered baselines (they travel through tickets): paths that climb out of /etc and
the root, set-uid modes, links on the way, garbage records, baselines that are FIFOs or nested without end.
Nothing is written outside the root's /etc, nothing outside the root is read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hostile_roots import Guest

from mailpreflight.baseline.digestkey import Digest, read_key

PAM = "auth required pam_unix.so\n"


def baseline_of(guest: Guest) -> tuple[Path, dict[str, Any]]:
    """A real snapshot of a small root, to be tampered with."""
    guest.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    guest.write("/etc/pam.d/imap", PAM)
    guest.write("/etc/pam.d/other", "auth required pam_deny.so\n")
    path = guest.tmp / "baseline.json"
    guest.extra_outputs = (path,)
    assert guest.run("snapshot", "--output", str(path), bound=30).returncode == 0
    document: dict[str, Any] = json.loads(path.read_text())
    return path, document


def tamper(guest: Guest, path: Path, document: dict[str, Any], files: dict[str, Any]) -> None:
    """Records added or changed, and signed with the host's key: a valid MAC says an entry is what `snapshot`
    wrote (or what someone holding the key wrote), not that it is safe to write back."""
    digest = Digest(read_key(str(guest.key)))
    for name, entry in files.items():
        if isinstance(entry.get("text"), str):
            entry["sha256"] = digest.hexdigest(entry["text"].encode())
        entry["mac"] = digest.mac(name, entry)
    document["files"].update(files)
    path.write_text(json.dumps(document))


def test_an_unsigned_change_is_refused_before_anything_else(guest: Guest) -> None:
    baseline, document = baseline_of(guest)
    document["files"]["/etc/pam.d/imap"]["mode"] = "4755"
    baseline.write_text(json.dumps(document))
    done = guest.run("restore", "--baseline", str(baseline), "/etc/pam.d/imap", bound=20)
    assert done.returncode == 3 and "was changed after the snapshot (its MAC does not match)" in done.stderr


def entry(text: str = "pwned\n", mode: Any = "0644", uid: Any = 0, gid: Any = 0, **extra: Any) -> dict[str, Any]:
    """A file record with every field `snapshot` writes (load_baseline refuses one without them)."""
    return {"type": "file", "mode": mode, "uid": uid, "gid": gid, "owner": None, "group": None,
            "size": len(text.encode()), "sha256": None, "text": text, "text_omitted": None, **extra}


def link_entry(target: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "symlink", "mode": "0777", "uid": 0, "gid": 0, "owner": None, "group": None, "target": target,
            **extra}


@pytest.mark.parametrize("path", [
    "/etc/../../../../../../../../tmp/mailpreflight-hostile-x",  # out of /etc, out of the root, onto the host
    "/etc/../host-secret",
    "/etc/pam.d/../../../host-secret",
    "/etc//pam.d/imap",
    "/etc/./pam.d/imap",
    "/etc/pam.d/imap/",
    "/etc/pam.d/..",
])
def test_non_canonical_paths_are_refused_not_normalised(guest: Guest, path: str) -> None:
    baseline, document = baseline_of(guest)
    for dry in (("--dry-run",), ()):  # on the command line
        done = guest.run("restore", "--baseline", str(baseline), *dry, path, bound=20)
        assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"mailpreflight: refusing to restore {path}: a path with"), done.stderr
        assert "is ambiguous (give the plain path" in done.stderr
    tamper(guest, baseline, document, {path: entry()})  # in the baseline: the baseline is refused when loaded
    for dry in (("--dry-run",), ()):
        done = guest.run("restore", "--baseline", str(baseline), *dry, path, bound=20)
        assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
        assert f"files[{json.dumps(path)}]: not an absolute, normalized path" in done.stderr, done.stderr
    assert not os.path.lexists("/tmp/mailpreflight-hostile-x")
    assert guest.path("/etc/pam.d/imap").read_text() == PAM


def test_setid_bits_are_dropped_unless_allowed_and_dry_run_shows_mode_and_owner(guest: Guest) -> None:
    baseline, document = baseline_of(guest)
    tamper(guest, baseline, document, {"/etc/pam.d/imap": entry(PAM, mode="4755", uid=0, gid=12),
                                "/etc/pam.d/new": entry("auth required pam_deny.so\n", mode="6777")})
    dry = guest.run("restore", "--baseline", str(baseline), "--dry-run", "/etc/pam.d/imap", "/etc/pam.d/new",
                    bound=20)
    assert dry.returncode == 0
    assert "/etc/pam.d/imap: mode 0644 -> 0755, owner 0:0 -> 0:12\n" in dry.stdout  # the text is the same
    assert "/etc/pam.d/new: missing -> file mode 0777, owner 0:0  (world-writable!)" in dry.stdout
    assert "set-uid/set-gid/sticky bits (4755) were not restored (--allow-setid restores them)" in dry.stderr
    assert stat.S_IMODE(guest.path("/etc/pam.d/imap").stat().st_mode) == 0o644  # a dry run writes nothing
    assert not guest.path("/etc/pam.d/new").exists()
    done = guest.run("restore", "--baseline", str(baseline), "/etc/pam.d/imap", bound=20)
    assert done.returncode == 0 and stat.S_IMODE(guest.path("/etc/pam.d/imap").stat().st_mode) == 0o755
    guest.path("/etc/pam.d/imap.mailpreflight-backup").unlink()
    allowed = guest.run("restore", "--baseline", str(baseline), "--allow-setid", "/etc/pam.d/imap", bound=20)
    assert allowed.returncode == 0 and stat.S_IMODE(guest.path("/etc/pam.d/imap").stat().st_mode) == 0o4755
    if os.geteuid() == 0:
        assert guest.path("/etc/pam.d/imap").stat().st_gid == 12


@pytest.mark.parametrize("linked", ["/etc/pam.d", "/etc"])
def test_a_linked_directory_on_the_way_is_refused(guest: Guest, linked: str) -> None:
    """/etc/pam.d (or /etc) is a link that climbs out of the root to a host directory."""
    baseline, document = baseline_of(guest)
    tamper(guest, baseline, document, {"/etc/pam.d/imap": entry()})
    target = guest.path(linked)
    os.rename(target, target.with_name(target.name + ".real"))
    os.symlink("../" * linked.count("/") + "host-dir", target)
    assert Path(os.path.realpath(target)) == guest.host_dir
    done = guest.run("restore", "--baseline", str(baseline), "--other-host", "/etc/pam.d/imap", bound=20)
    assert done.returncode == 3 and f"refusing to write through the symlink {linked}" in done.stderr, done.stderr
    assert not (guest.host_dir / "imap").exists()


def test_a_symlink_record_puts_a_link_inside_the_root_and_nothing_follows_it_out(guest: Guest) -> None:
    baseline, document = baseline_of(guest)
    tamper(guest, baseline, document, {"/etc/pam.d/imap": link_entry(str(guest.canary))})
    done = guest.run("restore", "--baseline", str(baseline), "/etc/pam.d/imap", bound=20)
    assert done.returncode == 0 and os.readlink(guest.path("/etc/pam.d/imap")) == str(guest.canary)
    assert guest.path("/etc/pam.d/imap.mailpreflight-backup").read_text() == PAM
    # the link is the guest's: read inside the root it leads nowhere, and no verb reads the host file
    drift = guest.run("drift", "--baseline", str(baseline), bound=30)
    assert drift.returncode in (0, 1, 2)
    assert guest.run("snapshot", bound=30).returncode == 0


@pytest.mark.parametrize("record, error", [  # refused when the baseline is loaded (baseline/document.py)
    (entry(mode="99999"), '["mode"]: "99999", not four octal digits'),
    (entry(mode="17777"), '["mode"]: "17777", not four octal digits'),
    (entry(mode=420), '["mode"]: 420, not four octal digits'),
    (entry(uid=-1), '["uid"]: -1, not a user or group id'),
    (entry(gid=2**40), '["gid"]: 1099511627776, not a user or group id'),
    (entry(uid=True), '["uid"]: true, not a user or group id'),
    (link_entry(""), '["target"]: "", not a symlink\'s target'),
    (link_entry("a\0b"), '["target"]: "a\\u0000b", not a symlink\'s target'),
    ({"type": "fifo", "mode": "0644", "uid": 0, "gid": 0}, '["type"]: "fifo", not one of file, dir, symlink, other'),
])
def test_garbage_records_are_refused_in_one_line(guest: Guest, record: dict[str, Any], error: str) -> None:
    baseline, document = baseline_of(guest)
    tamper(guest, baseline, document, {"/etc/pam.d/imap": record})
    done = guest.run("restore", "--baseline", str(baseline), "/etc/pam.d/imap", bound=20)
    assert done.returncode == 3 and error in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert guest.path("/etc/pam.d/imap").read_text() == PAM


def test_a_fifo_at_the_restored_path_is_not_replaced(guest: Guest) -> None:
    baseline, _ = baseline_of(guest)
    guest.path("/etc/pam.d/imap").unlink()
    guest.fifo("/etc/pam.d/imap")
    done = guest.run("restore", "--baseline", str(baseline), "/etc/pam.d/imap", bound=20)
    assert done.returncode == 3 and "refusing to replace /etc/pam.d/imap: a FIFO (named pipe)" in done.stderr


@pytest.mark.parametrize("verb", ["drift", "restore"])
def test_hostile_baseline_files(guest: Guest, verb: str) -> None:
    """A FIFO for a baseline, a device, a baseline nested without end, paths that are not paths."""
    paths = ["/etc/pam.d/imap"] if verb == "restore" else []
    fifo = guest.tmp / "fifo.json"
    os.mkfifo(fifo)
    nested = guest.tmp / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    weird = guest.tmp / "weird.json"
    _, document = baseline_of(guest)
    document["files"]["x"] = 1
    guest.extra_outputs = (*guest.extra_outputs, weird)  # written by the test after the first run
    weird.write_text(json.dumps(document))
    cases = [(str(fifo), "a FIFO (named pipe), not a regular file: not read (save it to a file first)"),
             (str(nested), "not a mailpreflight snapshot"),
             (str(weird), 'files["x"]: not an absolute, normalized path: not as `snapshot` writes it'),
             ("/dev/zero", "a character device (1,5), not a regular file")]
    for baseline, error in cases:
        done = guest.run(verb, "--baseline", baseline, *paths, bound=15)
        assert done.returncode == 3 and error in done.stderr and done.stderr.count("\n") == 1, done.stderr
