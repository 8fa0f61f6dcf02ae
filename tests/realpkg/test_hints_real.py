"""Every hint works (issue 18): on the real Debian 12 root, as installed and with the mistakes admins make on it
(MISTAKES: freshclam.conf with an Example line / a PrivateMirror under clamav.net / no mirror, an empty spamd rules
directory and an old version's, gpg removed, /etc/pam.d/imap gone or left as .dpkg-old with Cyrus logins through
saslauthd, programs missing from a drop-in, a host's mailpreflight drop-in copied in; in one root, admin-units,
sa-update as admins add it — a spamd drop-in with an untolerated `sa-update --allowplugins` and a shorter
TimeoutStartSec under Debian's ProtectSystem=full, a oneshot with Wants= but no After=network-online.target and a
60 s timeout, a script for three channels that keeps the status for later in a oneshot with no network target,
all as root where debian-spamd exists — amavis with spam checks on and a non-literal $sa_local_tests_only, and
PAM's `other` and imap deleted; in another, pam-lines, an uninstalled module, a misspelt control, a vendor file in
/usr/lib/pam.d that /etc shadows and a pop file of session lines only), every verb that prints
hints runs (show, `dropin show` and deps/check over every service, firewall, snapshot, drift; JSON where there
is JSON, and drift's text), and every distinct hint it prints is tried:

- a `mailpreflight ...` hint is run on a copy of the root (`--root` the copy; `--baseline FILE` the variant's
  snapshot): no exit 3, no refusal, and `dropin`/`restore` make the finding they were for go away;
- a shell command is checked: it parses (shlex), its program is in the root's /usr/bin, /usr/sbin, /bin, /sbin
  (or is in STANDARD, with its package), every option it passes is spelled in full in the program's --help here
  or its man page in the root, every path it names exists in the root (or is what it makes), every unit it names
  loads, the user runuser switches to exists (or is the unit's own); sed, diff, rmdir, rm, mv and `echo >>` are
  run on a copy (the paths taken inside it), and one that fixes must make the finding go away;
- a setting to add (`add Wants=...`, `systemctl edit U (add ExecStart= ...)`) is written as a drop-in on a copy:
  systemd's own `systemd-analyze verify` accepts it, and the finding is gone.
A hint that names none of these is prose: only those in PROSE (with why) may be; a placeholder (FILE, ROOT,
UNIT...) other than `--root ROOT` and `--baseline FILE` fails. The test also counts what it tried, and fails unless
a hint of every finding in CODES was tried, so that it cannot pass on nothing. About 2 minutes (each tried fix
re-runs deps or check on its copy; the two combined roots add about 20 s).
"""
from __future__ import annotations

import glob
import gzip
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import debroot
import pytest

from mailpreflight import cli
from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.loader import LoadState, UnitLoader

BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")
# Programs on every Debian 12 system that the root (only the mail packages and Essential) lacks: the package of each
# (Priority: required/important in bookworm).
STANDARD = {"apt-get": "apt", "dpkg-reconfigure": "debconf"}
# Hints that name no command: what they say, and why that is all that can be said.
PROSE = {
    # which package ships a path that no installed package has is apt-file's question (not installed by default);
    # a wrong path in a unit is the admin's to correct
    "MP113": "install what provides ",
    "MP114": "install what provides ",
    # drift (MP301 fallen back to `other`, MP302 no `other` either): a PAM file the baseline does not hold (Debian
    # ships no /etc/pam.d/pop): its text is the admin's to write
    "MP301": "recreate /etc/pam.d/",
    "MP302": "recreate /etc/pam.d/",
}
# The findings whose hints must be tried: the mistakes are made to produce each (it cannot pass on nothing).
CODES = frozenset({
    "MP101", "MP102", "MP103", "MP104", "MP105", "MP106", "MP107", "MP108", "MP110", "MP111", "MP112", "MP113",
    "MP114", "MP115", "MP116", "MP121", "MP122", "MP201", "MP202", "MP204", "MP301", "MP302", "MP303", "MP304",
    "MP305", "MP306", "MP308", "MP309",
})
SETTING_KEYS = r"(?:Wants|After|Requires|ReadWritePaths|User|ExecStart|ExecStartPre)="
SETTING = re.compile(rf"(?:^|[\s`(])({SETTING_KEYS}[^\s`,;)]*)")
QUOTED_SETTING = re.compile(rf"`({SETTING_KEYS}[^`]*)`")  # a whole Exec line, spaces and all
# Words that begin prose as often as they name a program (coreutils' install): a command only in `backquotes`
ENGLISH = {"install", "add", "run", "read", "remove", "restore", "fix", "see", "tell", "make", "give", "use", "bound",
           "treat", "put", "compare", "create", "review", "look"}
