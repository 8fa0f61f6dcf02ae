"""Units that generators make at boot, for an offline root: what the guest's systemd would find in
/run/systemd/generator and /run/systemd/generator.late once its generators have run.

Offline, /run is empty: without this, Debian's exim4.service (from /etc/init.d/exim4), saslauthd.service,
the fetchmail daemon and postfix@-.service would be "not found" or never analysed. Two generators are
modelled, each only when the guest has it installed (and not masked or overridden, see `_installed`):

- systemd-sysv-generator (systemd 252, src/sysv-generator/sysv-generator.c; a deliberate copy of its rules):
  every executable regular file in /etc/init.d whose name (".sh" dropped, unit_name_mangle()d) has no unit
  file of its own in the search path (generator dirs excluded; a mask or any entry counts) becomes NAME in
  /run/systemd/generator.late: Description= "LSB: " + Short-Description (else the chkconfig "description:",
  else Description), Before=/After= from Required-Start, Should-Start, X-Start-Before, X-Start-After
  ($network -> network-online.target, also Wants=; $named -> nss-lookup.target; $remote_fs ->
  remote-fs.target; $time -> time-sync.target; $portmap -> rpcbind.target; $local_fs, $syslog dropped;
  another $x -> x.target; a plain name -> name.service), Provides: a service name becomes an alias link, a
  $target Before=/Wants=; Type=forking, Restart=no, TimeoutSec=5min, IgnoreSIGPIPE=no, KillMode=process,
  GuessMainPID=no, RemainAfterExit=yes (no when a chkconfig "pidfile:" gives PIDFile=), SuccessExitStatus=5 6
  with an LSB header, ExecStart=SCRIPT start, ExecStop=SCRIPT stop, ExecReload=SCRIPT reload when a "usage"
  line offers reload. An S link in /etc/rc1.d..rc5.d adds Before= and a .wants link of rescue.target (1),
  multi-user.target (2-4), graphical.target (5); for scripts without an LSB header, start priorities order
  them (fix_order()).
- Debian's postfix-instance-generator (a shell script of the postfix package): postfix.service.wants/ in
  /run/systemd/generator gets postfix@-.service, and for every word of `postconf -h
  multi_instance_directories` (the raw value: no $expansion, split by the shell on blanks only — a comma
  stays part of the word), postfix@NAME.service with NAME = that directory's `multi_instance_name` ("" when
  it has none or no main.cf), all links to /lib/systemd/system/postfix@.service. A name that cannot be a link
  (a "/" in it) or is there already makes `ln` fail and the script (set -e) stop: later instances are missing.

Other generators (fstab, getty, ...) are not modelled: nothing of mail depends on them. Where systemd's own
order is a hash order (two scripts providing the same alias; fix_order()'s lists), names are taken sorted.
`tests/realpkg/test_generators_real.py` runs the real generators on the real Debian packages and compares.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mailpreflight.access.rootfs import DEV_NULL, RootFS
from mailpreflight.units.syntax import WHITESPACE, split_lines
from mailpreflight.units.unitname import parse_unit_name

if TYPE_CHECKING:
    from mailpreflight.units.loader import Unit

SYSV = "systemd-sysv-generator"
POSTFIX = "postfix-instance-generator"
NORMAL_DIR = "/run/systemd/generator"
EARLY_DIR = "/run/systemd/generator.early"
LATE_DIR = "/run/systemd/generator.late"
OUTPUT_DIRS = (EARLY_DIR, NORMAL_DIR, LATE_DIR)
_OUTPUT_PARENTS = frozenset({"/run", "/run/systemd"})
_OUTPUT_PREFIXES = tuple(d + "/" for d in OUTPUT_DIRS)
GENERATOR_PATHS = ("/run/systemd/system-generators", "/etc/systemd/system-generators",
                   "/usr/local/lib/systemd/system-generators", "/lib/systemd/system-generators",
                   "/usr/lib/systemd/system-generators")
SYSVINIT_PATH = "/etc/init.d"
SYSVRCND_PATH = "/etc"
RCND_TABLE = (("rc1.d", "rescue.target"), ("rc2.d", "multi-user.target"), ("rc3.d", "multi-user.target"),
              ("rc4.d", "multi-user.target"), ("rc5.d", "graphical.target"))
LSB_FACILITIES = {"local_fs": None, "network": "network-online.target", "named": "nss-lookup.target",
                  "portmap": "rpcbind.target", "remote_fs": "remote-fs.target", "syslog": None,
                  "time": "time-sync.target"}
EXIT_NOTINSTALLED, EXIT_NOTCONFIGURED = 5, 6
POSTFIX_TEMPLATE = "/lib/systemd/system/postfix@.service"
SCRIPT_MAX_BYTES = 1024 * 1024
_RELOAD_USAGE = ("{reload|", "{reload}", '{reload"', "|reload|", "|reload}", '|reload"')
_DIGITS = "0123456789"
_BACKUP_SUFFIXES = frozenset({"rpmnew", "rpmsave", "rpmorig", "dpkg-old", "dpkg-new", "dpkg-tmp", "dpkg-dist",
                              "dpkg-bak", "dpkg-backup", "dpkg-remove", "ucf-new", "ucf-old", "ucf-dist", "swp",
                              "bak", "old", "new"})
_MANGLE_VALID = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@")


@dataclass(frozen=True)
class GeneratedFile:
    """One entry a generator writes: a unit file (`data`) or a symlink (`link`, its target as written)."""

    path: str  # guest path, under /run/systemd/generator*
    generator: str
    source: str | None  # what it was made from (the init script, the main.cf naming an instance)
    data: bytes | None = None
    link: str | None = None


@dataclass(frozen=True)
class Generated:
    """Everything the modelled generators produce for one tree, and what they could not model."""

    files: tuple[GeneratedFile, ...]
    notes: tuple[str, ...] = ()
    by_path: dict[str, GeneratedFile] = field(default_factory=dict, compare=False, repr=False)
    dirs: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_path.update({f.path: f for f in self.files})
        parents = set(OUTPUT_DIRS)
        for entry in self.files:
            parent = posixpath.dirname(entry.path)
            while parent not in parents and parent.startswith("/run/systemd/generator"):
                parents.add(parent)
                parent = posixpath.dirname(parent)
        object.__setattr__(self, "dirs", frozenset(parents))

    def made_by(self, unit_id: str, fragment: str | None) -> str | None:
        """The generator a unit owes its existence to: the one that wrote its fragment, or, for an instance
        of a template, the one whose .wants/.requires link names it (postfix@-.service)."""
        made = self.by_path.get(fragment) if fragment else None
        if made is not None:
            return made.generator
        parsed = parse_unit_name(unit_id)
        if parsed is None or not parsed.is_instance:
            return None
        for entry in self.files:
            if entry.link is not None and posixpath.basename(entry.path) == unit_id and \
                    posixpath.basename(posixpath.dirname(entry.path)).endswith((".wants", ".requires")):
                return entry.generator
        return None


def at_boot(fs: RootFS, search_paths: Iterable[str]) -> Generated | None:
    """What the guest's generators would write at its next boot; None for a live system (its /run holds the
    real output) or a search path that is not the system manager's (no generator dirs in it)."""
    paths = tuple(search_paths)
    if not fs.is_offline or LATE_DIR not in paths or NORMAL_DIR not in paths:
        return None
    notes: list[str] = []
    files: list[GeneratedFile] = []
    native_dirs = tuple(p for p in paths if p not in OUTPUT_DIRS)
    if _installed(fs, SYSV, notes):
        files += sysv_units(fs, native_dirs)
    if _installed(fs, POSTFIX, notes):
        files += postfix_instances(fs, notes)
    return Generated(tuple(files), tuple(notes))


