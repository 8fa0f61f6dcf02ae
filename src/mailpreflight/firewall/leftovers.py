"""`mailpreflight cleanup`: remove what killed `--guest-firewall` runs left (their namespaces, the processes
still inside them, their state files) and what the older route-through-the-host design left; live runs
are left alone. Split from firewall/sandbox.py (docs/design.md, small modules)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
from dataclasses import dataclass, field

from mailpreflight.errors import MailpreflightError
from mailpreflight.firewall.sandbox import (
    LEGACY_NAMESPACE,
    LEGACY_TABLE,
    NAME,
    NETNS_DIR,
    PREFIX,
    STATE_DIR,
    _directories,
    _locked,
    _remove_namespace,
    _run,
)


@dataclass
class Cleanup:
    removed: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def cleanup(dry_run: bool = False) -> Cleanup:
    """Remove what `check --guest-firewall` runs that were killed (SIGKILL, a crash, a power cut of the
    terminal in older versions) left: their namespaces and state files. A live run's are left alone."""
    if os.geteuid() != 0:
        raise MailpreflightError("cleanup needs root (it deletes network namespaces)",
                                 hint="run it as root: sudo mailpreflight cleanup")
    result = Cleanup()
    if os.path.isdir(STATE_DIR):
        _directories()
        with _locked():
            live = _collect_state(result, dry_run)
            for entry in _namespaces():
                if NAME.fullmatch(entry) and entry not in live:
                    _drop(result, entry, "left without a state file", dry_run)
    else:
        for entry in _namespaces():
            if NAME.fullmatch(entry):
                _drop(result, entry, "left without a state file", dry_run)
    _legacy(result, dry_run)
    return result


def _namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def _collect_state(result: Cleanup, dry_run: bool) -> set[str]:
    """Each state file: locked means its run lives (kept), unlocked means it was killed (removed)."""
    live = set()
    for entry in sorted(os.listdir(STATE_DIR)):
        match = re.fullmatch(r"(\d+-[0-9a-f]{12})\.json", entry)
        if not match:
            continue
        namespace, path = PREFIX + match.group(1), f"{STATE_DIR}/{entry}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            result.problems.append(f"{path}: {exc.strerror}")
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                result.problems.append(f"{path}: not a regular file; left alone")
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(namespace)
                result.live.append(f"{namespace} belongs to a run still going (pid {match.group(1).split('-')[0]})")
                continue
            if _drop(result, namespace, "its run was killed", dry_run) and not dry_run:
                os.unlink(path)
        finally:
            os.close(fd)
    return live


def _drop(result: Cleanup, namespace: str, why: str, dry_run: bool) -> bool:
    """Remove a dead run's namespace; False when it could not be."""
    exists = os.path.lexists(f"{NETNS_DIR}/{namespace}")
    problem = None if dry_run or not exists else _remove_namespace(namespace)
    if problem:
        result.problems.append(problem)
        return False
    if exists:
        result.removed.append(f"{'would remove' if dry_run else 'removed'} network namespace {namespace} ({why})")
    else:
        result.removed.append(f"{'would remove' if dry_run else 'removed'} the state of {namespace} ({why})")
    return True


def _ours_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"mailpreflight" in handle.read()
    except OSError:
        return False


def _legacy(result: Cleanup, dry_run: bool) -> None:
    """Before the sealed design, a run went out through the host: `mpguest-PID` namespaces (their veth goes
    with them), /etc/netns/mpguest-PID, an nft table `ip mailpreflight_guest_PID` and ip_forward set to 1,
    whose value before cannot be known any more."""
    found = False
    verb = "would remove" if dry_run else "removed"
    for entry in _namespaces():
        match = LEGACY_NAMESPACE.fullmatch(entry)
        if not match or _ours_alive(int(match.group(1))):
            continue
        found = True
        problem = None if dry_run else _remove_namespace(entry)
        if problem:
            result.problems.append(problem)
        else:
            result.removed.append(f"{verb} network namespace {entry} (left by an older mailpreflight)")
        etc = f"/etc/netns/{entry}"
        if os.path.isdir(etc) and not os.path.islink(etc):
            if not dry_run:
                shutil.rmtree(etc, ignore_errors=True)
            result.removed.append(f"{verb} {etc}")
    if shutil.which("nft"):
        tables = _run(["nft", "list", "tables"]).stdout
        for table, pid in LEGACY_TABLE.findall(tables):
            if _ours_alive(int(pid)):
                continue
            found = True
            done = None if dry_run else _run(["nft", "delete", "table", "ip", table])
            if done is not None and done.returncode != 0:
                result.problems.append(f"cannot delete the nft table ip {table}: {done.stderr.strip()}")
            else:
                result.removed.append(f"{verb} nft table ip {table} (NAT left by an older mailpreflight)")
    if found:
        try:
            with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as handle:
                forwarding = handle.read().strip()
        except OSError:
            forwarding = ""
        if forwarding == "1":
            result.problems.append("net.ipv4.ip_forward is 1: an older mailpreflight may have turned it on and "
                                   "could not put it back; if this host should not route, run "
                                   "`sysctl -w net.ipv4.ip_forward=0`")