PROSE_WORDS = {"the", "uses", "is", "it", "its", "lists", "makes", "for", "this", "then", "to", "a", "an", "of"}
PATH = re.compile(r"^/[\w.@+-]+(?:/[\w.@*+-]+)*/?$")
UNIT = re.compile(r"^[\w@.:-]+\.(?:service|socket|timer|path|target|mount)$")


@dataclass
class Hint:
    root: str  # which variant
    verb: str
    code: str
    unit: str
    text: str
    baseline: str = ""  # drift: the baseline the finding came from
    message: str = ""  # of the finding: after a fix, no finding with this code and message may remain


@dataclass
class Root:
    name: str
    path: Path
    baseline: Path | None = None  # a snapshot taken before the mistakes (drift)
    key: Path | None = None


@dataclass
class Tally:
    kinds: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, what: str) -> None:
        self.kinds.setdefault(kind, []).append(what)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), cli.Environment(stdout=out, stderr=err, stdout_isatty=False, environ={}))
    return code, out.getvalue(), err.getvalue()


# -- the roots ---------------------------------------------------------------------------------------------------
def _write(root: Path, guest: str, text: str, append: bool = False) -> None:
    """Write into a linked copy without touching the shared file (unlink first)."""
    path = root / guest.lstrip("/")
    old = path.read_text(encoding="utf-8") if append and path.exists() else ""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old + text, encoding="utf-8")


def _remove(root: Path, guest: str) -> None:
    (root / guest.lstrip("/")).unlink()


def _sasl_pam(root: Path) -> None:
    """Cyrus logins through saslauthd and PAM (service imap), saslauthd enabled the Debian way (test_corpus)."""
    conf = (root / "etc/imapd.conf").read_text(encoding="utf-8")
    _write(root, "/etc/imapd.conf", conf.replace("sasl_pwcheck_method: auxprop", "sasl_pwcheck_method: saslauthd"))
    _write(root, "/etc/default/saslauthd", "START=yes\n", append=True)
    subprocess.run([shutil.which("update-rc.d") or "/usr/sbin/update-rc.d", "saslauthd", "enable"],
                   env={**os.environ, "DPKG_ROOT": str(root)}, check=True, capture_output=True)


def _sa_update_units(root: Path) -> None:
    """sa-update as admins add it: spamd refreshing its rules before it starts, with plugins allowed and a shorter
    start timeout; a oneshot of their own, with a start timeout, that wants the network but is not ordered after
    it; a script of their own for three channels that keeps the status for later, in a oneshot without the network
    target. debian-spamd: spamd's postinst makes it (the root has no postinst users)."""
    _write(root, "/etc/passwd", "debian-spamd:x:104:109::/var/lib/spamassassin:/usr/sbin/nologin\n", append=True)
    _write(root, "/etc/systemd/system/spamd.service.d/rules.conf",
           "[Service]\nExecStartPre=/usr/bin/sa-update --allowplugins\nTimeoutStartSec=45\n")
    _write(root, "/etc/systemd/system/sa-update.service",
           "[Unit]\nDescription=SpamAssassin rules\nWants=network-online.target\n\n"
           "[Service]\nType=oneshot\nExecStart=/usr/bin/sa-update\nTimeoutStartSec=60\n")
    _write(root, "/etc/systemd/system/sa-refresh.service",
           "[Unit]\nDescription=SpamAssassin rules, logged\n\n[Service]\nType=oneshot\n"
           "ExecStart=/usr/local/sbin/sa-refresh\n")
    _write(root, "/usr/local/sbin/sa-refresh",
           "#!/bin/sh\nrc=0\n/usr/bin/sa-update --channelfile /etc/spamassassin/channels --gpgkey 24C063D8 || rc=$?\n"
           "logger -t sa-refresh \"sa-update: $rc\"\n"
           "[ \"$rc\" -le 1 ] || exit \"$rc\"\n")
    os.chmod(root / "usr/local/sbin/sa-refresh", 0o755)
    _write(root, "/etc/spamassassin/channels",
           "updates.spamassassin.org\nkam.sa-channels.mcgrail.com\nsought.rules.yerp.org\n")


