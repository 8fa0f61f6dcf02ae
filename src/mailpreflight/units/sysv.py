"""systemd-sysv-generator, as systemd 252 runs it: units made at boot from LSB init scripts in /etc/init.d
(deliberate copy of systemd's src/sysv-generator/sysv-generator.c; see units/generators.py and
docs/design.md). Checked byte for byte against the real generator (tests/realpkg)."""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass, field

from mailpreflight.access.rootfs import RootFS
from mailpreflight.units.generators import EXIT_NOTCONFIGURED, EXIT_NOTINSTALLED, LATE_DIR, SYSV, GeneratedFile
from mailpreflight.units.syntax import WHITESPACE, split_lines
from mailpreflight.units.unitname import parse_unit_name

SYSVINIT_PATH = "/etc/init.d"
SYSVRCND_PATH = "/etc"
RCND_TABLE = (("rc1.d", "rescue.target"), ("rc2.d", "multi-user.target"), ("rc3.d", "multi-user.target"),
              ("rc4.d", "multi-user.target"), ("rc5.d", "graphical.target"))
LSB_FACILITIES = {"local_fs": None, "network": "network-online.target", "named": "nss-lookup.target",
                  "portmap": "rpcbind.target", "remote_fs": "remote-fs.target", "syslog": None,
                  "time": "time-sync.target"}
_RELOAD_USAGE = ("{reload|", "{reload}", '{reload"', "|reload|", "|reload}", '|reload"')
_DIGITS = "0123456789"
_BACKUP_SUFFIXES = frozenset({"rpmnew", "rpmsave", "rpmorig", "dpkg-old", "dpkg-new", "dpkg-tmp", "dpkg-dist",
                              "dpkg-bak", "dpkg-backup", "dpkg-remove", "ucf-new", "ucf-old", "ucf-dist", "swp",
                              "bak", "old", "new"})
_MANGLE_VALID = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@")


SCRIPT_MAX_BYTES = 1024 * 1024


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


