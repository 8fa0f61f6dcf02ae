"""amavisd-new's configuration, read as amavisd reads it, for the one question that decides its network use
through SpamAssassin: does it load SpamAssassin at all, and with network tests?

Facts (amavisd-new 2.13.0, Debian 12's amavisd-new 1:2.13.0-3+deb12u1):
- config files (Amavis.pm l.7070-7078): every `-c FILE` of the command line, in order; else, in Debian's build,
  `Amavis::Util::find_config_files('/usr/share/amavis/conf.d', '/etc/amavis/conf.d')`: the output of `run-parts
  --list DIR` for each directory in turn (Util.pm l.1497-1504) — regular files (or links to them) whose names
  are only letters, digits, `_` and `-`, in name order, all of the first directory before the second; else
  upstream's /etc/amavisd.conf (openSUSE). Each file is Perl, run with `do FILE` in that order: a later
  assignment replaces an earlier one.
- SpamAssassin is loaded (l.7305-7316) unless `@spam_scanners` is empty or the first element of
  `@bypass_spam_checks_maps` is a true plain value — Debian's /usr/share/amavis/conf.d/20-package sets
  `@bypass_spam_checks_maps = (1)` ("DISABLE anti-spam code by default"), and its
  /etc/amavis/conf.d/15-content_filter_mode says to uncomment `@bypass_spam_checks_maps = (\\%bypass_spam_checks,
  \\@bypass_spam_checks_acl, \\$bypass_spam_checks_re);` to turn spam checks on. The built-in default (Conf.pm
  l.1519) is that list of references: spam checks on.
- `$sa_local_tests_only` true: SpamAssassin runs local tests only (no Razor, Pyzor, DCC).

Read statically: Perl comments, POD and `__END__` are skipped; statements are split at `;` (and after a block's
`}`) outside strings, quote-like operators and brackets. Only plain top-level assignments of literal values are
evaluated; any other use of these variables (inside a block, push, a variable on the right), and a call that
includes other config files (include_config_files(), read_config_file()), makes the answer unknown, and says
where.
"""

from __future__ import annotations

import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.model import FoundCommand

TOOLS = frozenset({"amavisd", "amavisd-new", "amavis"})
DEBIAN_DIRS = ("/usr/share/amavis/conf.d", "/etc/amavis/conf.d")
UPSTREAM_FILES = ("/etc/amavisd.conf", "/etc/amavis/amavisd.conf")
PROGRAM_FILES = ("/usr/share/perl5/Amavis.pm", "/usr/sbin/amavisd", "/usr/sbin/amavisd-new")
_FIND_CONFIG = re.compile(r"find_config_files\(\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\)")
_RUN_PARTS_NAME = re.compile(r"[A-Za-z0-9_-]+")  # run-parts(8) without --lsbsysinit/--regex
_WATCHED = {"bypass": "@bypass_spam_checks_maps", "scanners": "@spam_scanners", "local": "$sa_local_tests_only"}
_QUOTE_LIKE = re.compile(r"(?<![\w$@%&>-])(?:qq|qr|qw|q|m|s|tr|y)(?![\w])\s*([^\w\s,;=)}\]>])")
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
MAX_BYTES = 1024 * 1024
MAX_FILES = 256  # a tree that lists more config files is not read past that (a hostile guest's conf.d)


@dataclass(frozen=True)
class Setting:
    """One answer read from amavisd's configuration: true, false, or None when it cannot be read statically; where it
    was decided, and for None what could not be read."""

    value: bool | None  # None: not known statically
    where: str  # "file:line", or "amavisd default"
    why: str = ""  # for None: what could not be read


@dataclass(frozen=True)
class AmavisConfig:
    """What amavisd's configuration says about SpamAssassin: the files it reads, in order, whether amavisd loads
    SpamAssassin, and whether $sa_local_tests_only is set."""

    files: tuple[str, ...]
    spam_checks: Setting  # does amavisd load SpamAssassin
    local_only: Setting  # $sa_local_tests_only

    @property
    def network_tests(self) -> Setting:
        """Does SpamAssassin in amavisd run network tests (Razor, Pyzor, DCC)?"""
        if self.spam_checks.value is False:
            return self.spam_checks
        if self.local_only.value is True:
            return Setting(False, self.local_only.where)
        if self.spam_checks.value is None:
            return self.spam_checks
        if self.local_only.value is None:
            return self.local_only
        return Setting(True, self.spam_checks.where)