def _amavis_spam(root: Path) -> None:
    """Spam checks on as 15-content_filter_mode says (uncomment), network tests decided at run time."""
    mode = (root / "etc/amavis/conf.d/15-content_filter_mode").read_text(encoding="utf-8")
    _write(root, "/etc/amavis/conf.d/15-content_filter_mode", mode.replace(
        "#@bypass_spam_checks_maps", "@bypass_spam_checks_maps").replace(
        "#   \\%bypass_spam_checks", "   \\%bypass_spam_checks"))
    user = (root / "etc/amavis/conf.d/50-user").read_text(encoding="utf-8")
    _write(root, "/etc/amavis/conf.d/50-user", user.replace(
        "#------------ Do not modify",
        "$sa_local_tests_only = -e '/etc/amavis/offline';\n\n#------------ Do not modify"))


def _pam_auth_update(root: Path) -> None:
    """The common-* files libpam-runtime's postinst writes with pam-auth-update from the unix profile (not run in
    the root)."""
    for kind, first in (("auth", "[success=1 default=ignore] pam_unix.so nullok"),
                        ("account", "[success=1 new_authtok_reqd=done default=ignore] pam_unix.so"),
                        ("password", "[success=1 default=ignore] pam_unix.so obscure yescrypt")):
        _write(root, f"/etc/pam.d/common-{kind}",
               f"{kind} {first}\n{kind} requisite pam_deny.so\n{kind} required pam_permit.so\n")
    _write(root, "/etc/pam.d/common-session", "session [default=1] pam_permit.so\nsession requisite pam_deny.so\n"
           "session required pam_permit.so\nsession required pam_unix.so\n")


def _pam_lines(root: Path) -> None:
    """Cyrus logins through PAM with a module that is not installed (imap), a misspelt control (sieve), a vendor
    file /etc shadows (sieve), and a pop file of session lines only; the common-* files as pam-auth-update
    writes them."""
    _sasl_pam(root)
    _pam_auth_update(root)
    imap = (root / "etc/pam.d/imap").read_text(encoding="utf-8")
    _write(root, "/etc/pam.d/imap", "auth sufficient pam_ldap.so\n" + imap)
    sieve = (root / "etc/pam.d/sieve").read_text(encoding="utf-8")
    _write(root, "/usr/lib/pam.d/sieve", sieve)
    _write(root, "/etc/pam.d/sieve", sieve + "account requird pam_unix.so\n")
    _write(root, "/etc/pam.d/pop", "@include common-session\n")


FRESHCLAM = "/etc/clamav/freshclam.conf"
BASE_FRESHCLAM = ("DatabaseOwner clamav\nUpdateLogFile /var/log/clamav/freshclam.log\n"
                  "DatabaseMirror database.clamav.net\n")
