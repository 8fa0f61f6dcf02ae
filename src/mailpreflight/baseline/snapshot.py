"""`snapshot`: a baseline of what the mail services depend on, to compare after an upgrade (`drift`).

Recorded per path (as the guest sees it): type, mode, owner and group (ids and names from the root's own
passwd/group), size, SHA-256, a symlink's target, and the text of small text files. The text of a file that
is not world-readable (sssd.conf, sasl_passwd, ...) is not recorded: a baseline ends up in tickets and
diffs, secrets must not. The baseline itself is written 0600.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpreflight import __version__
from mailpreflight.access.rootfs import DEV_NULL, RootFS
from mailpreflight.errors import MailpreflightError

if TYPE_CHECKING:
    from mailpreflight.auth.check import TrackedFinding
    from mailpreflight.units.loader import UnitLoader

SCHEMA_VERSION = 1
KIND = "mailpreflight-snapshot"
TEXT_LIMIT = 256 * 1024  # bigger files are hashed, not recorded
HASH_LIMIT = 64 * 1024 * 1024
HASH_TOTAL_LIMIT = 512 * 1024 * 1024  # hashed in one snapshot (or drift), all files together
MAX_ENTRIES = 50_000
SECRET_NAMES = re.compile(r"(?i)(passw|secret|shadow|\.key$|_key$|\.p12$|\.pfx$|credential|token)")
SECRET_WORDS = ("pass", "pw", "secret", "authtok", "credential", "token")  # what SECRET_LINE's keys contain
SECRET_LINE = re.compile(r"(?im)^([ \t#;]*[\w.-]*?(?:pass(?:word|wd|phrase)?|pw|secret|authtok|credentials?|token)\d*"
                         r"[ \t]*(?:[=:][ \t]*|[ \t]+))\S.*$")

# What logins, delivery, filtering and updates read. Directories are recorded recursively.
MAIL_PATHS = (
    # PAM and name service
    "/etc/pam.d", "/usr/lib/pam.d", "/usr/etc/pam.d", "/etc/pam.conf", "/etc/security",
    "/etc/nsswitch.conf", "/usr/etc/nsswitch.conf",
    # SASL
    "/etc/sysconfig/saslauthd", "/etc/default/saslauthd", "/etc/saslauthd.conf", "/etc/sasl2",
    "/usr/lib/sasl2", "/usr/lib64/sasl2", "/usr/lib/x86_64-linux-gnu/sasl2",
    # MTA, IMAP/POP
    "/etc/postfix", "/etc/aliases", "/etc/dovecot", "/etc/imapd.conf", "/etc/cyrus.conf",
    # filtering and updates
    "/etc/mail/spamassassin", "/etc/spamassassin", "/etc/sysconfig/spamd", "/etc/default/spamassassin",
    "/etc/default/spamd", "/etc/amavisd.conf", "/etc/amavis", "/etc/clamav", "/etc/clamd.conf", "/etc/clamd.d",
    "/etc/freshclam.conf", "/etc/fetchmailrc", "/etc/sysconfig/fetchmail", "/etc/default/fetchmail",
    # directory clients
    "/etc/sssd", "/etc/ldap.conf", "/etc/openldap/ldap.conf", "/etc/ldap/ldap.conf", "/etc/nslcd.conf",
    "/etc/pam_ldap.conf", "/etc/krb5.conf",
    # the admin's units, drop-ins, masks and enablement links; the manager's defaults
    "/etc/systemd/system", "/etc/systemd/system.conf", "/etc/systemd/system.conf.d",
    # PAM modules (an upgrade that drops pam_ldap shows here)
    "/lib64/security", "/usr/lib64/security", "/lib/security", "/usr/lib/security", "/lib/x86_64-linux-gnu/security",
    "/usr/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security", "/usr/lib/aarch64-linux-gnu/security",
    # who the host is
    "/etc/machine-id", "/etc/hostname", "/etc/HOSTNAME", "/etc/os-release", "/usr/lib/os-release",
)

# Mail units whose vendor files (fragment and drop-ins outside /etc) are recorded as well.
MAIL_UNITS = (
    "postfix.service", "dovecot.service", "cyrus-imapd.service", "cyrus.service", "saslauthd.service",
    "spamd.service", "spamassassin.service", "amavis.service", "amavisd.service", "clamd.service",
    "clamav-daemon.service", "clamd@.service", "freshclam.service", "clamav-freshclam.service",
    "fetchmail.service", "sssd.service", "nslcd.service", "opendkim.service", "exim4.service",
    "sendmail.service",
)


@dataclass(frozen=True)
class Host:
    machine_id: str | None
    hostname: str | None
    os_name: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"machine_id": self.machine_id, "hostname": self.hostname, "os": self.os_name}


def host_of(fs: RootFS) -> Host:
    machine_id = (fs.read_text("/etc/machine-id") or "").strip() or None
    hostname = ((fs.read_text("/etc/hostname") or fs.read_text("/etc/HOSTNAME") or "").strip().split("\n")[0]
                or None)
    os_name = None
    for line in (fs.read_text("/etc/os-release") or fs.read_text("/usr/lib/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.partition("=")[2].strip().strip("\"'")
    return Host(machine_id, hostname, os_name)


def _names(fs: RootFS, path: str) -> dict[int, str]:
    """uid/gid -> name from the root's own passwd/group (a guest's ids are not the host's)."""
    names: dict[int, str] = {}
    for line in (fs.read_text(path) or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            names.setdefault(int(fields[2]), fields[0])
    return names


def _content(fs: RootFS, path: str, info: os.stat_result, salt: bytes,
             budget: list[int]) -> tuple[str | None, str | None, str | None]:
    """(hash, text, why the text is not recorded), reading the file once through the root's gate (resolved
    inside the root, a final link not followed, anything but a regular file refused unopened). `budget`: bytes
    still to be hashed in this snapshot (a guest full of big sparse files must not take hours).

    Hashes are salted with the baseline's own salt: a baseline copied off the host must not let anyone test
    guesses against, say, sasl_passwd (and a mode change alone must not look like a content change)."""
    if info.st_size > HASH_LIMIT:
        return None, None, f"larger than {HASH_LIMIT // 1024 // 1024} MiB: neither hashed nor recorded"
    if info.st_size > budget[0]:
        return None, None, (f"not hashed: this snapshot already hashed {HASH_TOTAL_LIMIT // 1024 // 1024} MiB "
                            "(a guest with this much mail configuration is not plausible; check what the files are)")
    try:
        handle = fs.open_file(path, follow_last=False)
    except OSError as exc:
        return None, None, f"unreadable: {exc.strerror}"
    private = not info.st_mode & stat.S_IROTH
    digest = hashlib.sha256(salt)
    with handle:
        head = handle.read(TEXT_LIMIT + 1)
        digest.update(head)
        hashed = len(head)
        if len(head) > TEXT_LIMIT:
            while hashed <= min(budget[0], HASH_LIMIT) and (chunk := handle.read(1024 * 1024)):
                digest.update(chunk)
                hashed += len(chunk)
        budget[0] -= hashed
        if hashed > HASH_LIMIT or budget[0] < 0:  # it grew since lstat()
            return None, None, f"larger than {HASH_LIMIT // 1024 // 1024} MiB: neither hashed nor recorded"
    hexdigest = digest.hexdigest()
    if len(head) > TEXT_LIMIT:
        return hexdigest, None, f"larger than {TEXT_LIMIT // 1024} KiB"
    if private:
        return hexdigest, None, f"not world-readable (mode {stat.S_IMODE(info.st_mode):04o})"
    if SECRET_NAMES.search(posixpath.basename(path)):
        return hexdigest, None, "its name says it holds secrets"
    if b"\0" in head:
        return hexdigest, None, "binary"
    try:
        return hexdigest, redact(head.decode("utf-8")), None
    except UnicodeDecodeError:
        return hexdigest, None, "binary"


def redact(text: str) -> str:
    """World-readable files hold secrets too (bindpw in ldap.conf, password = in postfix's mysql maps):
    their values are replaced; a change still shows in the hash."""
    lowered = text.lower()  # most files: a few substring scans instead of the line pattern at every line
    if not any(word in lowered for word in SECRET_WORDS):
        return text
    return SECRET_LINE.sub(lambda m: f"{m.group(1)}<redacted>", text)


class Collector:
    def __init__(self, fs: RootFS, salt: bytes) -> None:
        self.fs = fs
        self.salt = salt
        self.users = _names(fs, "/etc/passwd")
        self.groups = _names(fs, "/etc/group")
        self.files: dict[str, dict[str, Any]] = {}
        self.truncated = False
        self.hash_budget = [HASH_TOTAL_LIMIT]

    def add(self, guest: str, recursive: bool = True) -> None:
        """Record `guest` (and below it); symlinks are recorded, never followed out of the root."""
        # Parent links are resolved inside the root (a guest's /lib -> /usr/lib never reads the host's); the
        # path is recorded as resolved, its last component as it is (a link stays a link). Entries listed
        # from a resolved directory need no resolving.
        if guest in self.files:  # drift re-adds every baseline path: most are recorded by then
            return
        stack = [self.fs.chase(guest, follow_last=False) or ""]
        while stack:
            path = stack.pop()
            if not path or path == DEV_NULL or path in self.files:
                continue
            if len(self.files) >= MAX_ENTRIES:
                self.truncated = True
                return
            info = self.fs.lstat(path)
            if info is None:
                continue
            self.files[path] = self._entry(path, info)
            if stat.S_ISLNK(info.st_mode):  # what the link leads to decides too (/etc/pam.d/imap -> /srv/...)
                target = self.fs.chase(path)
                if target and target != DEV_NULL and (not self.fs.is_dir(target) or target.count("/") >= 3):
                    stack.append(target)  # a directory only when specific: never all of /usr
            if recursive and stat.S_ISDIR(info.st_mode):
                stack.extend(f"{path.rstrip('/')}/{name}" for name in reversed(self.fs.listdir(path)))

    def _entry(self, path: str, info: os.stat_result) -> dict[str, Any]:
        mode = info.st_mode
        kind = ("file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode)
                else "other")
        entry: dict[str, Any] = {
            "type": kind, "mode": f"{stat.S_IMODE(mode):04o}", "uid": info.st_uid, "gid": info.st_gid,
            "owner": self.users.get(info.st_uid), "group": self.groups.get(info.st_gid),
        }
        if kind == "symlink":
            entry["target"] = self.fs.readlink(path)
        elif kind == "file":
            entry["size"] = info.st_size
            entry["sha256"], entry["text"], entry["text_omitted"] = _content(self.fs, path, info, self.salt,
                                                                             self.hash_budget)
        return entry


def unit_files(loader: UnitLoader) -> list[str]:
    """The mail units' own files wherever they live (vendor fragments under /usr, runtime drop-ins)."""
    from mailpreflight.units.loader import LoadState

    paths: list[str] = []
    for name in MAIL_UNITS:
        try:
            unit = loader.load(name)
        except MailpreflightError:  # a unit we cannot read is recorded through its directories alone
            continue
        if unit.load_state is LoadState.NOT_FOUND:
            continue
        paths.extend(p for p in (unit.fragment_path, *unit.dropin_paths) if p)
    return paths


def collect(fs: RootFS, salt: bytes, extra_paths: Iterable[str]) -> tuple[dict[str, dict[str, Any]], bool]:
    """path -> entry for everything mail depends on under `fs`, plus `extra_paths` (the mail units' files,
    PAM modules, ...)."""
    collector = Collector(fs, salt)
    for path in (*MAIL_PATHS, *extra_paths):
        collector.add(path)
    return dict(sorted(collector.files.items())), collector.truncated


def tracked_findings(loader: UnitLoader) -> tuple[list[TrackedFinding], tuple[str, ...]]:
    """The findings drift compares: mail authentication (MP3xx) and the units' start paths (MP1xx, static);
    and the PAM module files the mail stacks load."""
    from mailpreflight.auth.check import TrackedFinding, analyze_auth
    from mailpreflight.deps.analyze import analyze_tree

    auth = analyze_auth(loader.fs, loader)
    tracked = list(auth.issues)
    for result in analyze_tree(loader):
        unit = result.unit
        unit_files = tuple(p for p in (unit.fragment_path, *unit.dropin_paths) if p)
        for finding in result.findings:
            cited = {e.split(":", 1)[0] for e in finding.evidence if e.startswith("/")}
            sources = tuple(sorted(cited | set(unit_files)))
            tracked.append(TrackedFinding(finding, f"{unit.id}:{','.join(sorted(cited))}", sources))
    return tracked, auth.module_paths()


def take(fs: RootFS, root_label: str) -> dict[str, Any]:
    """The whole baseline document."""
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(fs)
    tracked, modules = tracked_findings(loader)
    salt = secrets.token_hex(16)
    files, truncated = collect(fs, salt.encode(), (*unit_files(loader), *modules))
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mailpreflight_version": __version__,
        "root": root_label,
        "host": host_of(fs).to_json(),
        "truncated": truncated,
        "salt": salt,  # every sha256 is of salt + content
        "files": files,
        "findings": [issue.to_json() for issue in tracked],
    }
