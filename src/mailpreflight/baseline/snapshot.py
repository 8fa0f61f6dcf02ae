"""`snapshot`: a baseline of what the mail services depend on, to compare after an upgrade (`drift`).

Recorded per path (as the guest sees it): type, mode, owner and group (ids and names from the root's own
passwd/group), size, a digest of the content (HMAC-SHA256 with the host's key, see digestkey.py), a symlink's
target, the text of small text files, and a MAC of the entry. The text of a file that is not world-readable
(sssd.conf, sasl_passwd, ...) is not recorded: a baseline ends up in tickets and diffs, secrets must not; in
the texts that are recorded, secret values are redacted (`redact`). The baseline itself is written 0600.
"""

from __future__ import annotations

import bisect
import datetime
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mailpreflight import __version__
from mailpreflight.access.rootfs import DEV_NULL, RootFS
from mailpreflight.baseline.digestkey import REDACTED, Digest
from mailpreflight.deps.base import SYSTEMD_PATH
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import EntryType, FileRecord, HostRecord
from mailpreflight.units.distro import os_release
from mailpreflight.units.machineid import read_machine_id

if TYPE_CHECKING:
    from mailpreflight.auth.check import TrackedFinding
    from mailpreflight.deps.analyze import UnitDeps
    from mailpreflight.model import FoundCommand
    from mailpreflight.units.loader import UnitLoader

SCHEMA_VERSION = 1
KIND = "mailpreflight-snapshot"
TEXT_LIMIT = 256 * 1024  # bigger files are hashed, not recorded
HASH_LIMIT = 64 * 1024 * 1024
HASH_TOTAL_LIMIT = 512 * 1024 * 1024  # hashed in one snapshot (or drift), all files together
TEXT_TOTAL_LIMIT = 32 * 1024 * 1024  # text recorded in one baseline, all files together (drift reads <= 64 MiB)
MAX_ENTRIES = 50_000
SECRET_NAMES = re.compile(r"(?i)(passw|secret|shadow|\.key$|_key$|\.p12$|\.pfx$|credential|token)")
# What the keys of secret values contain (a scan for these words spares most files the patterns below).
SECRET_WORDS = ("pass", "pw", "secret", "authtok", "credential", "token", "apikey", "api_key", "api-key",
                "access_key", "access-key")
_SECRET_KEY = r"[\w.-]*?(?:pass(?:word|wd|phrase)?|pw|secret|authtok|credentials?|token|api[_-]?key|access[_-]?key)\d*"
# `bindpw x`, `password = x`, `ldap_default_authtok: x`, `export DB_PASSWORD="x y"`, `#rootpw x`: the rest of
# the line.
SECRET_LINE = re.compile(rf"(?im)^([ \t#;]*(?:export[ \t]+)?{_SECRET_KEY}[ \t]*(?:[=:][ \t]*|[ \t]+))\S.*$")
# key=value anywhere on a line (Dovecot `args = host=db user=mail password=x`, `connect = ... password=x`,
# URL queries): the value, quoted or up to the next blank.
SECRET_PAIR = re.compile(rf"(?i)(?<![\w.-])({_SECRET_KEY}=)(\"[^\"\n]*\"?|'[^'\n]*'?|[^\s\"']\S*)")
# scheme://user:password@host anywhere (freshclam DatabaseMirror/PrivateMirror, fetchmail, proxies).
URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^\s/@:]*:)([^\s/]+)(@)")
# fetchmailrc: `... user "joe" password "x" is joe here` (keyword and value separated by blanks).
FETCHMAIL_PASSWORD = re.compile(r"(?i)(?<![\w-])(pass(?:word)?[ \t]+)(\"(?:[^\"\\\n]|\\.)*\"?|'[^'\n]*'?|\S+)")
# postfix map literals: static:user:password, static:{...}, inline:{ key=user:password, ... }
MAP_LITERAL = re.compile(r"(?i)(?<![\w-])(?:static|inline):")
SECRET_CONTEXT = re.compile(r"(?i)pass|secret|token|credential|authtok")
LOGICAL_LINE = re.compile(r"(?m)^(?=[^ \t\n])")  # postfix: a line not starting with a blank begins one

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
    "/etc/debian_version", "/etc/SuSE-release",  # which distribution it is, when os-release does not say
)