# What admins (and failed runs, and upgrades) do to the installed root, each variant a realistic state.
MISTAKES: dict[str, Callable[[Path], None]] = {
    "freshclam-example": lambda r: _write(r, FRESHCLAM, "Example\n" + BASE_FRESHCLAM),
    "freshclam-privatemirror": lambda r: _write(r, FRESHCLAM, BASE_FRESHCLAM.replace(
        "DatabaseMirror database.clamav.net", "PrivateMirror db.local.clamav.net")),
    "freshclam-nomirror": lambda r: _write(r, FRESHCLAM, BASE_FRESHCLAM.replace(
        "DatabaseMirror database.clamav.net\n", "")),
    "spamd-empty-rules": lambda r: [
        (r / "var/lib/spamassassin/4.000001/updates_spamassassin_org").mkdir(parents=True),
        (r / "var/lib/spamassassin/3.004006").mkdir(parents=True)],
    "no-gpg": lambda r: [_remove(r, "/usr/bin/gpg")],
    "pam-gone": lambda r: [_sasl_pam(r), _remove(r, "/etc/pam.d/imap")],
    "pam-dpkg-old": lambda r: [_sasl_pam(r), _write(r, "/etc/pam.d/imap.dpkg-old", (r / "etc/pam.d/imap").read_text()),
                               _remove(r, "/etc/pam.d/imap"),
                               _write(r, "/etc/pam.d/common-auth.dpkg-dist", "auth required pam_unix.so\n")],
    "missing-program": lambda r: _write(r, "/etc/systemd/system/spamd.service.d/local.conf",
                                        "[Service]\nExecStartPre=-/usr/local/bin/refresh-rules\n"
                                        "ExecStartPost=/usr/local/sbin/notify-admin\n"),
    # sa-update the admin's way (no guard, no tolerance, as root), amavis with SpamAssassin on, and PAM's `other`
    # and imap deleted: none of these touches another's files or findings
    "admin-units": lambda r: [_sa_update_units(r), _amavis_spam(r), _sasl_pam(r), _remove(r, "/etc/pam.d/other"),
                              _remove(r, "/etc/pam.d/imap")],
    "pam-lines": _pam_lines,
    # a drop-in `dropin install` made on the host, copied into the guest: it calls the host's mailpreflight
    "host-dropin": lambda r: _write(r, "/etc/systemd/system/spamassassin-maintenance.service.d/zz-mailpreflight.conf",
                                    "# Installed by mailpreflight\n[Service]\nExecStart=\nExecStart=-/opt/mp/bin/"
                                    "mailpreflight guard --timeout 60 -- /usr/sbin/spamassassin-maint\n"),
}


@pytest.fixture(scope="module")
def roots(debian_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Root]:
    made = [Root("installed", debian_root)]
    for name, damage in MISTAKES.items():
        base = tmp_path_factory.mktemp(name)
        root = debroot.linked_copy(debian_root, base / "root")
        key, baseline = base / "key", base / "baseline.json"
        code, _, err = run("snapshot", "--root", str(root), "--digest-key", str(key), "--output", str(baseline))
        assert code == 0, err
        damage(root)
        made.append(Root(name, root, baseline, key))
    return made


# -- collecting every hint -----------------------------------------------------------------------------------------
def _hints_in(data: object, verb: str, root: str, baseline: str = "") -> Iterator[Hint]:
    if isinstance(data, dict):
        if data.get("hint"):
            yield Hint(root, verb, str(data.get("code", "")), str(data.get("unit", "")), data["hint"], baseline,
                       _message(str(data.get("message", ""))))
        for value in data.values():
            yield from _hints_in(value, verb, root, baseline)
    elif isinstance(data, list):
        for value in data:
            yield from _hints_in(value, verb, root, baseline)


def _message(text: str) -> str:
    return text.removeprefix("risk: ")  # check's name for deps' static findings


def _error_hints(err: str, verb: str, root: str) -> Iterator[Hint]:
    """A MailpreflightError's hint: `message (hint)` on stderr."""
    for line in err.splitlines():
        if line.startswith("mailpreflight: warning:"):
            continue
        if line.endswith(")") and " (" in line and ": " in line:
            yield Hint(root, verb, "error", "", line.rsplit(" (", 1)[1][:-1])


DEAD_RESOLVER = "nameserver 127.0.0.1\n"


def services(root: Path) -> list[str]:
    loader = UnitLoader(RootFS(str(root)))
    return [n for n in loader.service_names() if loader.load(n).load_state is LoadState.LOADED]


def check_json(root: Path, resolv: Path, *units: str) -> dict[str, object]:
    code, out, err = run("check", "--root", str(root), "--format", "json", "--resolv-conf", str(resolv),
                         "--timeout", "1", "--deadline", "20", *units)
    assert code != 3, err
    return json.loads(out)  # type: ignore[no-any-return]


