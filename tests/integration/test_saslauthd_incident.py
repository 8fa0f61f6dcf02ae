"""The incident end to end: the real saslauthd and the real libpam agree with what mailpreflight predicted.

An upgrade deletes the admin's /etc/pam.d/imap and /etc/pam.d/smtp on an openSUSE Leap 15 mail server
(tests/mailroots.py `leap15`: postfix -> Cyrus SASL -> saslauthd -a pam, PAM service "smtp"; Cyrus IMAP ->
saslauthd, PAM service "imap"). libpam then builds those logins from /etc/pam.d/other, and `other` does not
know the directory users. Here the root is a variant whose stacks use only modules this Debian host has and
that need no real users: imap and smtp stack pam_permit (standing in for "the directory users can log in"),
`other` and the common-* files it includes end in pam_deny (standing in for "a stack without the directory
users"), and nsswitch.conf lists no directory source, so the prediction is about pam_deny alone.

Static side: `check` finds no MP3xx finding before the deletion and MP301 critical "which refuses every login"
for both services after it; `drift` against a snapshot taken before lists exactly the two deletions, each caused
by MP301. The PAM service names come from mailpreflight's own analysis (the `auth` section of check's JSON).

Real side, once before and once after the deletion: a child in a private mount and PID namespace
(`unshare --mount --propagation private --pid --fork`) bind-mounts the root's /etc/pam.d over the host's (and
the root's own, else an empty directory, over every other pam.d directory the host has), checks that the mounts
are in place, starts /usr/sbin/saslauthd -a pam in the foreground on a private socket directory, and asks it with
/usr/sbin/testsaslauthd to log alice in under each PAM service name mailpreflight found. The host's own
/etc/pam.d is never touched outside the namespace.

saslauthd -d has no master process of its own ("master pid is: 0"), and on SIGTERM it signals pid 0, i.e. its
whole process group: started without `setsid` it kills the shell that started it (and whatever else shares
that group). So it runs under `setsid`; the PID namespace makes sure it dies with the child shell in any case,
and the test checks that no saslauthd on its socket directory is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailpreflight.auth.pam import CONFIG_DIRS
from mailroots import leap15, write

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mailpreflight"]
SASLAUTHD = "/usr/sbin/saslauthd"
TESTSASLAUTHD = "/usr/sbin/testsaslauthd"
HOST_MODULE_DIR = "/lib/x86_64-linux-gnu/security"
MODULES = ("pam_permit.so", "pam_deny.so")  # real on the host; placeholders in the root's /lib64/security
UNITS = ("postfix.service", "cyrus-imapd.service")
USER, PASSWORD = "alice", "secret"  # no such user anywhere: pam_permit and pam_deny do not look

# the admin's per-service stack: everyone gets in (standing in for pam_sss + pam_unix with directory users)
SERVICE_STACK = """#%PAM-1.0
# stands in for the directory stack (pam_sss, pam_unix): these users can log in
auth     required    pam_permit.so
account  required    pam_permit.so
"""

# the child shell's own exit codes (below)
CHILD_ERRORS = {96: "a fake pam.d directory is not mounted over the host's", 97: "mount --bind failed",
                98: "saslauthd exited before creating its socket", 99: "saslauthd's socket did not appear in 5 s"}

# Python, run in the child before saslauthd starts: never let libpam read the host's own configuration
VERIFY = r"""
import json, os, sys
for fake, real in json.loads(sys.argv[1]):
    if not os.path.samefile(fake, real):
        sys.exit(f"{fake} is not mounted on {real}")
"""

# $1 $2 ... -- service...: bind each fake dir over the real one, start saslauthd, log in once per service
CHILD = r"""
set -u
while [ "$1" != "--" ]; do mount --bind "$1" "$2" || exit 97; shift 2; done
shift
"$PYTHON" -I -c "$VERIFY" "$MOUNTS" || exit 96
setsid "$SASLAUTHD" -a pam -m "$SOCKDIR" -n 0 -d 2>"$SASLAUTHD_LOG" </dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT
tries=0
while [ ! -S "$SOCKDIR/mux" ]; do
    kill -0 "$pid" 2>/dev/null || exit 98
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || exit 99
    sleep 0.1
done
for service in "$@"; do
    out=$("$TESTSASLAUTHD" -u "$LOGIN_USER" -p "$LOGIN_PASSWORD" -s "$service" -f "$SOCKDIR/mux" 2>&1)
    rc=$?
    printf '%s\t%s\t%s\n' "$service" "$rc" "$out"
