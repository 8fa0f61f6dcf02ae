"""The read gate (RootFS) and the write walk (safewrite) themselves: what a path swapped after it was resolved,
a link on the way, a file that grows or is replaced, a huge directory, or an --output path can do."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest
from hostile_roots import LOOPBACK, Guest

from mailpreflight.access import bounded, rootfs
from mailpreflight.access.bounded import GuestFileRefused
from mailpreflight.access.rootfs import RootFS
from mailpreflight.baseline import snapshot
from mailpreflight.baseline.digestkey import Digest

pytestmark = pytest.mark.usefixtures("gate_way")  # each test with openat2 and with the walk


def test_a_component_swapped_for_a_link_after_resolving_is_not_followed(guest: Guest,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """chase() said /etc/conf/x; by the time of the open, /etc/conf is a link to a host directory."""
    guest.write("/etc/conf/x", "guest\n")
    fs = RootFS(str(guest.root))
    assert fs.read_bytes("/etc/conf/x") == b"guest\n"
    os.rename(guest.path("/etc/conf"), guest.path("/etc/conf.old"))
    guest.link("/etc/conf", str(guest.host_dir))
    (guest.host_dir / "x").write_text(guest.secret)
    monkeypatch.setattr(RootFS, "chase", lambda self, path, follow_last=True: "/etc/conf/x")
    with pytest.raises(GuestFileRefused, match="changed into a symlink while being read") as refused:
        fs.read_bytes("/etc/conf/x")
    assert refused.value.errno in (errno.ENOTDIR, errno.ELOOP)
    assert [str(r) for r in fs.refusals] == [f"/etc/conf/x: {refused.value.reason}"]


def test_a_last_component_that_is_a_link_is_not_followed_by_the_open(guest: Guest,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """chase() said /etc/x is a file; by the time of the open it is a link to a host file: O_NOFOLLOW."""
    guest.link("/etc/x", str(guest.canary))
    fs = RootFS(str(guest.root))
    monkeypatch.setattr(RootFS, "chase", lambda self, path, follow_last=True: "/etc/x")
    with pytest.raises(GuestFileRefused, match="a symlink, not a regular file"):
        fs.read_bytes("/etc/x")
    assert fs.read_text("/etc/x") is None


def test_without_proc_the_reopen_checks_it_is_the_same_file(guest: Guest) -> None:
    guest.write("/etc/a", "a\n")
    guest.write("/etc/b", "b\n")
    fs = RootFS(str(guest.root))
    other = os.stat(guest.path("/etc/b"))
    with pytest.raises(GuestFileRefused, match="replaced while being read"):
        fs._reopen("/etc/a", "/etc/a", other)
    fd = fs._reopen("/etc/b", "/etc/b", other)
    assert os.read(fd, 10) == b"b\n"
    os.close(fd)


def test_lstat_and_readlink_never_follow_a_guest_link_on_the_host(guest: Guest) -> None:
    """/etc/systemd/system is an absolute link: on the host it names a host directory. Metadata and link
    targets come from inside the root, where that path leads."""
    inside = f"{guest.host_dir}/x.service"
    guest.link("/etc/systemd/system", str(guest.host_dir))
    guest.write(inside, LOOPBACK)
    os.symlink(guest.canary, guest.host_dir / "x.service")  # what the host path would show
    fs = RootFS(str(guest.root))
    info = fs.lstat("/etc/systemd/system/x.service")
    assert info is not None and stat.S_ISREG(info.st_mode)
    assert info.st_ino == os.stat(guest.path(inside)).st_ino
    assert fs.readlink("/etc/systemd/system/x.service") is None
    shown = guest.run("show", "x.service", bound=15)
    assert shown.returncode == 0 and "http://127.0.0.1:9/feed" in shown.stdout


def test_huge_directories_are_listed_up_to_a_cap(guest: Guest) -> None:
    for index in range(50):
        guest.write(f"/etc/many/{index:03}.conf", "")
    fs = RootFS(str(guest.root))
    assert len(fs.listdir("/etc/many", limit=20)) == 20
    assert [str(r) for r in fs.refusals] == ["/etc/many: more than 20 entries: only 20 of them read"]
    assert fs.listdir("/etc/many") == [f"{i:03}.conf" for i in range(50)]


def test_a_file_that_grows_past_the_limit_is_refused(guest: Guest) -> None:
    guest.write("/etc/proc-like", "x" * 100)
    fs = RootFS(str(guest.root))
    assert fs.read_bytes("/etc/proc-like", 100) == b"x" * 100
    with pytest.raises(GuestFileRefused, match="larger than 99 bytes") as refused:
        fs.read_bytes("/etc/proc-like", 99)
    assert refused.value.errno == errno.EFBIG
    assert RootFS("/").read_text("/proc/self/stat") is not None  # st_size 0, read to its end


def test_snapshot_hashes_a_bounded_total(guest: Guest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big (sparse) files cost nothing to plant and much to hash: a snapshot hashes a bounded total."""
    for index in range(5):
        target = guest.path(f"/etc/postfix/map{index}.db")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.truncate(400 * 1024)
    monkeypatch.setattr(snapshot, "HASH_TOTAL_LIMIT", 1024 * 1024)
    files, _ = snapshot.collect(RootFS(str(guest.root)), Digest(b"k" * 32), ())
    hashed = [p for p in files if p.startswith("/etc/postfix/map") and files[p].sha256]
    refused = [p for p in files if "already hashed 1 MiB" in str(files[p].text_omitted)]
    assert len(hashed) == 2 and len(refused) == 3, files