def with_generated(fs: RootFS, generated: Generated | None) -> RootFS:
    """The tree as the loader should read it: the generator dirs replaced by `generated`."""
    return fs if generated is None else GeneratedFS(fs.root, generated=generated)


def mark(unit: Unit, generated: Generated | None) -> Unit:
    """Record on a loaded unit which generator made it (None: a unit file of its own)."""
    made = generated.made_by(unit.id, unit.fragment_path) if generated is not None else None
    return replace(unit, generated_by=made) if made else unit


def _installed(fs: RootFS, name: str, notes: list[str]) -> bool:
    """conf_files_list_strv() over the generator dirs: the first dir with a usable entry of that name decides.
    A mask (/dev/null, empty) stops it; an admin's own version is not the program modelled here."""
    for directory in GENERATOR_PATHS:
        path = posixpath.join(directory, name)
        resolved = fs.chase(path)
        if resolved is None:
            continue  # absent or dangling: systemd looks further
        if fs.is_null_or_empty(path):
            return False
        info = fs.lstat(resolved)
        if info is None or not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
            continue
        if directory.startswith(("/etc/", "/usr/local/", "/run/")):
            notes.append(f"{path} replaces the packaged {name}: its output is not modelled")
            return False
        return True
    return False


# -- systemd-sysv-generator ------------------------------------------------------------------------------------
@dataclass
class _Stub:
    name: str
    path: str
    start_priority: int = -1
    description: str | None = None
    pid_file: str | None = None
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    wants: list[str] = field(default_factory=list)
    wanted_by: list[str] = field(default_factory=list)
    has_lsb: bool = False
    reload: bool = False
    loaded: bool = False