# Mail units whose vendor files (fragment and drop-ins outside /etc) are recorded as well.
MAIL_UNITS = (
    "postfix.service", "dovecot.service", "cyrus-imapd.service", "cyrus.service", "saslauthd.service",
    "spamd.service", "spamassassin.service", "amavis.service", "amavisd.service", "clamd.service",
    "clamav-daemon.service", "clamd@.service", "freshclam.service", "clamav-freshclam.service",
    "fetchmail.service", "sssd.service", "nslcd.service", "opendkim.service", "exim4.service",
    "sendmail.service",
)


def host_of(fs: RootFS) -> tuple[HostRecord, str | None]:
    """Which host the root is, and why its /etc/machine-id is not used (None: it is; not in the baseline)."""
    machine_id = read_machine_id(fs)
    hostname = ((fs.read_text("/etc/hostname") or fs.read_text("/etc/HOSTNAME") or "").strip().split("\n")[0]
                or None)
    return HostRecord(machine_id.value, hostname, os_release(fs).get("PRETTY_NAME") or None), machine_id.problem


def _names(fs: RootFS, path: str) -> dict[int, str]:
    """uid/gid -> name from the root's own passwd/group (a guest's ids are not the host's)."""
    names: dict[int, str] = {}
    for line in (fs.read_text(path) or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            names.setdefault(int(fields[2]), fields[0])
    return names


def _content(fs: RootFS, path: str, info: os.stat_result, key: Digest,
             budget: list[int]) -> tuple[str | None, str | None, str | None]:
    """(digest, text, why the text is not recorded), reading the file once through the root's gate (resolved
    inside the root, a final link not followed, anything but a regular file refused unopened). `budget`: bytes
    still to be hashed in this snapshot (a guest full of big sparse files must not take hours).

    Digests are keyed with the host's key, which is not in the baseline: a baseline copied off the host must not
    let anyone test guesses against, say, sasl_passwd or a redacted line (and every file is digested the same
    way, so a mode change alone does not look like a content change)."""
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
    digest = key.new()
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
        return hexdigest, redact(head.decode("utf-8"), posixpath.basename(path)), None
    except UnicodeDecodeError:
        return hexdigest, None, "binary"


def redact(text: str, name: str = "") -> str:
    """World-readable files hold secrets too (bindpw in ldap.conf, password = in postfix's mysql maps, a
    static: map in main.cf, a mirror URL with a password): their values become <redacted>; a change still shows
    in the digest. `name`: the file's name (fetchmailrc has a syntax of its own)."""
    lowered = text.lower()  # most files: a few substring scans instead of the patterns at every line
    if "static:" in lowered or "inline:" in lowered:
        text = _redact_map_literals(text)
    if "://" in text and "@" in text:
        text = URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    if any(word in lowered for word in SECRET_WORDS):
        text = SECRET_LINE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        text = SECRET_PAIR.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        if "fetchmailrc" in name.lower():
            text = FETCHMAIL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def _redact_map_literals(text: str) -> str:
    """postfix `static:` and `inline:{...}` literals of a parameter about secrets (smtp_sasl_password_maps =
    static:user:password, `-o smtp_sasl_password_maps=inline:{...}` in master.cf): their whole value. The
    parameter is whatever the logical line (continuation lines included) says before the literal."""
    starts = [m.start() for m in LOGICAL_LINE.finditer(text)]
    out: list[str] = []
    done = 0
    for match in MAP_LITERAL.finditer(text):
        if match.start() < done:
            continue  # inside a literal already redacted
        line_start = starts[bisect.bisect_right(starts, match.start()) - 1] if starts else 0
        if not SECRET_CONTEXT.search(text, line_start, match.start()):
            continue
        end = _literal_end(text, match.end())
        out.append(text[done:match.end()])
        out.append("{" + REDACTED + "}" if text.startswith("{", match.end()) else REDACTED)
        done = end
    out.append(text[done:])
    return "".join(out)


def _literal_end(text: str, start: int) -> int:
    """Where a map literal's value ends: after its matching brace, else at the next blank or comma."""
    if text.startswith("{", start):
        depth = 0
        for index in range(start, len(text)):
            char = text[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return index + 1
        return len(text)  # never closed: everything after it
    index = start
    while index < len(text) and text[index] not in " \t\r\n,}":
        index += 1
    return index


class Collector:
    def __init__(self, fs: RootFS, digest: Digest) -> None:
        self.fs = fs
        self.digest = digest
        self.users = _names(fs, "/etc/passwd")
        self.groups = _names(fs, "/etc/group")
        self.files: dict[str, FileRecord] = {}
        self.truncated = False
        self.hash_budget = [HASH_TOTAL_LIMIT]
        self.text_left = TEXT_TOTAL_LIMIT

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

    def _entry(self, path: str, info: os.stat_result) -> FileRecord:
        mode = info.st_mode
        kind = (EntryType.FILE if stat.S_ISREG(mode) else EntryType.DIR if stat.S_ISDIR(mode) else
                EntryType.SYMLINK if stat.S_ISLNK(mode) else EntryType.OTHER)
        entry = FileRecord(kind, f"{stat.S_IMODE(mode):04o}", info.st_uid, info.st_gid, self.users.get(info.st_uid),
                           self.groups.get(info.st_gid))
        if kind is EntryType.SYMLINK:
            entry = replace(entry, target=self.fs.readlink(path))
        elif kind is EntryType.FILE:
            sha256, text, text_omitted = _content(self.fs, path, info, self.digest, self.hash_budget)
            if text is not None and len(text) > self.text_left:  # a baseline stays small
                text = None
                text_omitted = f"this snapshot already records {TEXT_TOTAL_LIMIT // 1024 // 1024} MiB of text"
            elif text is not None:
                self.text_left -= len(text)
            entry = replace(entry, size=info.st_size, sha256=sha256, text=text, text_omitted=text_omitted)
        return replace(entry, mac=self.digest.mac(path, entry.fields()))


def stored(entry: FileRecord) -> dict[str, object]:
    """An entry as the baseline holds it: its fields, then its MAC (none without a key)."""
    fields = entry.fields()
    if entry.mac is not None:
        fields["mac"] = entry.mac
    return fields


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


def collect(fs: RootFS, digest: Digest, extra_paths: Iterable[str],
            flat_paths: Iterable[str] = ()) -> tuple[dict[str, FileRecord], bool]:
    """path -> entry for everything mail depends on under `fs`, plus `extra_paths` (the mail units' files,
    PAM modules, ...) and `flat_paths` (recorded themselves, a directory without what is in it)."""
    collector = Collector(fs, digest)
    for path in (*MAIL_PATHS, *extra_paths):
        collector.add(path)
    for path in flat_paths:
        collector.add(path, recursive=False)
    return dict(sorted(collector.files.items())), collector.truncated


@dataclass(frozen=True)
class Analysis:
    """What a baseline records besides MAIL_PATHS, and the findings drift compares."""

    tracked: list[TrackedFinding]  # mail authentication (MP3xx) and the units' start paths (MP1xx, static)
    modules: tuple[str, ...]  # the PAM module files the mail stacks load
    units: tuple[str, ...]  # unit files and drop-ins: MAIL_UNITS', the analysed units' and their timers'
    depends: tuple[str, ...]  # scripts the start paths run, environment files, every path a finding cites


def cited_paths(evidence: Iterable[str]) -> list[str]:
    """The guest paths evidence names: `/usr/sbin/x:87: ...`, `/var/lib/spamassassin holds: nothing`."""
    return [re.split(r"[:\s]", e, maxsplit=1)[0] for e in evidence if e.startswith("/")]


def analyse(loader: UnitLoader) -> Analysis:
    """The findings drift compares, and every file a finding or a start path depends on."""
    from mailpreflight.auth.check import TrackedFinding, analyze_auth
    from mailpreflight.deps.analyze import analyze_tree

    auth = analyze_auth(loader.fs, loader)
    tracked = list(auth.issues)
    units: dict[str, None] = dict.fromkeys(unit_files(loader))
    depends: dict[str, None] = {}
    for result in analyze_tree(loader):
        unit = result.unit
        own = tuple(p for p in (unit.fragment_path, *unit.dropin_paths) if p)
        units.update(dict.fromkeys((*own, *_activators(loader, unit.id))))
        depends.update(dict.fromkeys(ref.path for ref in unit.environment_files))
        depends.update(dict.fromkeys(_scripts(loader.fs, [entry.command for entry in result.commands])))
        depends.update(dict.fromkeys(_sa_update_keys(loader.fs, result)))
        for finding in result.findings:
            cited = {e.split(":", 1)[0] for e in finding.evidence if e.startswith("/")}  # the subject, as before
            sources = tuple(sorted(set(cited_paths(finding.evidence)) | set(own)))
            tracked.append(TrackedFinding(finding, f"{unit.id}:{','.join(sorted(cited))}", sources))
    for issue in tracked:
        depends.update(dict.fromkeys(issue.paths))
    return Analysis(tracked, auth.module_paths(), tuple(units), tuple(p for p in depends if p not in units))


def _activators(loader: UnitLoader, unit_id: str) -> list[str]:
    """The files of the timer, socket and path unit of the same name (what starts a oneshot such as
    spamassassin-maintenance.service), with their drop-ins."""
    stem = unit_id.rsplit(".", 1)[0]
    paths: list[str] = []
    for kind in ("timer", "socket", "path"):
        try:
            unit = loader.load(f"{stem}.{kind}")
        except MailpreflightError:
            continue
        paths.extend(p for p in (unit.fragment_path, *unit.dropin_paths) if p)
    return paths


def _sa_update_keys(fs: RootFS, result: UnitDeps) -> list[str]:
    """What sa-update's GPG check trusts (deps/satrust.py): its keyring's key files and --gpgkeyfile (not
    trustdb.gpg, which gpg rewrites on its own)."""
    paths: list[str] = []
    for index, local in result.startup.sa_update if result.startup else ():
        if local.trust is None:
            continue
        paths += [posixpath.join(local.gpghomedir, name) for name, _ in local.trust.keyring if name != "trustdb.gpg"]
        plan = result.commands[index].plan
        if plan is not None and plan.args.gpgkeyfile and fs.chase(plan.args.gpgkeyfile) is not None:
            paths.append(plan.args.gpgkeyfile)
    return paths


def _scripts(fs: RootFS, commands: Iterable[FoundCommand]) -> list[str]:
    """Every script a start path runs: the files its commands were read from (a unit's Exec line, a script's
    line), the scripts they went through (`via`), and each program that is itself a script (`#!`)."""
    found: dict[str, None] = {}
    for command in commands:
        found.update(dict.fromkeys(p for p in (command.source.file, *command.via) if p.startswith("/")))
        program = _program(fs, command)
        if program and _is_script(fs, program):
            found[program] = None
    return [path for path in found if fs.chase(path) is not None]


def _is_script(fs: RootFS, path: str) -> bool:
    try:
        return fs.read_head(path, 2) == b"#!"  # a large binary is no script: not read whole, nor refused
    except OSError:  # unreadable
        return False


def _program(fs: RootFS, command: FoundCommand) -> str | None:
    if not command.argv:
        return None
    name = command.argv[0]
    if name.startswith("/"):
        return name if fs.chase(name) is not None and not fs.is_dir(name) else None
    if "/" in name:
        return None
    for directory in command.env.get("PATH", ":".join(SYSTEMD_PATH)).split(":"):
        candidate = f"{directory.rstrip('/')}/{name}"
        if directory.startswith("/") and fs.chase(candidate) is not None and not fs.is_dir(candidate):
            return candidate
    return None


def take(fs: RootFS, root_label: str, digest: Digest, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole baseline document; `digest`: the host's key (digestkey.load_or_create); `say` is told of a bad
    /etc/machine-id (recorded as unknown)."""
    from mailpreflight.units.loader import UnitLoader

    loader = UnitLoader(fs)
    found = analyse(loader)
    tracked = found.tracked
    files, truncated = collect(fs, digest, (*found.units, *found.modules), found.depends)
    host, problem = host_of(fs)
    if problem and say is not None:
        say(f"warning: {problem}")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mailpreflight_version": __version__,
        "root": root_label,
        "host": host.fields(),
        "truncated": truncated,
        "digest": digest.to_json(),  # every sha256 is HMAC-SHA256(host key, content); the key is not here
        "files": {path: stored(entry) for path, entry in files.items()},
        "findings": [issue.to_json() for issue in tracked],
    }
