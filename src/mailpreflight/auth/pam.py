r"""Which PAM configuration a service name really gets, read statically from a root.

Facts (Linux-PAM 1.6.1 libpam/pam_handlers.c, pam_dispatch.c, pam_line.c, pam_misc.c; 1.3.1 the same
except where said; line numbers in docs/auth.md):
- A service's file is looked up in /etc/pam.d, then /usr/lib/pam.d, then the vendor directory (libpam
  built with --enable-vendordir, as openSUSE does: /usr/etc/pam.d; 1.4.0 and later). The first file found is
  used alone. /etc/pam.conf is read only when none of these directories exists.
- The service name is lowercased and only its part after the last `/` is kept.
- `other` is looked up the same way and used TYPE BY TYPE: for every type (auth, account, password,
  session) the service's file does not define. No service file and no `other`: every call fails (PAM_ABORT).
- `#` anywhere ends a line; a trailing `\` joins the next line unless the line has a `#`. Words are separated
  by blanks and tabs only (a CR of a CRLF file sticks to the module name). Type and control
  words are case-insensitive; `[...]` is one word (`\]` escapes). A leading `-` on the type only silences
  the log when the module cannot be loaded: the line still counts.
- `include`/`substack` take the lines of one type from a file looked up like a service (absolute paths as
  is); a missing target makes that type's stack fail. `@include` (all types) is a Debian/Ubuntu patch (an
  unknown type, i.e. a failing auth line, elsewhere), which
  also resolves relative names of all three only in /etc/pam.d; a missing `@include` target aborts the parse.
- A relative module path is taken from libpam's compiled-in directory ($libdir/security). A module that
  cannot be loaded returns PAM_MODULE_UNKNOWN: the stack fails on a required/requisite line, the result is
  ignored on optional/sufficient ones.
- An unknown type, a missing control or module, or an unknown control make the line fail (an unknown
  control sets every action to "bad").
"""

from __future__ import annotations

import functools
import posixpath
import unicodedata
from dataclasses import dataclass, field

from mailpreflight.access.rootfs import LISTDIR_LIMIT, RootFS
from mailpreflight.units.distro import distribution

CONFIG_DIRS = ("/etc/pam.d", "/usr/lib/pam.d", "/usr/etc/pam.d")
LEGACY_CONF = "/etc/pam.conf"
DEFAULT_SERVICE = "other"
TYPES = ("auth", "account", "password", "session")
CONTROLS = frozenset({"required", "requisite", "sufficient", "optional", "include", "substack"})
# libpam's module directory is fixed at build time; offline we try every distribution's choice.
MODULE_DIRS = (
    "/lib64/security", "/usr/lib64/security", "/lib/security", "/usr/lib/security",
    "/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security", "/usr/lib/aarch64-linux-gnu/security",
    "/lib/i386-linux-gnu/security", "/usr/lib/i386-linux-gnu/security",
)
DIRECTORY_MODULES = frozenset({"pam_sss.so", "pam_ldap.so", "pam_krb5.so", "pam_winbind.so", "pam_mysql.so",
                               "pam_pgsql.so", "pam_radius_auth.so"})
LOCAL_MODULES = frozenset({"pam_unix.so", "pam_unix2.so", "pam_pwdb.so", "pam_userdb.so"})
MAX_DEPTH = 16  # libpam's own include limit is similar; also breaks include loops


@dataclass(frozen=True)
class PamLine:
    type: str
    control: str
    module: str  # as written
    args: tuple[str, ...]
    source: str  # file:line
    silent: bool  # `-type`: only the log is silenced
    module_path: str | None  # where it was found in the root, None if nowhere
    via: tuple[str, ...] = ()  # include chain, outermost first

    @property
    def module_name(self) -> str:
        return posixpath.basename(self.module)

    @property
    def decisive(self) -> bool:
        """Can this line's failure fail the stack? (required, requisite, or a `[...]` list)."""
        return self.control.lower() in ("required", "requisite") or self.control.startswith("[")

    @property
    def fails_when_missing(self) -> bool:
        """Does a module that cannot be loaded (PAM_MODULE_UNKNOWN) fail the stack on this line?"""
        if not self.control.startswith("["):
            return self.decisive
        actions = dict(item.partition("=")[::2] for item in self.control.strip("[]").split())
        action = actions.get("module_unknown", actions.get("default", "bad"))
        return action not in ("ignore", "reset")