def sysv_units(fs: RootFS, native_dirs: tuple[str, ...]) -> list[GeneratedFile]:
    """systemd-sysv-generator's run(): enumerate, read the rc dirs, read each script, write units and links."""
    stubs = _enumerate_sysv(fs, native_dirs)
    _rcnd(fs, stubs)
    aliases: dict[str, str] = {}  # alias -> service (first wins, as symlink() with EEXIST)
    for name in sorted(stubs):
        _load_sysv(fs, stubs[name], aliases)
    for name in sorted(stubs):
        _fix_order(stubs[name], stubs)
    out: dict[str, GeneratedFile] = {}
    for alias, service in aliases.items():
        out[f"{LATE_DIR}/{alias}"] = GeneratedFile(f"{LATE_DIR}/{alias}", SYSV, stubs[service].path, link=service)
    for name in sorted(stubs):
        stub = stubs[name]
        if not stub.loaded:
            continue
        # a real script wins over an alias link of the same name (generate_unit_file() unlinks it)
        out[f"{LATE_DIR}/{name}"] = GeneratedFile(f"{LATE_DIR}/{name}", SYSV, stub.path, data=_unit_text(stub))
        for target in stub.wanted_by:
            link = f"{LATE_DIR}/{target}.wants/{name}"
            out.setdefault(link, GeneratedFile(link, SYSV, stub.path, link=f"../{name}"))
    return list(out.values())


def hidden_or_backup(name: str) -> bool:
    """hidden_or_backup_file(): what systemd's FOREACH_DIRENT skips (exim4.dpkg-old, .foo, foo~, ...)."""
    if name.startswith(".") or name in ("lost+found", "aquota.user", "aquota.group") or name.endswith("~"):
        return True
    return "." in name and name.rsplit(".", 1)[1] in _BACKUP_SUFFIXES


def sysv_translate_name(name: str) -> str | None:
    """sysv_translate_name(): drop ".sh", then unit_name_mangle() (escape what is not valid, add .service)."""
    base = name[:-3] if name.endswith(".sh") else name
    return unit_name_mangle(base)


