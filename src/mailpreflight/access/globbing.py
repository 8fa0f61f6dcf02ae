"""glob(3)'s pattern rules, for `RootFS.glob` (which walks the root with them) and for callers that ask whether
a path is a pattern at all: one component's pattern as a regular expression, escapes, and the caps."""

from __future__ import annotations

import re
from dataclasses import dataclass

GLOB_DEPTH = 64  # path components of a pattern
GLOB_MATCHES = 1024  # paths one pattern expands to (and candidates kept at each level)
GLOB_STEPS = 20_000  # directory entries one pattern may look at: a directory of links to `.` stays cheap


@dataclass(frozen=True)
class GlobResult:
    """What `RootFS.glob` makes of one pattern: the matching guest paths, or no paths and a `problem` when it was not
    expanded (not an absolute path, or a cap reached)."""

    paths: tuple[str, ...]  # guest paths, sorted, as glob(3) would return them (links not resolved)
    problem: str | None = None  # why it was not expanded (not absolute, a cap reached): no paths then


def has_glob_magic(pattern: str) -> bool:
    """Whether glob(3) would expand the pattern: an unescaped `*`, `?` or `[`."""
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "*?[":
            return True
    return False


def glob_unescape(part: str) -> str:
    return re.sub(r"\\(.)", r"\1", part)


def glob_regex(part: str) -> re.Pattern[str] | None:
    """fnmatch(3) of one component (FNM_PERIOD aside) as a regex; None when it has nothing to expand."""
    if not has_glob_magic(part):
        return None
    out: list[str] = []
    index = 0
    while index < len(part):
        char = part[index]
        index += 1
        if char == "\\" and index < len(part):
            out.append(re.escape(part[index]))
            index += 1
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            close = index + (1 if part[index:index + 1] in ("!", "^") else 0)
            close = part.find("]", close + 1)  # a `]` right after `[` or `[!` is a member
            if close < 0:
                out.append(re.escape(char))
                continue
            body = part[index:close]
            negate = body[:1] in ("!", "^")
            members = body[1:] if negate else body
            escaped = "".join("\\" + c if c in "\\^[]" else c for c in members)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            index = close + 1
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)