@dataclass(frozen=True)
class PamProblem:
    kind: str  # missing-include | missing-module | bad-line | include-loop
    source: str  # file:line
    detail: str
    type: str | None  # the stack it breaks; None: the whole configuration (pam_start fails)
    fatal: bool  # the stack (or everything, when type is None) fails because of it
    path: str | None = None  # the missing file


@dataclass(frozen=True)
class PamService:
    name: str
    file: str | None  # the service's own file that wins, guest path; None: everything from `other`
    candidates: tuple[str, ...]  # where that file was looked for, in order
    shadowed: tuple[str, ...]  # same-name files later in the search that are NOT used
    other_file: str | None  # `other`'s file, if any
    from_other: tuple[str, ...]  # the types taken from `other`
    lines: tuple[PamLine, ...]  # the effective stacks, all types
    problems: tuple[PamProblem, ...]  # those that affect the effective stacks
    legacy: bool = False  # /etc/pam.conf (no pam.d directory)

    @property
    def fell_back(self) -> bool:
        return self.file is None

    @property
    def usable(self) -> bool:
        return self.file is not None or self.other_file is not None

    def stack(self, pam_type: str) -> tuple[PamLine, ...]:
        return tuple(line for line in self.lines if line.type == pam_type)

    def modules(self, pam_type: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.module_name for line in self.stack(pam_type)))

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file whose presence or content decides this service's stacks."""
        found = [*self.candidates, *self.shadowed]
        if self.from_other:
            found.extend(candidates(DEFAULT_SERVICE))
        found.extend(line.source.rsplit(":", 1)[0] for line in self.lines)
        found.extend(line.module_path for line in self.lines if line.module_path)
        found.extend(p.path for p in self.problems if p.path)
        return tuple(dict.fromkeys(found))


def candidates(name: str) -> tuple[str, ...]:
    return tuple(f"{directory}/{name}" for directory in CONFIG_DIRS)