done
"""

NAMESPACE = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (bind mounts in a private mount namespace, saslauthd -a pam)"
    for tool in ("unshare", "mount", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) not found"
    for program in (SASLAUTHD, TESTSASLAUTHD):
        if not os.access(program, os.X_OK):
            return f"{program} missing (install sasl2-bin)"
    for module in MODULES:
        if not os.path.isfile(f"{HOST_MODULE_DIR}/{module}"):
            return f"{HOST_MODULE_DIR}/{module} missing (install libpam-modules)"
    if not os.path.isdir("/etc/pam.d"):
        return "/etc/pam.d is not a directory on the host (nothing to bind over)"
    probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create a mount + PID namespace: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def saslauthd_available() -> Iterator[None]:
    reason = _skip_reason()
    if reason:
        pytest.skip(f"real saslauthd + libpam unavailable: {reason}")
    yield


@pytest.fixture()
def sockets(tmp_path: Path) -> Iterator[Path]:
    """Where each phase's saslauthd gets its own directory; short enough for a socket path (sun_path)."""
    if len(str(tmp_path / "sasl" / "before" / "mux.accept")) < 100:
        yield tmp_path / "sasl"
        return
    short = Path(tempfile.mkdtemp(prefix="mp-sasl-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def incident_root(root: Path) -> Path:
    """leap15, with stacks the host can really run: imap/smtp let everyone in, `other` refuses everyone."""
    leap15(root)
    write(root, "/etc/pam.d/imap", SERVICE_STACK)
    write(root, "/etc/pam.d/smtp", SERVICE_STACK)
    # `other` includes common-auth -> common-auth-pc and common-account -> common-account-pc
    write(root, "/etc/pam.d/common-auth-pc", "#%PAM-1.0\n# stands in for a stack without the directory users\n"
          "auth\trequired\tpam_deny.so\n")
    write(root, "/etc/pam.d/common-account-pc", "#%PAM-1.0\naccount\trequired\tpam_deny.so\n")
    write(root, "/etc/nsswitch.conf", "passwd: compat\ngroup: compat\nshadow: compat\nhosts: files dns\n")
    for module in MODULES:  # leap15 puts placeholders for both where mailpreflight looks
        assert (root / "lib64/security" / module).is_file()
    return root


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def validated(text: str, schema: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    jsonschema.validate(document, json.loads((REPO / "docs/schemas" / schema).read_text()))
    return document


def check_json(root: Path) -> tuple[int, dict[str, Any]]:
    done = cli("check", "--root", str(root), "--format", "json", "--deadline", "5", "--timeout", "1", *UNITS)
    return done.returncode, validated(done.stdout, "check.schema.json")


def pam_services(document: dict[str, Any]) -> dict[str, str]:
    """PAM service name -> the unit whose logins use it, from check's `auth` section."""
    return {entry["pam_service"]: entry["unit"] for entry in document["auth"] if entry["pam_service"]}


def auth_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in document["findings"] if f["code"].startswith("MP3")]


def saslauthd_pids(sockdir: Path) -> list[int]:
    """Every process running saslauthd on this socket directory."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"saslauthd") and os.fsencode(str(sockdir)) in argv:
            pids.append(int(entry))
    return pids


def real_logins(root: Path, services: list[str], sockdir: Path, work: Path) -> tuple[dict[str, tuple[int, str]],
                                                                                       str]:
    """Log USER in through the real saslauthd -a pam once per PAM service, with root's pam.d as the host's.

    Returns service -> (testsaslauthd's exit status, its output) and saslauthd's debug log.
    """
    sockdir.mkdir(mode=0o700, parents=True)
    empty = work / "empty-pam.d"
    empty.mkdir(exist_ok=True)
    mounts = []
    for directory in CONFIG_DIRS:
        if os.path.isdir(directory):  # a dir the host lacks is not read by libpam either
            fake = root / directory.lstrip("/")
            mounts.append((str(fake if fake.is_dir() else empty), directory))
    assert mounts[0] == (str(root / "etc/pam.d"), "/etc/pam.d")
    log = work / f"saslauthd-{sockdir.name}.log"
    env = {**os.environ, "PYTHON": sys.executable, "VERIFY": VERIFY, "MOUNTS": json.dumps(mounts),
           "SASLAUTHD": SASLAUTHD, "TESTSASLAUTHD": TESTSASLAUTHD, "SOCKDIR": str(sockdir), "SASLAUTHD_LOG": str(log),
           "LOGIN_USER": USER, "LOGIN_PASSWORD": PASSWORD}
    argv = [*NAMESPACE, "--", "sh", "-c", CHILD, "sh", *(arg for pair in mounts for arg in pair), "--", *services]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)  # its own process group: killable as a whole, and apart
    try:
        stdout, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:  # the namespace's init dies with the group: so does saslauthd
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    saslauthd_log = log.read_text() if log.exists() else ""
    assert child.returncode == 0, (f"child failed ({child.returncode}: "
                                   f"{CHILD_ERRORS.get(child.returncode, '?')}): {stderr}\n{saslauthd_log}")
    assert saslauthd_pids(sockdir) == [], "saslauthd left behind"
    results = {}
    for line in stdout.splitlines():
        service, status, output = line.split("\t", 2)
        results[service] = (int(status), output)
    assert sorted(results) == sorted(services), stdout
    return results, saslauthd_log


def test_deleted_imap_and_smtp_stacks_lock_saslauthd_logins_out(tmp_path: Path, sockets: Path) -> None:
    root = incident_root(tmp_path / "root")
    baseline = tmp_path / "baseline.json"

    # before the upgrade: mailpreflight sees the two login paths and nothing wrong with them
    status, before = check_json(root)
    assert status == 0 and auth_findings(before) == [], before["findings"]
    units = pam_services(before)
    assert units == {"imap": "cyrus-imapd.service", "smtp": "postfix.service"}
    services = sorted(units)  # the names the real test logs in with: mailpreflight's, not ours
    for entry in before["auth"]:
        assert entry["method"] == "Cyrus SASL -> saslauthd -a pam"
        assert entry["pam"]["file"] == f"/etc/pam.d/{entry['pam_service']}"
        assert [line["module"] for line in entry["pam"]["stacks"]["auth"]] == ["pam_permit.so"]
    snapshot = cli("snapshot", "--root", str(root), "--output", str(baseline))
    assert snapshot.returncode == 0, snapshot.stderr

    # ... and the real saslauthd lets alice in under both services
    logins, log = real_logins(root, services, sockets / "before", tmp_path)
    print("before the deletion:", logins, sep="\n")
    for service in services:
        assert logins[service] == (0, '0: OK "Success."'), (service, logins, log)
        assert f"auth success: [user={USER}] [service={service}]" in log, log

    # the upgrade (in the fake root only)
    (root / "etc/pam.d/imap").unlink()
    (root / "etc/pam.d/smtp").unlink()

    # mailpreflight's prediction: both fall back to `other`, which refuses every login
    status, after = check_json(root)
    assert status == 2 and after["status"] == "critical"
    assert pam_services(after) == units
    findings = auth_findings(after)
    assert sorted((f["code"], f["severity"], f["unit"]) for f in findings) == sorted(
        ("MP301", "critical", unit) for unit in units.values())
    for finding in findings:
        service = next(s for s, unit in units.items() if unit == finding["unit"])
        assert f"will fall back to `other`: no {service} in /etc/pam.d" in finding["message"]
        assert finding["message"].endswith("/etc/pam.d/other stacks auth: pam_deny (common-auth), which refuses "
                                           "every login")
    for entry in after["auth"]:
        assert entry["pam"]["fallback_other"] is True and entry["pam"]["other_file"] == "/etc/pam.d/other"
        assert [line["module"] for line in entry["pam"]["stacks"]["auth"]] == ["pam_deny.so"]

    drift = cli("drift", "--baseline", str(baseline), "--root", str(root), "--format", "json")
    assert drift.returncode == 2, drift.stderr
    document = validated(drift.stdout, "drift.schema.json")
    changes = document["changes"]
    assert [(c["change"], c["path"]) for c in changes] == [("deleted", f"/etc/pam.d/{s}") for s in services]
    for change in changes:
        assert [(f["code"], f["severity"]) for f in change["causes"]] == [("MP301", "critical")]
        assert "refuses every login" in change["causes"][0]["message"]

    # reality: the same saslauthd, the same logins, now refused
    logins, log = real_logins(root, services, sockets / "after", tmp_path)
    print("after the deletion:", logins, sep="\n")
    for service in services:
        status, output = logins[service]
        assert status != 0 and "NO" in output and "OK" not in output, (service, logins, log)
        assert f"auth failure: [user={USER}] [service={service}]" in log, log