def collect(root: Root, resolv: Path) -> list[Hint]:
    """deps and check over every service, firewall, snapshot, drift; show and `dropin show` on the installed root
    (the mistakes change no unit's text but spamd's)."""
    hints: list[Hint] = []
    path = str(root.path)
    names = services(root.path)
    everything = root.baseline is None
    for name in names if everything else ["spamd.service", "spamassassin-maintenance.service"]:
        code, out, err = run("show", "--root", path, "--format", "json", name)
        assert code != 3, err
        hints += _hints_in(json.loads(out), "show", root.name)
        hints += _error_hints(err, "show", root.name)
        code, out, err = run("dropin", "show", "--root", path, name)
        hints += _error_hints(err, "dropin", root.name)
        if "OUTDATED" in out:
            hints.append(Hint(root.name, "dropin", "outdated", name, f"mailpreflight dropin install {name}"))
        hints += [Hint(root.name, "dropin", "MP114", name, command)  # a MISSING program: make it again
                  for command in dict.fromkeys(re.findall(r"`(mailpreflight dropin [^`]+)`", out))]
    code, out, err = run("deps", "--root", path, "--format", "json", *names)
    assert code != 3, err
    hints += _hints_in(json.loads(out), "deps", root.name)
    hints += _hints_in(check_json(root.path, resolv, *names), "check", root.name)
    code, out, err = run("firewall", "--root", path)
    assert code != 3, err
    hints += _error_hints(err, "firewall", root.name)
    with_key = ("--digest-key", str(root.key)) if root.key else ("--digest-key", str(resolv.parent / "key"))
    code, out, err = run("snapshot", "--root", path, *with_key)
    assert code == 0, err
    hints += _hints_in(json.loads(out)["findings"], "snapshot", root.name)
    if root.baseline:
        code, out, err = run("drift", "--root", path, "--baseline", str(root.baseline), *with_key, "--format",
                             "json")
        assert code != 3, err
        hints += _hints_in(json.loads(out), "drift", root.name, str(root.baseline))
        code, text, err = run("drift", "--root", path, "--baseline", str(root.baseline), *with_key)
        code = ""
        for line in text.splitlines():  # "-> MP301 critical: ..." then "fix: ..."
            if line.strip().startswith("-> MP"):
                code = line.split()[1]
            elif line.strip().startswith("fix: "):
                hints.append(Hint(root.name, "drift-text", code, "", line.split("fix: ", 1)[1], str(root.baseline)))
    return hints


# -- taking a hint apart -------------------------------------------------------------------------------------------
def _program(root: Path, name: str) -> str | None:
    """Where the root has the program, or the standard package that has it."""
    if name == "mailpreflight":
        return "mailpreflight"
    if name.startswith("/"):
        return name if os.access(root / name.lstrip("/"), os.X_OK) or (root / name.lstrip("/")).is_symlink() else None
    for directory in BIN_DIRS:
        if (root / directory / name).exists():
            return f"/{directory}/{name}"
    return f"({STANDARD[name]})" if name in STANDARD else None


def commands_in(root: Path, text: str) -> list[str]:
    """The shell commands a hint names: `quoted`, or the words after its start, a ': ' or a '; ' that begin with a
    program the root has."""
    found = [q for q in re.findall(r"`([^`]+)`", text)]
    pieces = re.split(r"(?:^|: |; |, or |\(|then )", re.sub(r"`[^`]*`", "\0", text))
    for piece in pieces:
        piece = piece.strip()
        words = piece.split()
        if not words or "\0" in words[0]:
            continue
        if words[0] not in ENGLISH and not PROSE_WORDS & set(words[1:]) and _program(root, words[0]) is not None:
            command = re.split(r" \(|\)|, or |; |\0", piece)[0].strip().rstrip(".,")
            found.append(command)
    return [c for c in found if c.split() and _program(root, c.split()[0]) is not None]


def settings_in(text: str) -> list[str]:
    """The unit settings a hint asks to add (`add Wants=X`, `systemctl edit U (add ...)`), in order."""
    if not re.search(r"(?:^|\()add ", text):
        return []
    first = text.split(", or ")[0]
    found = QUOTED_SETTING.findall(first) or SETTING.findall(first)
    return [s for s in found if not s.endswith("=") or s.startswith("Exec")]


def _help_text(root: Path, program: str) -> str:
    """What documents the program's options: this machine's `PROGRAM --help` and the root's man page."""
    text = ""
    host = shutil.which(program)
    if host:
        done = subprocess.run([host, "--help"], capture_output=True, text=True, timeout=30, errors="replace")
        text += done.stdout + done.stderr
    for page in glob.glob(str(root / "usr/share/man/man[18]" / f"{program}.[18]*")):
        with gzip.open(page, "rt", errors="replace") if page.endswith(".gz") else open(page) as handle:
            text += handle.read().replace("\\-", "-")
    return text