@dataclass
class _Reader:
    fs: RootFS
    lines: list[PamLine] = field(default_factory=list)
    problems: list[PamProblem] = field(default_factory=list)
    unknown: bool = False  # a file it should read could not be read: its stacks are not known
    _modules: dict[str, str | None] = field(default_factory=dict)  # module as written -> where it is found
    _listed: dict[str, frozenset[str] | None] = field(default_factory=dict)  # module dir -> entries (None: all)

    @functools.cached_property
    def debian(self) -> bool:
        """Debian's libpam patch: include, substack and @include look only in /etc/pam.d (the distribution as
        units/distro.py tells it: os-release first)."""
        return distribution(self.fs).debian

    def is_file(self, path: str) -> bool:
        resolved = self.fs.chase(path)
        return resolved is not None and (resolved == "/dev/null" or not self.fs.is_dir(resolved))

    def find(self, name: str, etc_only: bool = False) -> str | None:
        if name.startswith("/"):
            return name if self.is_file(name) else None
        if "/" in name or name in ("", ".", ".."):
            return None
        return next((p for p in candidates(name)[: 1 if etc_only else None] if self.is_file(p)), None)

    def module_path(self, module: str) -> str | None:
        """Looked for once per module, and only in the directories that list it: a file of thousands of lines
        took 10 lookups a line."""
        if module.startswith("/"):
            return module if self.is_file(module) else None
        if module not in self._modules:
            self._modules[module] = next((f"{d}/{module}" for d in MODULE_DIRS if self._may_hold(d, module)
                                          and self.is_file(f"{d}/{module}")), None)
        return self._modules[module]

    def _may_hold(self, directory: str, module: str) -> bool:
        if "/" in module:
            return True
        if directory not in self._listed:
            names = self.fs.listdir(directory)
            self._listed[directory] = None if len(names) >= LISTDIR_LIMIT else frozenset(names)
        listed = self._listed[directory]
        return listed is None or module in listed

    def problem(self, kind: str, source: str, detail: str, pam_type: str | None, fatal: bool = True,
                path: str | None = None) -> None:
        self.problems.append(PamProblem(kind, source, detail, pam_type, fatal, path))

    def read(self, path: str, only_type: str | None, via: tuple[str, ...], text: str | None = None) -> None:
        if len(via) >= MAX_DEPTH or path in via:
            self.problem("include-loop", via[-1] if via else path, f"{path} includes itself (directly or not); "
                         "libpam gives up at depth 16", only_type, path=path)
            return
        if text is None:
            try:
                text = self.fs.read_bytes(path, 1024 * 1024).decode("utf-8", "replace")
            except OSError as exc:
                self.unknown = True
                self.problem("unreadable", f"{path}:1", f"cannot be read here ({exc.strerror or exc}): what it "
                             "stacks is unknown", only_type, fatal=False, path=path)
                return
        lines, dangling, crossed = logical_lines(text)
        for number, words in lines:
            self._line(path, number, words, only_type, via)
        for number in crossed:
            self.problem("bad-line", f"{path}:{number}", "a `\\` continuation runs across a blank or comment "
                         "line: libpam up to 1.5 joins across it, 1.6 and later end the line there", only_type,
                         fatal=False)
        if dangling is not None:
            self.problem("bad-line", f"{path}:{dangling}", "the file ends inside a `\\` continuation: libpam "
                         "refuses the whole configuration", None)

    def _line(self, path: str, number: int, words: list[str], only_type: str | None, via: tuple[str, ...]) -> None:
        source = f"{path}:{number}"
        odd = next((c for w in words for c in w if c.isspace() and c not in " \t"), None)
        if odd is not None:  # libpam splits on blanks and tabs only: a CR (CRLF file) or NBSP sticks to a word
            word = next(w for w in words if odd in w)
            what = ("a carriage return (a file with CRLF line ends?)" if odd == "\r" else
                    unicodedata.name(odd, f"U+{ord(odd):04X}"))
            self.problem("bad-line", source, f"{word!r} contains {what}: libpam does not treat it as a blank",
                         only_type or "auth",
                         fatal=len(words) < 2 or words[1].lower() not in ("optional", "sufficient"))
        if words[0].lower() == "@include" and self.debian:  # Debian's patch: every type, /etc/pam.d only
            if len(words) < 2:
                self.problem("bad-line", source, "@include without a file name", None)
                return
            self._include(words[1], only_type, source, (*via, path), etc_only=self.debian)
            return
        silent = words[0].startswith("-")
        pam_type = (words[0][1:] if silent else words[0]).lower()
        if pam_type not in TYPES:
            control = words[1].lower() if len(words) > 1 else ""
            self.problem("bad-line", source, f"unknown type {words[0]!r}: the line always fails",
                         only_type or "auth", fatal=control not in ("optional", "sufficient"))
            return
        if only_type is not None and pam_type != only_type:
            return
        if len(words) < 3:
            self.problem("bad-line", source, f"a control and a module are needed after {words[0]!r}", pam_type)
            return
        control, rest = words[1], words[2:]
        if control.lower() in ("include", "substack"):
            self._include(rest[0], pam_type, source, (*via, path), etc_only=self.debian)
            return
        if not control.startswith("[") and control.lower() not in CONTROLS:
            self.problem("bad-line", source, f"unknown control {control!r}: every result of {rest[0]} counts as "
                         "failure", pam_type)
        found = self.module_path(rest[0])
        line = PamLine(pam_type, control, rest[0], tuple(rest[1:]), source, silent, found, via)
        self.lines.append(line)
        if found is None:
            where = rest[0] if rest[0].startswith("/") else f"{MODULE_DIRS[0]}/{rest[0]}"
            fails = line.fails_when_missing
            name = rest[0] if rest[0].isprintable() else repr(rest[0])
            self.problem("missing-module", source, f"{name} is not installed ({control}: "
                         f"{'the stack fails' if fails else 'its result is ignored'})", pam_type, fatal=fails,
                         path=where)

    def _include(self, name: str, only_type: str | None, source: str, via: tuple[str, ...],
                 etc_only: bool = False) -> None:
        target = self.find(name, etc_only)
        if target is None:
            where = name if name.startswith("/") else " or ".join(candidates(name)[: 1 if etc_only else None])
            path = name if name.startswith("/") else candidates(name)[0]
            if only_type is None:
                self.problem("missing-include", source, f"@include {name}: no {where}; libpam refuses the whole "
                             "configuration", None, path=path)
            else:
                self.problem("missing-include", source, f"includes {name!r}, which is not there ({where}): the "
                             f"{only_type} stack fails", only_type, path=path)
            return
        self.read(target, only_type, via)