def config_files(fs: RootFS, command: FoundCommand) -> tuple[str, ...]:
    """The files amavisd reads, in order (see the module's facts)."""
    given: list[str] = []
    argv = command.argv
    for index, word in enumerate(argv[1:], 1):
        if word == "-c" and index + 1 < len(argv):
            given.append(argv[index + 1])
        elif word.startswith("-c") and len(word) > 2:
            given.append(word[2:])
    if given:
        return tuple(given[:MAX_FILES])
    directories = _compiled_in_dirs(fs, command.argv[0])
    if directories is None and any(fs.is_dir(d) for d in DEBIAN_DIRS):
        directories = DEBIAN_DIRS  # a Debian layout whose program is not in the tree
    if directories is not None:
        return tuple(path for directory in directories for path in run_parts_list(fs, directory))[:MAX_FILES]
    return (next((p for p in UPSTREAM_FILES if fs.read_text(p) is not None), UPSTREAM_FILES[0]),)


def _compiled_in_dirs(fs: RootFS, program: str) -> tuple[str, ...] | None:
    """The directories a Debian-built amavisd passes to find_config_files(), read from the tree's own code."""
    for path in (*PROGRAM_FILES, program) if program.startswith("/") else PROGRAM_FILES:
        try:
            text = fs.read_bytes(path, 16 * MAX_BYTES).decode("utf-8", "replace")
        except OSError:
            continue
        match = _FIND_CONFIG.search(text)
        if match:
            return tuple(re.findall(r"'([^']*)'", match.group(1)))
    return None


def run_parts_list(fs: RootFS, directory: str) -> list[str]:
    """`run-parts --list DIR` (debianutils): regular files and links to them with run-parts names, in order."""
    found = []
    for name in sorted(fs.listdir(directory), key=lambda n: n.encode("utf-8", "surrogateescape")):
        path = posixpath.join(directory, name)
        real = fs.chase(path)
        info = fs.lstat(real) if real else None
        if _RUN_PARTS_NAME.fullmatch(name) and info is not None and stat.S_ISREG(info.st_mode):
            found.append(path)
    return found


def read_config(fs: RootFS, command: FoundCommand) -> AmavisConfig:
    files = config_files(fs, command)
    found: dict[str, Setting] = {
        "bypass": Setting(False, "amavisd default"), "scanners": Setting(True, "amavisd default"),
        "local": Setting(False, "amavisd default")}
    for path in files:
        try:
            text = fs.read_bytes(path, MAX_BYTES).decode("utf-8", "replace")
        except OSError:
            continue  # amavisd dies on a config file it cannot read; that is not a network question
        for key, setting in _assignments(text, path):
            found[key] = setting
    bypass, scanners = found["bypass"], found["scanners"]
    if bypass.value is True:
        spam = Setting(False, bypass.where)
    elif scanners.value is False:
        spam = Setting(False, scanners.where)
    elif bypass.value is None:
        spam = bypass
    elif scanners.value is None:
        spam = scanners
    else:
        spam = Setting(True, bypass.where if bypass.where != "amavisd default" else scanners.where)
    return AmavisConfig(files, spam, found["local"])


# --- Perl, statically -----------------------------------------------------------------------------------------

_INCLUDE = re.compile(r"\b(?:include_config_files|include_optional_config_files|read_config_file)\s*\(")


def _assignments(text: str, path: str) -> Iterator[tuple[str, Setting]]:
    for line, statement in _statements(text):
        where = f"{path}:{line}"
        if _INCLUDE.search(statement):  # amavisd runs the named files there: not followed here
            for key in ("bypass", "local"):
                yield key, Setting(None, where, f"it includes other config files, not read here: {_short(statement)}")
            continue
        for key, variable in _WATCHED.items():
            if not re.search(re.escape(variable) + r"(?![\w\[{])", statement):
                continue
            match = re.fullmatch(re.escape(variable) + r"\s*=\s*(.*)", statement, re.S)
            if match is None:
                yield key, Setting(None, where, f"{variable} is used in a way not read statically: "
                                                f"{_short(statement)}")
                continue
            value = _evaluate(key, match.group(1).strip())
            yield key, Setting(value, where, "" if value is not None else
                               f"{variable} gets a value not known statically: {_short(match.group(1))}")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _evaluate(key: str, value: str) -> bool | None:
    """bypass: is the first element a true plain value; scanners: is SpamAssassin among them; local: truth."""
    if key == "local":
        return _truth(value)
    elements = _elements(value[1:-1] if value.startswith("(") and value.endswith(")") else value)
    if key == "scanners":
        if not elements:
            return False
        return True if any("Amavis::SpamControl::SpamAssassin" in e for e in elements) else None
    if not elements:
        return False
    first = elements[0]
    if first.startswith(("\\", "[", "{")) or re.match(r"(new_RE|read_hash|read_array|read_text)\s*\(", first):
        return False  # a reference: a lookup table, not the simple-minded "bypass everything"
    return _truth(first)


