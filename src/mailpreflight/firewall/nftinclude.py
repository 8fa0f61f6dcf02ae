"""A guest's nftables ruleset with its `include`s resolved INSIDE the guest and inlined, so that nft never
opens a file of its own: `nft -f` reads includes itself, from the host's file system, and prints the lines
it cannot parse — a guest's `include "/etc/shadow"` would show the host's. What nft is fed has no include
left (checked again after inlining); every inlined line keeps where it came from, for error messages.

Deliberate copy of nftables' include rules (src/scanner.l, 1.0.x): the keyword is `include` followed by a
quoted string (no escapes; it may span lines); `#` outside a quoted string comments out the rest of the line;
`\\` + newline is a line continuation; a path starting with `/`, `./` or `../` is used as is (relative ones
from nft's working directory, `/` for nftables.service), any other is searched in the include path (`/etc`);
a path with `*`, `?` or `[` is a glob (no match is fine, a missing plain path is an error); directories are
skipped; at most 16 levels deep.
"""

from __future__ import annotations

import posixpath
import re
import stat
from dataclasses import dataclass, field

from mailpreflight.access.rootfs import DEV_NULL, RootFS
from mailpreflight.errors import MailpreflightError

INCLUDE_PATH = "/etc"  # nft's default -I (sysconfdir)
WORKING_DIRECTORY = "/"  # nftables.service has no WorkingDirectory=
MAX_DEPTH = 16  # MAX_INCLUDE_DEPTH in nftables
MAX_FILES = 256
MAX_BYTES = 4 * 1024 * 1024

# What nft's scanner skips as a whole (a quoted string, a comment) or reads as one word; `include` counts only
# as a word of its own: "xinclude", "include_x", "include*" are other tokens.
_SCAN = re.compile(r'"[^"]*"|#[^\n]*|include(?![A-Za-z0-9/_.\-*\\])')
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-")
_AFTER_KEYWORD = re.compile(r'(?:[ \t]|\\\n)*("[^"]*")')