def check_shell(root: Path, command: str, creates: set[str], unit: str = "") -> list[str]:
    """What is wrong with a shell command of a hint, on this root (about `unit`)."""
    problems = []
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return [f"{command!r} does not parse as shell: {exc}"]
    if argv[0] == "runuser" and "--" in argv:  # runuser -u USER -- COMMAND: the user, then the command itself
        cut = argv.index("--")
        user = argv[argv.index("-u") + 1] if "-u" in argv[:cut] else ""
        if user and not re.search(rf"^{re.escape(user)}:", (root / "etc/passwd").read_text(), re.M) and \
                f'"user": "{user}"' not in run("deps", "--root", str(root), "--format", "json", unit)[1]:
            # (a user the postinst makes, as the unit's own start path runs it, is as good as the unit)
            problems.append(f"{command!r}: no user {user} in the root's /etc/passwd")
        return problems + check_shell(root, shlex.join(argv[cut + 1:]), creates, unit)
    program = argv[0]
    if _program(root, program) is None and _program(root, program.rsplit("/", 1)[-1]) is None:
        problems.append(f"{command!r}: no program {program} in the root")
    if program in STANDARD:
        return problems
    program = program.rsplit("/", 1)[-1]
    documented = _help_text(root, program)
    verb_words = [a for a in argv[1:] if not a.startswith("-")]
    if program == "systemctl" and verb_words and not re.search(rf"\b{verb_words[0]}\b", documented):
        problems.append(f"{command!r}: systemctl has no verb {verb_words[0]}")
    for previous, arg in itertools.pairwise(argv):
        if previous.startswith("--") and PATH.fullmatch(arg) and (root / arg.lstrip("/")).parent.is_dir():
            continue  # an option's path: the program makes it (sa-update --gpghomedir) when its directory exists
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]  # spelled out in full (getopt would take an abbreviation)
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", documented):
                problems.append(f"{command!r}: {program} has no option {option}")
        elif re.fullmatch(r"-[a-zA-Z]+", arg) and program not in ("sed",):  # sed -n/-i checked by running
            for letter in arg[1:]:
                if not re.search(rf"(?<![\w-])-{letter}\b", documented):
                    problems.append(f"{command!r}: {program} has no option -{letter}")
        elif PATH.fullmatch(arg) and not (arg in creates or glob.glob(str(root) + arg) or
                                          (root / arg.lstrip("/")).is_symlink()):
            problems.append(f"{command!r}: {arg} does not exist in the root")
        elif UNIT.fullmatch(arg) and UnitLoader(RootFS(str(root))).load(arg).load_state is not LoadState.LOADED:
            problems.append(f"{command!r}: no unit {arg} in the root")
    return problems


def creates_of(command: str) -> set[str]:
    """The paths a command makes (they need not exist before)."""
    argv = shlex.split(command)
    if argv[0] == "mv" and len(argv) >= 3:
        return {argv[-1]}
    if ">>" in argv:
        return {argv[argv.index(">>") + 1]}
    return set()


# -- running a hint on a copy ------------------------------------------------------------------------------------
def own_copy(root: Path, guest: str) -> None:
    """Break the hard link of a linked copy's file before something writes into it."""
    path = root / guest.lstrip("/")
    if path.is_file() and not path.is_symlink():
        data = path.read_bytes()
        mode = path.stat().st_mode
        path.unlink()
        path.write_bytes(data)
        os.chmod(path, mode)


RUNNABLE = {"sed", "diff", "rmdir", "rm", "mv", "echo"}


def run_shell(copy: Path, command: str) -> subprocess.CompletedProcess[str]:
    """This machine's program on the copy: every path the command names is taken inside the copy."""
    argv = shlex.split(command)
    target = None
    if ">>" in argv:
        target = argv[argv.index(">>") + 1]
        argv = argv[:argv.index(">>")]
    mapped = []
    for arg in argv[1:]:
        if PATH.fullmatch(arg):
            matches = sorted(glob.glob(str(copy) + arg)) if "*" in arg else [str(copy) + arg]
            for match in matches:
                own_copy(copy, match[len(str(copy)):])
            mapped += matches
        else:
            mapped.append(arg)
    done = subprocess.run([argv[0], *mapped], capture_output=True, text=True, timeout=30)
    if target is not None:
        own_copy(copy, target)
        with open(str(copy) + target, "a", encoding="utf-8") as handle:
            handle.write(done.stdout)
    return done