def _truth(value: str) -> bool | None:
    value = value.strip()
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", value):
        return float(value) != 0
    if value == "undef":
        return False
    quoted = re.fullmatch(r"'([^'\\]*)'|\"([^\"\\$@]*)\"", value)
    if quoted:
        text = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
        return text not in ("", "0")
    return None


def _elements(text: str) -> list[str]:
    """Top-level comma-separated elements of a Perl list (brackets and strings respected)."""
    elements, current, depth, index = [], "", 0, 0
    while index < len(text):
        char = text[index]
        if char in "'\"":
            end = _string_end(text, index, char)
            current += text[index:end]
            index = end
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char in ",=" and depth == 0 and (char == "," or text.startswith("=>", index)):
            elements.append(current.strip())
            current = ""
            index += 2 if char == "=" else 1
            continue
        current += char
        index += 1
    if current.strip():
        elements.append(current.strip())
    return [e for e in elements if e]


def _string_end(text: str, start: int, close: str) -> int:
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == close:
            return index + 1
        index += 1
    return len(text)


def _statements(text: str) -> list[tuple[int, str]]:
    """(line, statement) at the top level: comments, POD and strings handled; split at `;` and after a `}` that
    closes a top-level block."""
    kept: list[str] = []
    pod = False
    for line_text in text.split("\n"):
        if line_text.startswith(("__END__", "__DATA__")):
            break
        if re.match(r"=[a-zA-Z]", line_text):
            pod = not line_text.startswith("=cut")
            line_text = ""
        kept.append("" if pod else line_text)
    source = "\n".join(kept)
    statements: list[tuple[int, str]] = []
    current: list[str] = []
    first: int | None = None  # the line the current statement starts on
    depth = index = 0
    line = 1

    def add(chunk: str) -> None:
        nonlocal first
        if first is None and chunk.strip():
            first = line
        current.append(chunk)

    def emit() -> None:
        nonlocal first
        statement = "".join(current).strip()
        if statement:
            statements.append((first or line, statement))
        current.clear()
        first = None

    while index < len(source):
        char = source[index]
        quote = _QUOTE_LIKE.match(source, index) if char.isalpha() else None
        if char == "#" and not (index and source[index - 1] in "$\\"):
            end = source.find("\n", index)
            index = len(source) if end < 0 else end
            continue
        if char in "'\"`" or quote is not None:
            end = _string_end(source, index, char) if quote is None else _quote_like_end(source, quote)
            add(source[index:end])
            line += source.count("\n", index, end)
            index = end
            continue
        index += 1
        if char == ";" and depth == 0:
            emit()
            continue
        add(char)
        if char == "\n":
            line += 1
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
            if char == "}" and depth == 0 and not _continues(source, index):
                emit()
    emit()
    return statements


def _continues(source: str, index: int) -> bool:
    """After a top-level `}`: does the statement go on (`} ;`, `}->`, `} ,`, `}{…}`, `} = …`, `} else {`)?"""
    rest = source[index:].lstrip()
    return rest.startswith((";", ",", "->", "{", "[", "=", ")", "else", "elsif", "or", "and", "||", "&&"))


def _quote_like_end(source: str, match: re.Match[str]) -> int:
    """End of q{…}, qq(…), qr'…'i, s/…/…/, tr/…/…/ and the like (with their trailing modifiers)."""
    operator = source[match.start():match.start(1)].strip()
    opener = match.group(1)
    closer = _PAIRS.get(opener, opener)
    parts = 2 if operator in ("s", "tr", "y") else 1
    index = match.end()
    for part in range(parts):
        depth = 1
        while index < len(source) and depth:
            char = source[index]
            if char == "\\":
                index += 2
                continue
            if opener != closer and char == opener:
                depth += 1
            elif char == closer:
                depth -= 1
            index += 1
        if part + 1 < parts and opener != closer:  # s{…}{…}: the second part has its own brackets
            while index < len(source) and source[index].isspace():
                index += 1
            if index < len(source) and source[index] in _PAIRS:
                opener = source[index]
                closer = _PAIRS[opener]
                index += 1
    while index < len(source) and source[index].isalpha():
        index += 1  # modifiers: qr'…'i, s/…/…/g
    return index


def amavis_commands(commands: Sequence[FoundCommand]) -> list[FoundCommand]:
    return [c for c in commands if c.tool in TOOLS]