@dataclass
class Inlined:
    """The ruleset as one text, and for each of its lines the guest file and line it came from."""

    parts: list[str] = field(default_factory=list)  # joined once (appending to one str is quadratic)
    size: int = 0
    origins: list[tuple[str, int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    _pending: bool = True  # the current line has no origin yet

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str, path: str, line: int) -> None:
        """Append `text`, which starts at `line` of the guest file `path`."""
        for n, piece in enumerate(text.split("\n")):
            if n:
                if self._pending:  # an empty line
                    self.origins.append((path, line + n - 1))
                self._pending = True
            if piece and self._pending:
                self.origins.append((path, line + n))
                self._pending = False
        self.parts.append(text)
        self.size += len(text)
        if self.size > MAX_BYTES:
            raise MailpreflightError(f"the ruleset with its includes is larger than {MAX_BYTES} bytes",
                                     file=path, line=line)

    def where(self, line: int) -> tuple[str, int]:
        """The guest file and line of line `line` (1-based) of the inlined text."""
        if 1 <= line <= len(self.origins):
            return self.origins[line - 1]
        return self.origins[-1] if self.origins else ("?", 0)


def include_keywords(text: str) -> list[int]:
    """Offsets of every `include` nft's scanner could read as the keyword (outside strings and comments).
    Conservative: a word that merely ends in "include" counts unless it is plainly one longer word."""
    found = []
    for match in _SCAN.finditer(text):
        if match.group(0) != "include":
            continue
        start = match.start()  # the word before it, looked for backwards: a search from 0 was quadratic
        while start and text[start - 1] in _WORD_CHARS:
            start -= 1
        word = text[start:match.start()]
        if word and re.match(r"[A-Za-z_.]", word) and (start == 0 or text[start - 1] != ":"):
            continue  # the tail of one longer word (a name like "noinclude")
        found.append(match.start())
    return found


def inline(fs: RootFS, path: str) -> Inlined:
    """The guest file `path` with every include replaced by the guest's files. Raises MailpreflightError
    (file:line) for an include nft would fail on, or one that cannot be resolved inside the guest."""
    result = Inlined()
    _inline_file(fs, path, result, depth=1, origin=None)
    left = include_keywords(result.text)
    if left:  # cannot happen: every include was replaced; never hand nft a ruleset that still has one
        raise MailpreflightError("an include is left after inlining: refused", file=path,
                                 line=result.where(result.text.count("\n", 0, left[0]) + 1)[1])
    return result


def _inline_file(fs: RootFS, path: str, out: Inlined, depth: int, origin: tuple[str, int] | None) -> None:
    if depth > MAX_DEPTH:
        assert origin is not None
        raise MailpreflightError(f"includes nested more than {MAX_DEPTH} deep (nft refuses this too)",
                                 file=origin[0], line=origin[1])
    if len(out.files) >= MAX_FILES:
        assert origin is not None
        raise MailpreflightError(f"more than {MAX_FILES} included files", file=origin[0], line=origin[1])
    text = _read(fs, path, origin)
    out.files.append(path)
    position, line = 0, 1
    for offset in include_keywords(text):
        if offset < position:
            continue
        out.add(text[position:offset], path, line)
        line += text.count("\n", position, offset)
        quoted = _AFTER_KEYWORD.match(text, offset + len("include"))
        if quoted is None:
            raise MailpreflightError("`include` without a quoted file name after it: refused (nft would fail, "
                                     "or read a file mailpreflight did not check)", file=path, line=line)
        out.add("\n", path, line)
        for included in _resolve(fs, quoted.group(1)[1:-1], (path, line)):
            _inline_file(fs, included, out, depth + 1, (path, line))
            out.add("\n", path, line)
        line += text.count("\n", offset, quoted.end())
        position = quoted.end()
    out.add(text[position:], path, line)


def _read(fs: RootFS, path: str, origin: tuple[str, int] | None) -> str:
    where = {"file": origin[0], "line": origin[1]} if origin else {"file": path}
    try:
        data = fs.read_bytes(path, MAX_BYTES)
    except OSError as exc:
        raise MailpreflightError(f"cannot read {path} in the guest: {exc.strerror or exc}", **where) from exc
    return data.decode("utf-8", "replace")


def _resolve(fs: RootFS, name: str, origin: tuple[str, int]) -> list[str]:
    """The guest files an include names, in nft's order; directories skipped."""
    if name.startswith("/"):
        pattern = name
    elif name.startswith(("./", "../")):
        pattern = posixpath.join(WORKING_DIRECTORY, name)
    else:
        pattern = posixpath.join(INCLUDE_PATH, name)
    wildcard = any(c in name for c in "*?[")
    matches = [pattern]
    if wildcard:  # glob(3) inside the guest (RootFS.glob), capped in matches and work (a directory of links to `.`)
        expanded = fs.glob(pattern, matches=MAX_FILES)
        if expanded.problem:
            raise MailpreflightError(f'include "{name}": {expanded.problem}', file=origin[0], line=origin[1])
        matches = list(expanded.paths)
    files = []
    for match in matches:
        resolved = fs.chase(match)
        if resolved == DEV_NULL:
            continue  # empty
        info = fs.lstat(resolved) if resolved else None
        if info is None:
            if wildcard:
                continue
            raise MailpreflightError(f'include "{name}": {pattern} does not exist in the guest (nft would fail: '
                                     f'"File not found")', file=origin[0], line=origin[1])
        if stat.S_ISDIR(info.st_mode):
            continue  # nft skips directories
        if not stat.S_ISREG(info.st_mode):
            raise MailpreflightError(f'include "{name}": {match} is not a regular file in the guest: refused',
                                     file=origin[0], line=origin[1])
        files.append(match)
    return files