def unit_name_mangle(name: str) -> str | None:
    """unit_name_mangle_with_suffix(name, ".service") for a name that is not a path; None if it is empty."""
    if not name:
        return None
    if parse_unit_name(name) is not None:
        return name
    out = []
    for char in name:
        if char == "/":
            out.append("-")
        elif char in _MANGLE_VALID:
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))
    mangled = "".join(out)
    return mangled if parse_unit_name(mangled) is not None else mangled + ".service"


def _enumerate_sysv(fs: RootFS, native_dirs: tuple[str, ...]) -> dict[str, _Stub]:
    stubs: dict[str, _Stub] = {}
    listings = {d: set(fs.listdir(d)) for d in native_dirs}
    for entry in fs.listdir(SYSVINIT_PATH):
        if hidden_or_backup(entry):
            continue
        path = f"{SYSVINIT_PATH}/{entry}"
        resolved = fs.chase(path)  # fstatat() without AT_SYMLINK_NOFOLLOW
        info = fs.lstat(resolved) if resolved is not None else None
        if info is None or not info.st_mode & stat.S_IXUSR or not stat.S_ISREG(info.st_mode):
            continue
        name = sysv_translate_name(entry)
        if name is None or name in stubs or _unit_file_exists(name, native_dirs, listings):
            continue
        stubs[name] = _Stub(name, path)
    return stubs


def _unit_file_exists(name: str, native_dirs: tuple[str, ...], listings: dict[str, set[str]]) -> bool:
    """unit_file_exists() with the generated dirs excluded: an entry of that name anywhere (a file, an alias,
    a mask, a directory), or for an instance its template's."""
    parsed = parse_unit_name(name)
    if parsed is None:
        return True  # unit_file_exists() returns -EINVAL: the generator skips the script
    candidates = [name] + ([parsed.template] if parsed.is_instance and parsed.template else [])
    return any(candidate in listings[d] for candidate in candidates for d in native_dirs)


def _rcnd(fs: RootFS, stubs: dict[str, _Stub]) -> None:
    """set_dependencies_from_rcnd(): S[0-9][0-9]NAME links in rc1.d..rc5.d."""
    levels: list[set[str]] = [set() for _ in RCND_TABLE]
    for index, (directory, _) in enumerate(RCND_TABLE):
        for entry in fs.listdir(f"{SYSVRCND_PATH}/{directory}"):
            if hidden_or_backup(entry) or not entry.startswith("S") or len(entry) < 4 \
                    or entry[1] not in _DIGITS or entry[2] not in _DIGITS:
                continue
            name = sysv_translate_name(entry[3:])
            stub = stubs.get(name) if name else None
            if stub is None:
                continue
            stub.start_priority = max(int(entry[1:3]), stub.start_priority)
            levels[index].add(stub.name)
    for index, (_, target) in enumerate(RCND_TABLE):
        for name in sorted(levels[index]):
            stubs[name].before.append(target)
            stubs[name].wanted_by.append(target)


