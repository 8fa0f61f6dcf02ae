"""Control characters never reach the terminal raw (docs/design.md, "Hostile input"): guest files, unit
names, server answers may hold ESC sequences that retitle, clear or rewrite an admin's terminal. Like
systemd's cescape(), a control character is shown as a C escape; newline and tab stay as they are.

DEL, the C1 controls and lone surrogates (the bytes of a guest file name or text that were not UTF-8) are
written `\\uXXXX`: a terminal does not act on that, the output stays encodable as UTF-8, and the escape means the same
character in JSON, so JSON output passed through clean() stays the same, valid JSON."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, the C1 controls (U+0080..U+009F: CSI, OSC... in 8-bit form) and lone
# surrogates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\ud800-\udfff]")
_PLAIN = bytes(range(0x20, 0x7f)) + b"\n\t"  # what _CONTROL leaves alone of ASCII
_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b", "\x07": "\\a"}


def _one(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if char < " " else f"\\u{ord(char):04x}")


def clean(text: str) -> str:
    """`text` with every control character (but newline and tab) written as a C escape. Idempotent."""
    # ASCII text of printable characters, newlines and tabs only (nearly all output, JSON above all: its encoder
    # escapes the C0 controls) stays as it is: nothing is left once bytes.translate() deletes those, which is
    # several times faster than the regular expression over the megabytes `deps` writes for a fleet (issue 14)
    if text.isascii() and not text.encode("ascii").translate(None, _PLAIN):
        return text
    return _CONTROL.sub(_one, text)


def clean_json(text: str) -> str:
    """clean() of text json's encoder made: it writes every C0 control as an escape itself, so ASCII text without
    DEL (nearly all of it) is clean as it is, found without clean()'s copy of the text."""
    if text.isascii() and "\x7f" not in text:
        return text
    return clean(text)