def test_chase_gives_up_on_endless_dotdot_chains(guest: Guest) -> None:
    """Links of 1300 `..` each: a loop ends at the link limit, a long chain at the step limit, both fast."""
    guest.link("/etc/a", "../" * 1300 + "etc/b")
    guest.link("/etc/b", "../" * 1300 + "etc/a")
    for index in range(4):
        guest.link(f"/etc/c{index}", "../" * 1300 + f"etc/c{index + 1}")
    guest.write("/etc/c4", "end\n")
    fs = RootFS(str(guest.root))
    started = time.monotonic()
    assert fs.chase("/etc/a") is None and fs.read_text("/etc/a") is None
    assert fs.chase("/etc/c3") == "/etc/c4"  # 2 x 1300 steps: within the limit
    assert fs.chase("/etc/c0") is None  # 4 x 1300 steps: more than MAX_CHASE_STEPS
    assert time.monotonic() - started < 2
    assert rootfs.MAX_CHASE_STEPS == 4096


def test_one_run_reads_and_lists_a_bounded_total(guest: Guest) -> None:
    """Many files that are each within the limit: the run's ledger stops them (the GeneratedFS view shares it)."""
    for index in range(3):
        guest.write(f"/etc/conf.d/{index}.conf", "x" * 60)
    for index in range(50):
        guest.write(f"/etc/many/{index:03}", "")
    fs = RootFS(str(guest.root))
    fs._ledger.bytes_left, fs._ledger.entries_left = 100, 60
    assert fs.read_bytes("/etc/conf.d/0.conf") == b"x" * 60
    with pytest.raises(GuestFileRefused, match="this run already read 64 MiB from the root"):
        fs.read_bytes("/etc/conf.d/1.conf")
    assert len(fs.listdir("/etc/many")) == 50 and len(fs.listdir("/etc/conf.d")) == 3
    assert len(fs.listdir("/etc/many")) == 7
    assert "not listed in full: this run already listed" in str(fs.refusals[-1])
    from mailpreflight.units.generators import Generated, GeneratedFS

    view = fs.sharing_ledger(GeneratedFS(fs.root, Generated(())))
    assert view.listdir("/etc/many") == [] and view.refusals == fs.refusals