def _load_sysv(fs: RootFS, stub: _Stub, aliases: dict[str, str]) -> None:
    """load_sysv(): the LSB header, chkconfig comments and the reload heuristic."""
    try:
        data = fs.read_bytes(stub.path, SCRIPT_MAX_BYTES)
    except FileNotFoundError:
        return
    except OSError:
        return  # systemd logs the error and skips the script
    state = "normal"
    short = long = chkconfig = None
    supports_reload = False
    for raw in split_lines(data):
        original = raw.decode("utf-8", "surrogateescape")
        text = original.strip(WHITESPACE)
        if not text.startswith("#"):
            if state == "usage" or (state == "normal" and "usage" in text.lower()):
                lowered = text.lower()
                if any(pattern in lowered for pattern in _RELOAD_USAGE):
                    supports_reload, state = True, "normal"
                elif text.endswith("\\"):
                    state = "usage"
                else:
                    state = "normal"
            continue
        if state == "normal" and text == "### BEGIN INIT INFO":
            state, stub.has_lsb = "lsb", True
            continue
        if state in ("lsb", "lsb_description") and text == "### END INIT INFO":
            state = "normal"
            continue
        body = text[1:].lstrip(WHITESPACE)
        lowered = body.lower()
        if state == "normal":
            if lowered.startswith("description:"):
                value = body[12:]
                if value.endswith("\\"):
                    state, value = "description", value[:-1]
                chkconfig = value.strip(WHITESPACE) or None
            elif lowered.startswith("pidfile:"):
                value = body[8:].strip(WHITESPACE)
                if value.startswith("/"):
                    stub.pid_file = value
        elif state == "description":
            value = body
            if value.endswith("\\"):
                value = value[:-1]
            else:
                state = "normal"
            value = value.strip(WHITESPACE)
            if value:
                chkconfig = f"{chkconfig} {value}" if chkconfig else value
        elif state in ("lsb", "lsb_description"):
            if lowered.startswith("provides:"):
                state = "lsb"
                _provides(stub, body[9:], aliases)
            elif lowered.startswith(("required-start:", "should-start:", "x-start-before:", "x-start-after:")):
                state = "lsb"
                _dependencies(stub, body.split(":", 1)[1], lowered.startswith("x-start-before:"))
            elif lowered.startswith("description:"):
                state = "lsb_description"
                long = body[12:].strip(WHITESPACE) or None
            elif lowered.startswith("short-description:"):
                state = "lsb"
                short = body[18:].strip(WHITESPACE) or None
            elif state == "lsb_description":
                if original.startswith(("#\t", "#  ")):
                    value = body.strip(WHITESPACE)
                    if value:
                        long = f"{long} {value}" if long else value
                else:
                    state = "lsb"
    stub.reload = supports_reload
    description = short or chkconfig or long
    if description:
        stub.description = ("LSB: " if stub.has_lsb else "SYSV: ") + description
    stub.loaded = True


def _words(text: str) -> list[str]:
    """extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RELAX) in a loop: blanks separate, quotes go, a backslash
    takes the next character as it is; an unfinished quote or escape ends the last word."""
    words: list[str] = []
    index, length = 0, len(text)
    while index < length:
        while index < length and text[index] in WHITESPACE:
            index += 1
        if index >= length:
            break
        word: list[str] = []
        quote = ""
        while index < length:
            char = text[index]
            if char == "\\":
                if index + 1 < length:
                    word.append(text[index + 1])
                index += 2
                continue
            if quote:
                if char == quote:
                    quote = ""
                else:
                    word.append(char)
            elif char in "'\"":
                quote = char
            elif char in WHITESPACE:
                break
            else:
                word.append(char)
            index += 1
        words.append("".join(word))
    return words


def _facility(stub: _Stub, name: str) -> str | None:
    """sysv_translate_facility()."""
    bare = name[1:] if name.startswith("$") else name
    if bare in LSB_FACILITIES:
        return LSB_FACILITIES[bare]
    if name.startswith("$"):
        return f"{bare}.target" if parse_unit_name(f"{bare}.target") is not None else None
    own = posixpath.basename(stub.path)
    if bare == (own[:-3] if own.endswith(".sh") else own):
        return None
    return sysv_translate_name(bare)


def _provides(stub: _Stub, text: str, aliases: dict[str, str]) -> None:
    for word in _words(text):
        name = _facility(stub, word)
        parsed = parse_unit_name(name) if name else None
        if parsed is None:
            continue
        if parsed.type == "service":
            aliases.setdefault(parsed.name, stub.name)
        elif parsed.type == "target":
            stub.before.append(parsed.name)
            stub.wants.append(parsed.name)
            if parsed.name == "network-online.target":
                stub.before.append("network.target")
                stub.wants.append("network.target")


def _dependencies(stub: _Stub, text: str, is_before: bool) -> None:
    for word in _words(text):
        name = _facility(stub, word)
        if name is None:
            continue
        if name == "network-online.target" and not is_before:
            stub.after.append(name)
            stub.wants.append(name)
        else:
            (stub.before if is_before else stub.after).append(name)


