"""Unit names: validity, templates and instances, escaping (systemd.unit(5), unit-name.c)."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

from mailpreflight.model.fastinit import fast_init

UNIT_NAME_MAX = 256
UNIT_TYPES = frozenset({
    "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope",
})
_VALID_CHARS = frozenset(string.ascii_letters + string.digits + ":-_.\\")
_VALID_INSTANCE_CHARS = _VALID_CHARS | {"@"}


@fast_init
@dataclass(frozen=True)
class UnitName:
    """A parsed, valid unit name: `prefix[@instance].type`; `instance` is "" for a template, None if plain."""

    name: str
    prefix: str
    instance: str | None
    type: str

    @property
    def is_template(self) -> bool:
        return self.instance == ""

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def template(self) -> str | None:
        return f"{self.prefix}@.{self.type}" if self.instance is not None else None

    def with_instance(self, instance: str) -> str:
        return f"{self.prefix}@{instance}.{self.type}"


@lru_cache(maxsize=16384)  # a pure function the loader asks about the same names many times; UnitName is frozen
def parse_unit_name(name: str) -> UnitName | None:
    """Split a unit name, or None if systemd would not accept it as one."""
    if not name or len(name) >= UNIT_NAME_MAX:
        return None
    stem, dot, unit_type = name.rpartition(".")
    if not dot or unit_type not in UNIT_TYPES or not stem:
        return None
    prefix, at, instance = stem.partition("@")
    if not prefix or not set(prefix) <= _VALID_CHARS:
        return None
    if not at:
        return UnitName(name, prefix, None, unit_type)
    if not set(instance) <= _VALID_INSTANCE_CHARS:
        return None
    return UnitName(name, prefix, instance, unit_type)


_VALID_NAME = re.compile(r"[A-Za-z0-9:\-_.\\]+(?:@[A-Za-z0-9:\-_.\\@]*)?\.(?:" + "|".join(sorted(UNIT_TYPES)) + ")")


def is_unit_name(name: str) -> bool:
    """parse_unit_name(name) is not None, without making (and remembering) the UnitName: the name map asks it of
    every entry of the search path, and `show` of one unit on a tree of 10,000 needs only a few of them parsed."""
    return 0 < len(name) < UNIT_NAME_MAX and _VALID_NAME.fullmatch(name) is not None


def instance_is_valid(instance: str) -> bool:
    return bool(instance) and len(instance) < UNIT_NAME_MAX and set(instance) <= _VALID_INSTANCE_CHARS


def path_escape(path: str) -> str:
    """unit_name_path_escape() / `systemd-escape --path`: "/" is "-", otherwise slashes are trimmed."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{path!r} is not a normalized path")
    return "-" if not parts else escape("/".join(parts))


def prefix_is_valid(prefix: str) -> bool:
    return bool(prefix) and len(prefix) < UNIT_NAME_MAX and set(prefix) <= _VALID_CHARS


def unescape(text: str) -> str:
    """unit_name_unescape(): `-` becomes `/`, `\\xNN` a byte. Raises ValueError on a bad escape."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "-":
            out += b"/"
        elif char == "\\":
            hexpart = text[i + 2:i + 4]
            valid = len(hexpart) == 2 and all(c in string.hexdigits for c in hexpart)
            if text[i + 1:i + 2] != "x" or not valid:
                raise ValueError(f"invalid escape in unit name part {text!r}")
            out.append(int(hexpart, 16))
            i += 3
        else:
            out += char.encode()
        i += 1
    return out.decode("utf-8", "surrogateescape")


def path_unescape(text: str) -> str:
    """unit_name_path_unescape(): the path an escaped name stands for ("-" is the root)."""
    if not text:
        raise ValueError("empty name cannot be a path")
    if text == "-":
        return "/"
    path = unescape(text)
    if path.startswith("/"):
        raise ValueError(f"{text!r} does not unescape to a normalized path")
    parts = path.split("/")
    if any(part in (".", "..") for part in parts) or "//" in path or path.endswith("/"):
        raise ValueError(f"{text!r} does not unescape to a normalized path")
    return path if path.startswith("/") else "/" + path


def escape(text: str) -> str:
    """unit_name_escape(): what `systemd-escape` prints."""
    out = []
    for index, char in enumerate(text):
        if char == "/":
            out.append("-")
        elif char in _VALID_CHARS - {"\\", "-"} and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


def _dash_prefix(prefix: str) -> str | None:
    """The next shorter dashed prefix: "a-b-c" -> "a-b-", "a-b-" -> "a-", "a-" -> None."""
    chopped = False
    while True:
        dash = prefix.rfind("-")
        if dash <= 0:
            return None
        if dash + 1 < len(prefix) or chopped:
            return prefix[:dash + 1]
        prefix = prefix[:dash]  # a trailing dash: drop it once and look further left
        chopped = True


def dropin_unit_names(name: str) -> list[str]:
    """Names whose `NAME.d` dirs apply to `name` within ONE search dir, in systemd's order.

    unit_file_find_dirs(): the name, then (for an instance) its template with the template's own
    expansion, then the dashed prefix (foo-bar-baz.service -> foo-bar-.service -> foo-.service),
    keeping the instance, expanded the same way. A template's prefix is built without `@`.
    """
    parsed = parse_unit_name(name)
    if parsed is None:
        return [name]
    names = [name]
    if parsed.is_instance and parsed.template:
        names += dropin_unit_names(parsed.template)
    prefix = _dash_prefix(parsed.prefix)
    if prefix is None or not prefix_is_valid(prefix):
        return names
    built = f"{prefix}@{parsed.instance}.{parsed.type}" if parsed.is_instance else f"{prefix}.{parsed.type}"
    return names + dropin_unit_names(built)