def findings_of(root: Path, resolv: Path, unit: str, code: str = "") -> set[tuple[str, str]]:
    """The findings (code, message) the unit has: `deps` for the static ones (MP1xx), `check` for the rest."""
    if code.startswith("MP1") and unit:
        done, out, err = run("deps", "--root", str(root), "--format", "json", unit)
        assert done != 3, err
        return {(str(f["code"]), f["message"]) for u in json.loads(out)["units"] for f in u["findings"]}
    report = check_json(root, resolv, *([unit] if unit else []))
    return {(str(f["code"]), _message(f["message"])) for f in report["findings"]  # type: ignore[attr-defined]
            if not unit or f["unit"] == unit}


def still_there(hint: Hint, before: set[tuple[str, str]], after: set[tuple[str, str]]) -> bool:
    """The finding the hint was for is still given (by its message; without one, by its code)."""
    if hint.message:
        return (hint.code, hint.message) in before and (hint.code, hint.message) in after
    return any(c == hint.code for c, _ in before) and any(c == hint.code for c, _ in after)


def apply_settings(copy: Path, unit: str, settings: list[str], section: str = "Unit") -> Path:
    dropin = copy / "etc/systemd/system" / f"{unit}.d" / "hint.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(f"[{section}]\n" + "".join(f"{s}\n" for s in settings), encoding="utf-8")
    return dropin


def verify_dropin(copy: Path, unit: str) -> str:
    """systemd's own parser on the unit with its drop-ins, in the copy."""
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={copy}", unit], capture_output=True,
                          text=True, timeout=60, env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"})
    return "\n".join(line for line in done.stderr.splitlines()
                     if "hint.conf" in line or "Unknown key" in line or "Invalid" in line)