def _fix_order(stub: _Stub, stubs: dict[str, _Stub]) -> None:
    """fix_order(): start priorities order scripts unless both have an LSB header."""
    if not stub.loaded or stub.start_priority < 0:
        return
    for other in sorted(stubs.values(), key=lambda s: s.name):
        if other is stub or not other.loaded or other.start_priority < 0 or (stub.has_lsb and other.has_lsb):
            continue
        if other.start_priority < stub.start_priority:
            stub.after.append(other.name)
        elif other.start_priority > stub.start_priority:
            stub.before.append(other.name)


def _specifier_escape(text: str) -> str:
    return text.replace("%", "%%")


def _unit_text(stub: _Stub) -> bytes:
    """generate_unit_file(), byte for byte."""
    path = _specifier_escape(stub.path)
    lines = ["# Automatically generated by systemd-sysv-generator", "", "[Unit]",
             "Documentation=man:systemd-sysv-generator(8)", f"SourcePath={path}"]
    if stub.description:
        lines.append(f"Description={_specifier_escape(stub.description)}")
    lines += [f"Before={n}" for n in stub.before] + [f"After={n}" for n in stub.after]
    lines += [f"Wants={n}" for n in stub.wants]
    lines += ["", "[Service]", "Type=forking", "Restart=no", "TimeoutSec=5min", "IgnoreSIGPIPE=no",
              "KillMode=process", "GuessMainPID=no", f"RemainAfterExit={'no' if stub.pid_file else 'yes'}"]
    if stub.pid_file:
        lines.append(f"PIDFile={_specifier_escape(stub.pid_file)}")
    if stub.has_lsb:
        lines.append(f"SuccessExitStatus={EXIT_NOTINSTALLED} {EXIT_NOTCONFIGURED}")
    lines += [f"ExecStart={path} start", f"ExecStop={path} stop"]
    if stub.reload:
        lines.append(f"ExecReload={path} reload")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


# -- postfix-instance-generator ---------------------------------------------------------------------------------
def postfix_instances(fs: RootFS, notes: list[str]) -> list[GeneratedFile]:
    """Debian's /lib/systemd/system-generators/postfix-instance-generator (postfix 3.7), step by step."""
    want_dir = f"{NORMAL_DIR}/postfix.service.wants"
    files = [GeneratedFile(f"{want_dir}/postfix@-.service", POSTFIX, "/etc/postfix/main.cf", link=POSTFIX_TEMPLATE)]
    directories = _postconf(fs, "/etc/postfix", "multi_instance_directories")
    made = {"postfix@-.service"}
    for word in (directories or "").split():
        # `postconf -o inet_interfaces= -hc DIR multi_instance_name`: a fatal error prints nothing
        name = _postconf(fs, word, "multi_instance_name") or ""
        link = f"postfix@{name}.service"
        if "/" in name or link in made:
            why = "contains '/'" if "/" in name else "is there already"
            notes.append(f"{word}/main.cf: multi_instance_name gives {link}, which {why}: ln fails and "
                         f"{POSTFIX} stops (set -e); instances listed after it get no unit")
            break
        made.add(link)
        files.append(GeneratedFile(f"{want_dir}/{link}", POSTFIX, posixpath.join(word, "main.cf"),
                                   link=POSTFIX_TEMPLATE))
    return files


def _postconf(fs: RootFS, config_dir: str, name: str) -> str | None:
    """`postconf -h NAME` with `-c config_dir`: the last setting's raw value (postconf(1) does not expand
    $names without -x); "" when unset (both parameters default to empty); None when main.cf cannot be read
    (postconf exits fatal and prints nothing)."""
    if not config_dir.startswith("/"):
        return None  # postconf -c wants an absolute path: "-c requires absolute pathname"
    text = fs.read_text(posixpath.join(config_dir, "main.cf"))
    if text is None:
        return None
    value = ""
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if current == name:
                value = f"{value} {stripped}".strip()
            continue
        key, equals, rest = line.partition("=")
        current = key.strip() if equals else None
        if current == name:
            value = rest.strip()
    return value