def logical_lines(text: str) -> tuple[list[tuple[int, list[str]]], int | None, list[int]]:
    """(first line number, words) of each non-empty logical line, `[...]` groups as single words; the line
    where the text ends inside a continuation (libpam then refuses the file), else None; and the blank or
    comment lines a continuation runs across.

    Lines end at "\\n" only. Inside a continuation, blank and comment lines are skipped as libpam 1.5.2 does
    (checked against the real one); 1.6.0 and later end the logical line there instead.
    """
    result: list[tuple[int, list[str]]] = []
    crossed: list[int] = []
    pending: list[str] | None = None  # the continued lines so far, joined once at the end (linear in the text)
    start = 0
    physical = text.split("\n")
    if physical[-1] == "":  # the newline that ends the last line starts no new one
        physical.pop()
    for number, raw in enumerate(physical, 1):
        if pending is not None and (not raw.strip(" \t") or raw.lstrip(" \t").startswith("#")):
            crossed.append(number)
            continue
        if pending is None:
            start = number
        line = raw.split("#", 1)[0]
        stripped = line.rstrip(" \t")
        if "#" not in raw and stripped.endswith("\\"):
            pending = pending or []
            pending += (stripped[:-1], " ")
            continue
        words = _split("".join(pending) + line if pending else line)
        pending = None
        if words:
            result.append((start, words))
    return result, (start if pending is not None else None), crossed


def _split(line: str) -> list[str]:
    """Words separated by blanks and tabs (only those, as libpam); a word starting with `[` runs to the first
    `]` not written `\\]`."""
    words: list[str] = []
    index = 0
    while index < len(line):
        if line[index] in " \t":
            index += 1
            continue
        if line[index] == "[":
            end = index + 1
            while end < len(line) and not (line[end] == "]" and line[end - 1] != "\\"):
                end += 1
            words.append(line[index:end + 1].replace("\\]", "]"))
            index = end + 1
            continue
        end = index
        while end < len(line) and line[end] not in " \t":
            end += 1
        words.append(line[index:end])
        index = end
    return words


def service_name(name: str) -> str:
    """As pam_start keeps it: lowercased, the part after the last `/`."""
    return name.rpartition("/")[2].lower()


def resolve(fs: RootFS, requested: str) -> PamService:
    """The PAM stacks libpam builds for service `requested` on this root."""
    name = service_name(requested)
    if not any(fs.is_dir(d) for d in CONFIG_DIRS) and fs.lstat(LEGACY_CONF) is not None:
        return _legacy(fs, name)
    own_reader, other_reader = _Reader(fs), _Reader(fs)
    own = [p for p in candidates(name) if own_reader.is_file(p)]
    file = own[0] if own else None
    other_file = other_reader.find(DEFAULT_SERVICE)
    if file is not None:
        own_reader.read(file, None, ())
    if other_file is not None and name != DEFAULT_SERVICE:
        other_reader.read(other_file, None, ())
    return _merge(name, file, candidates(name), tuple(own[1:]), other_file, own_reader, other_reader)


def _merge(name: str, file: str | None, searched: tuple[str, ...], shadowed: tuple[str, ...],
           other_file: str | None, own: _Reader, other: _Reader, legacy: bool = False) -> PamService:
    """Type by type: the service's own lines, else `other`'s (libpam's dispatch rule)."""
    def defined(reader: _Reader) -> set[str]:
        return {line.type for line in reader.lines} | {p.type for p in reader.problems if p.type}

    # a service file that could not be read here still wins in libpam: nothing is known to come from `other`
    from_other = () if own.unknown else tuple(t for t in TYPES if t not in defined(own) and t in defined(other))
    lines = [*own.lines, *(line for line in other.lines if line.type in from_other)]
    problems = [*own.problems, *(p for p in other.problems if p.type is None or p.type in from_other)]
    lines.sort(key=lambda line: TYPES.index(line.type))
    return PamService(name, file, searched, shadowed, other_file, from_other, tuple(lines), tuple(problems), legacy)


def _legacy(fs: RootFS, name: str) -> PamService:
    """/etc/pam.conf: `service type control module args`, matched case-insensitively."""
    entries, _, _ = logical_lines(fs.read_text(LEGACY_CONF) or "")
    readers = {}
    for service in (name, DEFAULT_SERVICE):
        kept = [""] * max((number for number, _ in entries), default=0)
        for number, words in entries:  # keep the selected lines at their own line numbers
            if words[0].lower() == service and len(words) > 1:
                kept[number - 1] = " ".join(words[1:])
        reader = _Reader(fs)
        reader.read(LEGACY_CONF, None, (), "\n".join(kept))
        readers[service] = reader
    has = {words[0].lower() for _, words in entries}
    return _merge(name, LEGACY_CONF if name in has else None, (LEGACY_CONF,), (),
                  LEGACY_CONF if DEFAULT_SERVICE in has else None, readers[name], readers[DEFAULT_SERVICE], True)