# -- the test ---------------------------------------------------------------------------------------------------
def test_every_hint_works(roots: list[Root], tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(DEAD_RESOLVER, encoding="utf-8")
    tally = Tally()
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for root in roots:
        collected = collect(root, resolv)
        in_json = {h.text for h in collected if h.verb == "drift"}
        for hint in collected:
            if hint.verb == "drift-text" and hint.text in in_json:
                continue  # the same as its JSON
            if (hint.code, hint.unit, hint.text) in seen:
                continue  # the same hint on another variant
            seen.add((hint.code, hint.unit, hint.text))
            tally.add("code", hint.code)
            problems += try_hint(root, hint, resolv, tmp_path / f"h{len(seen)}", tally)
    report = {kind: len(items) for kind, items in tally.kinds.items()}
    print(f"{len(seen)} distinct hints; tried:", report)
    for kind, items in sorted(tally.kinds.items()):
        for item in sorted(set(items)):
            print(f"  {kind}: {item}")
    assert not problems, "\n".join(problems)
    # it cannot pass on nothing: every kind is there, many times
    assert report.get("mailpreflight", 0) >= 5 and report.get("shell", 0) >= 10 and report.get("setting", 0) >= 3, \
        report
    assert report.get("executed", 0) >= 8 and report.get("fixed", 0) >= 5 and len(seen) >= 30, (len(seen), report)
    assert not CODES - set(tally.kinds["code"]), f"no hint tried for {sorted(CODES - set(tally.kinds['code']))}"


def try_hint(root: Root, hint: Hint, resolv: Path, scratch: Path, tally: Tally) -> list[str]:
    where = f"[{root.name} {hint.verb} {hint.code} {hint.unit}] {hint.text!r}"
    commands = commands_in(root.path, hint.text)
    settings = settings_in(hint.text)
    problems: list[str] = []
    if re.search(r"(?<!--baseline )\bFILE\b|\b(?:UNIT|PATH|DIR)\b|(?<!--root )\bROOT\b", hint.text):
        problems.append(f"{where}: a placeholder, not a command that works")
    if not commands and not settings:
        if hint.code in PROSE and hint.text.startswith(PROSE[hint.code]):
            tally.add("prose", hint.text)
            return problems
        return [*problems, f"{where}: names no command"]
    for command in commands:
        argv = command.split()
        if argv[0] == "mailpreflight":
            tally.add("mailpreflight", f"{hint.code} {command}")
            problems += [f"{where}: {p}" for p in run_mailpreflight(root, hint, command, resolv, scratch, tally)]
            continue
        tally.add("shell", command)
        problems += [f"{where}: {p}" for p in check_shell(root.path, command, creates_of(command), hint.unit)]
        if argv[0] == "systemctl" and argv[1:2] == ["edit"] and settings:
            continue  # the settings it asks for are tried below
        if argv[0] in RUNNABLE and not problems:
            copy = debroot.linked_copy(root.path, scratch / "copy")
            before = findings_of(copy, resolv, hint.unit, hint.code) if hint.code.startswith("MP") else set()
            done = run_shell(copy, command)
            tally.add("executed", command)
            if done.returncode not in ((0, 1) if argv[0] == "diff" else (0,)) or \
                    (argv[0] == "sed" and "-n" in argv and not done.stdout.strip()):
                problems.append(f"{where}: `{command}` on a copy: exit {done.returncode} {done.stderr.strip()}")
            elif argv[0] in ("rmdir", "rm", "mv", "echo") or argv[:2] == ["sed", "-i"]:
                after = findings_of(copy, resolv, hint.unit, hint.code)
                if still_there(hint, before, after):
                    problems.append(f"{where}: after `{command}` the finding is still there")
                else:
                    tally.add("fixed", command)
            shutil.rmtree(scratch / "copy")
    if settings:
        tally.add("setting", " ".join(settings))
        copy = debroot.linked_copy(root.path, scratch / "settings")
        section = "Service" if any(s.startswith(("Exec", "ReadWritePaths", "User")) for s in settings) else "Unit"
        apply_settings(copy, hint.unit, settings, section)
        complaint = verify_dropin(copy, hint.unit) if shutil.which("systemd-analyze") else ""
        if complaint:
            problems.append(f"{where}: systemd-analyze verify on the drop-in: {complaint}")
        before = findings_of(root.path, resolv, hint.unit, hint.code)
        if still_there(hint, before, findings_of(copy, resolv, hint.unit, hint.code)):
            problems.append(f"{where}: with {settings} the finding is still there")
        else:
            tally.add("fixed", " ".join(settings))
        shutil.rmtree(copy)
    return problems


def run_mailpreflight(root: Root, hint: Hint, command: str, resolv: Path, scratch: Path, tally: Tally) -> list[str]:
    argv = shlex.split(command)[1:]
    copy = debroot.linked_copy(root.path, scratch / "mp")
    if "--root" in argv:  # the root it names (or ROOT, for a root the finding cannot name) -> the copy
        argv[argv.index("--root") + 1] = str(copy)
    else:
        argv += ["--root", str(copy)]
    if "--baseline" in argv and argv[argv.index("--baseline") + 1] == "FILE":  # check's hint: the admin's baseline
        held = json.loads(root.baseline.read_text())["files"] if root.baseline else {}
        if not set(argv) & set(held):
            tally.add("template", f"{hint.code} {command} (no baseline holds it here)")
            return []  # the hint is for a system with a snapshot that holds the file
        argv[argv.index("--baseline") + 1] = str(root.baseline)
    if argv[0] == "restore":
        argv += ["--digest-key", str(root.key)]
        for path in argv[1:]:
            if PATH.fullmatch(path):
                own_copy(copy, path)
    if argv[0] == "check":
        argv += ["--resolv-conf", str(resolv), "--timeout", "1"]
    before = findings_of(copy, resolv, hint.unit, hint.code) if hint.code.startswith("MP") else set()
    code, _, err = run(*argv)
    tally.add("executed", command)
    problems = []
    if code == 3 or "refus" in err:
        problems.append(f"`mailpreflight {' '.join(argv)}` exits {code}: {err.strip()[-600:]}")
    elif argv[0] in ("dropin", "restore") and hint.code.startswith("MP"):
        if still_there(hint, before, findings_of(copy, resolv, hint.unit, hint.code)):
            problems.append(f"after `{command}` the finding {hint.code} is still there")
        else:
            tally.add("fixed", command)
    shutil.rmtree(copy)
    return problems