# -- the tree as the loader reads it ----------------------------------------------------------------------------
class GeneratedFS(RootFS):
    """A RootFS whose /run/systemd/generator{,.early,.late} hold what `Generated` lists (whatever the guest's
    own /run has there: systemd empties them at boot). Everything else is the guest's tree, read as RootFS
    reads it; links out of the generated dirs (postfix@-.service -> /lib/...) are followed into it."""

    def __init__(self, root: str, generated: Generated) -> None:
        super().__init__(root)
        object.__setattr__(self, "generated", generated)

    generated: Generated

    @staticmethod
    def _owned(guest: str) -> bool:
        return guest.startswith("/run/systemd/generator") and (
            guest in OUTPUT_DIRS or guest.startswith(_OUTPUT_PREFIXES))

    def lstat(self, guest: str) -> os.stat_result | None:
        if not self._owned(guest):
            found = super().lstat(guest)
            if found is None and guest in _OUTPUT_PARENTS:  # an unpopulated root: /run/systemd comes at boot
                now = int(time.time())
                return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 2, 0, 0, 0, now, now, now))
            return found
        now = int(time.time())
        entry = self.generated.by_path.get(guest)
        if entry is not None and entry.link is not None:
            return os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, 0, 0, len(entry.link), now, now, now))
        if entry is not None:
            size = len(entry.data or b"")
            return os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, size, now, now, now))
        if guest in self.generated.dirs:
            return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 2, 0, 0, 0, now, now, now))
        return None

    def readlink(self, guest: str) -> str | None:
        if not self._owned(guest):
            return super().readlink(guest)
        entry = self.generated.by_path.get(guest)
        return entry.link if entry is not None else None

    def listdir(self, guest: str, limit: int | None = None) -> list[str]:
        """`limit` is accepted for RootFS's signature; the guest's own dirs are listed with its default."""
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        if not self._owned(resolved):
            return super().listdir(resolved)
        if resolved not in self.generated.dirs:
            return []
        prefix = resolved.rstrip("/") + "/"
        names = {p[len(prefix):].split("/", 1)[0] for p in (*self.generated.by_path, *self.generated.dirs)
                 if p.startswith(prefix)}
        return sorted(names)

    def scan(self, guest: str) -> list[tuple[str, int]]:
        """listdir() with each entry's file type, as this tree has them (the loader's index reads unit dirs so)."""
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return []
        if not self._owned(resolved):
            return super().scan(resolved)
        found = []
        for name in self.listdir(resolved):
            info = self.lstat(posixpath.join(resolved, name))
            found.append((name, stat.S_IFMT(info.st_mode) if info is not None else 0))
        return found

    # Below, RootFS is handed the path resolved here: resolving it again costs one lstat, not a walk.
    def is_dir(self, guest: str) -> bool:
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return False
        if self._owned(resolved):
            return resolved in self.generated.dirs
        return super().is_dir(resolved)

    def is_null_or_empty(self, guest: str) -> bool:
        resolved = self.chase(guest)
        if resolved is None or resolved == DEV_NULL:
            return resolved == DEV_NULL
        if self._owned(resolved):
            entry = self.generated.by_path.get(resolved)
            return entry is not None and entry.data is not None and not entry.data
        return super().is_null_or_empty(resolved)

    def read_bytes(self, guest: str, limit: int | None = None) -> bytes:
        resolved = self.chase(guest)
        if resolved is None or not self._owned(resolved):
            return super().read_bytes(guest) if limit is None else super().read_bytes(guest, limit)
        entry = self.generated.by_path.get(resolved)
        if entry is None or entry.data is None:
            raise (IsADirectoryError if resolved in self.generated.dirs else FileNotFoundError)(guest)
        if limit is not None and len(entry.data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", guest)
        return entry.data