def test_a_snapshot_records_a_bounded_total_of_text(guest: Guest, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(4):
        guest.write(f"/etc/postfix/part{index}.cf", f"# {index}\n" + "y" * 1000 + "\n")
    monkeypatch.setattr(snapshot, "TEXT_TOTAL_LIMIT", 2500)
    files, _ = snapshot.collect(RootFS(str(guest.root)), Digest(b"k" * 32), ())
    texts = [p for p in files if p.startswith("/etc/postfix/part") and files[p].text is not None]
    omitted = [p for p in files if "of text" in str(files[p].text_omitted)]
    assert len(texts) == 2 and len(omitted) == 2 and all(files[p].sha256 for p in omitted)


def test_read_head_reads_the_start_of_a_regular_file_of_any_size_through_the_gate(guest: Guest) -> None:
    """Whether a program is a `#!` script: its first bytes, not a refusal of a large binary (nor a warning the
    admin can do nothing about), and only what the gate allows — no FIFO, no link out of the root."""
    big = b"\x7fELF" + b"\0" * (rootfs.READ_LIMIT + 1)
    guest.path("/usr/sbin").mkdir(parents=True)
    guest.path("/usr/sbin/daemon").write_bytes(big)
    fs = RootFS(str(guest.root))
    assert fs.read_head("/usr/sbin/daemon", 128) == big[:128]
    assert fs.refusals == ()
    guest.link("/usr/sbin/out", str(guest.canary))  # absolute: resolved inside the root, where it is missing
    with pytest.raises(FileNotFoundError):
        fs.read_head("/usr/sbin/out", 128)
    os.mkfifo(guest.path("/usr/sbin/fifo"))
    with pytest.raises(GuestFileRefused, match="FIFO"):
        fs.read_head("/usr/sbin/fifo", 128)


def test_a_large_binary_in_a_start_path_is_no_warning(guest: Guest) -> None:
    """`deps` looks at each program's first line; Debian's own units run binaries of megabytes (systemctl,
    systemd-logind): that used to print 'larger than 256 KiB: not read ... check what it is' for each."""
    from mailpreflight.deps.analyze import analyze
    from mailpreflight.units.loader import UnitLoader

    guest.write("/etc/systemd/system/big.service", "[Service]\nExecStart=/usr/sbin/big-daemon --x\n")
    guest.path("/usr/sbin").mkdir(parents=True, exist_ok=True)
    guest.path("/usr/sbin/big-daemon").write_bytes(b"\x7fELF" + b"\0" * (2 * 1024 * 1024))
    guest.write("/usr/sbin/small-script", "#!/bin/sh\nexec curl -fsS http://mirror.example.org/x\n")
    guest.write("/etc/systemd/system/script.service", "[Service]\nExecStart=/usr/sbin/small-script\n")
    loader = UnitLoader(RootFS(str(guest.root)))
    analyze(loader.load("big.service"), loader.fs)
    script = analyze(loader.load("script.service"), loader.fs)
    assert loader.fs.refusals == ()
    assert [c.command.tool for c in script.commands] == ["small-script", "curl"]  # the script is still read


def test_a_plain_path_is_pinned_in_one_call_and_a_linked_one_walked(guest: Guest, gate_way: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """openat2 answers a path without links (no walk); a link on the way, even one inside the root, is left to
    chase() and the walk — and the bytes are the same either way."""
    guest.write("/usr/lib/x.conf", "x\n")
    guest.link("/lib", "usr/lib")
    fs = RootFS(str(guest.root))
    walked: list[str] = []
    walk = RootFS._open_parent
    monkeypatch.setattr(RootFS, "_open_parent", lambda self, resolved: walked.append(resolved) or walk(self, resolved))
    assert fs.read_bytes("/usr/lib/x.conf") == b"x\n"
    assert fs.read_bytes("/lib/x.conf") == b"x\n"
    assert walked == ([] if gate_way == "openat2" else ["/usr/lib/x.conf", "/usr/lib/x.conf"])
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("/usr/lib/missing/x.conf")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("/usr/lib/x.conf/below")  # a file as a directory: missing, as chase() says


def test_a_file_in_a_linked_directory_already_resolved_is_pinned_where_it_lies(guest: Guest, gate_way: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Once /lib is known to lie at /usr/lib (a unit dir the loader listed), /lib/x.conf is pinned as /usr/lib/x.conf
    at once — and a link, a missing name or a FIFO there gets what chase() and the walk give it."""
    guest.write("/usr/lib/x.conf", "x\n")
    guest.link("/usr/lib/link.conf", str(guest.canary))
    os.mkfifo(guest.path("/usr/lib/fifo.conf"))
    guest.link("/lib", "usr/lib")
    fs = RootFS(str(guest.root))
    assert fs.chase("/lib") == "/usr/lib" and fs._chase_dir("/lib") == "/usr/lib"
    chased: list[str] = []
    chase = RootFS.chase

    def counted(self: RootFS, path: str, follow_last: bool = True) -> str | None:
        chased.append(path)
        return chase(self, path, follow_last)

    monkeypatch.setattr(RootFS, "chase", counted)
    assert fs.read_bytes("/lib/x.conf") == b"x\n"
    assert chased == ([] if gate_way == "openat2" else ["/lib/x.conf"])
    with pytest.raises(FileNotFoundError) as missing:
        fs.read_bytes("/lib/missing.conf")
    assert missing.value.filename == "/lib/missing.conf"
    assert fs.read_text("/lib/link.conf") is None  # a link to a host file: resolved inside the root, not there
    with pytest.raises(GuestFileRefused, match="FIFO") as refused:
        fs.read_bytes("/lib/fifo.conf")
    assert refused.value.filename == "/lib/fifo.conf"


def test_a_read_stops_at_the_size_fstat_gave_only_when_all_of_it_came(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One read for a file read whole at its size; a file that grew, says 0 (/proc) or reads short goes on to its
    end, never past limit+1."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    reads: list[int] = []
    real_read = os.read

    def counted(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counted)

    def read(size: int | None, limit: int = 100) -> bytes:
        reads.clear()
        fd = os.open(path, os.O_RDONLY)
        try:
            return bounded.read_at_most(fd, limit, size)
        finally:
            os.close(fd)

    assert (read(3), reads) == (b"abc", [4])
    assert (read(None), reads) == (b"abc", [4])
    assert (read(0), len(reads)) == (b"abc", 3)  # /proc's 0: 1 byte, the rest, then the end
    assert (read(2), len(reads)) == (b"abc", 2)  # grew since fstat(): on to the end
    assert (read(5), len(reads)) == (b"abc", 2)  # shrank: the end is a read of nothing
    assert read(3, limit=2) == b"abc"  # limit+1 bytes: too big, as before
    assert read(3, limit=1) == b"ab"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_listing_dev_null_made_a_directory_leaks_no_descriptor(guest: Guest) -> None:
    """A guest whose /dev/null is a directory: RootFS.scan()'s one-call open (_open_plain_dir) succeeds for
    "/dev/null", then scan() returns [] for DEV_NULL without closing that descriptor. A name from the guest
    (`run-parts /dev/null`, a config dir) listed once per unit runs the process out of descriptors."""
    guest.path("/dev/null").mkdir(parents=True)
    (guest.path("/dev/null") / "entry").write_text("x\n")
    fs = RootFS(str(guest.root))
    before = _open_fds()
    for _ in range(50):
        assert fs.listdir("/dev/null") == []  # as before: /dev/null lists as empty, whatever the guest has there
    assert _open_fds() == before


def test_a_path_too_long_on_the_host_reads_as_lstat_sees_it(guest: Guest) -> None:
    """root + guest path longer than PATH_MAX (the guest path alone is not): lstat()/is_dir() and the walk (which
    resolve through the host path) say it is missing; openat2 (relative to the root's descriptor) reads and lists
    it. One tree, two answers."""
    deep = guest.tmp / ("r" * 200) / ("r" * 200) / ("r" * 200) / ("r" * 200) / ("r" * 200)
    deep.mkdir(parents=True)
    comp = "c" * 200
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(16):
        os.mkdir(comp, dir_fd=fd)
        sub = os.open(comp, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    out = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, b"DATA\n")
    os.close(out)
    os.close(fd)
    directory = f"/{comp}" * 16
    fs = RootFS(str(deep))
    assert len(str(deep)) + len(directory) + 2 > os.pathconf("/", "PC_PATH_MAX")
    exists = fs.lstat(f"{directory}/f") is not None
    try:
        fs.read_bytes(f"{directory}/f")
        read = True
    except FileNotFoundError:
        read = False
    assert read == exists
    assert (fs.listdir(directory) != []) == fs.is_dir(directory)


def test_holding_the_root_gives_the_same_answers_and_leaves_no_descriptor(guest: Guest, gate_way: str) -> None:
    """`deps` over a tree opens the root once for all its reads (RootFS.holding_root); the answers are the same,
    and the descriptor is closed when the block ends (a guest's FUSE mount must unmount after the run)."""
    guest.write("/etc/a.conf", "a\n")
    guest.link("/etc/out", str(guest.canary))
    os.mkfifo(guest.path("/etc/fifo"))
    fs = RootFS(str(guest.root))
    before = _open_fds()
    with fs.holding_root():
        assert fs.read_bytes("/etc/a.conf") == b"a\n"
        assert {"a.conf", "fifo", "out"} <= set(fs.listdir("/etc"))
        with pytest.raises(GuestFileRefused, match="FIFO"):
            fs.read_bytes("/etc/fifo")
        with pytest.raises(FileNotFoundError):
            fs.read_bytes("/etc/out")  # a link to a host path: resolved inside the root, where it is missing
        with fs.holding_root():  # nested: still the one descriptor
            assert fs.read_bytes("/etc/a.conf") == b"a\n"
    assert _open_fds() == before


def test_an_optional_file_that_is_not_there_is_none_and_anything_else_is_read_or_refused(guest: Guest) -> None:
    """read_optional() (EnvironmentFile=-...): None for a file that does not exist — a missing name, a missing
    directory on the way, a file as a directory, a link inside the root that leads nowhere, a link to a host file
    (resolved inside the root: not there) — and otherwise exactly read_bytes(): the bytes, or the same refusal."""
    guest.write("/usr/lib/x.conf", "x\n")
    guest.link("/lib", "usr/lib")
    guest.link("/etc/dangling", "/etc/nowhere")
    guest.link("/etc/host", str(guest.canary))
    guest.fifo("/etc/fifo")
    fs = RootFS(str(guest.root))
    for missing in ("/etc/none", "/etc/no/dir/x", "/usr/lib/x.conf/below", "/etc/dangling", "/etc/host",
                    "/lib/none"):
        assert fs.read_optional(missing) is None, missing
        with pytest.raises(FileNotFoundError):
            fs.read_bytes(missing)
    assert fs.read_optional("/usr/lib/x.conf") == fs.read_bytes("/lib/x.conf") == b"x\n"
    assert fs.read_optional("/lib/x.conf") == b"x\n"
    assert not guest.path("/dev").exists()  # an offline root's /dev is usually empty or missing
    assert fs.read_optional("/dev/null") == fs.read_bytes("/dev/null") == b""  # empty, never opened
    with pytest.raises(GuestFileRefused, match="FIFO"):
        fs.read_optional("/etc/fifo")
    with pytest.raises(GuestFileRefused, match="larger than"):
        fs.read_optional("/usr/lib/x.conf", 1)
    assert [r.path for r in fs.refusals] == ["/etc/fifo", "/usr/lib/x.conf"]


def test_nothing_lies_below_dev_null(guest: Guest) -> None:
    """/dev/null is no directory: a path below it, named or through a guest link to /dev/null, is not there. It is
    never looked up on the host, where the guest's /dev may be a link out of the root (here to a host directory
    holding a `null/x`): neither found, nor its type, nor a refusal that would say something is there."""
    guest.link("/dev", str(guest.host_dir))
    (guest.host_dir / "null").mkdir()
    (guest.host_dir / "null" / "x").write_text(guest.secret)
    guest.link("/etc/x", "/dev/null")
    fs = RootFS(str(guest.root))
    for path in ("/dev/null/x", "/etc/x/x", "/dev/null/x/y"):
        assert fs.chase(path) is None and fs.lstat(path) is None and not fs.is_dir(path), path
        assert fs.read_optional(path) is None, path
        with pytest.raises(FileNotFoundError):
            fs.read_bytes(path)
    assert fs.chase("/dev/null") == fs.chase("/etc/x") == "/dev/null"
    assert fs.read_bytes("/dev/null") == fs.read_bytes("/etc/x") == b""
    assert fs.refusals == ()
