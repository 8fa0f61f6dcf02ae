"""Continuation lines are joined once, not copied again for each line: a PAM file of one logical line over
1 MiB of continued lines took 6 s (quadratic), postfix main.cf's continued values 0.5 s; both now take well
under a second for a file as big as the read gate lets through (read_text: 1 MiB), with the same reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from mailpreflight.auth import pam
from mailpreflight.deps.postfix import read_main_cf

MIB = 1024 * 1024
T = TypeVar("T")


def _timed(function: Callable[[str], T], text: str) -> tuple[T, float]:
    started = time.process_time()
    result = function(text)
    return result, time.process_time() - started


def test_pam_continuations_are_linear_and_read_as_libpam() -> None:
    assert pam.logical_lines("auth required \\\n# c\n\n  pam_unix.so \\\n try_first_pass\nb") == (
        [(1, ["auth", "required", "pam_unix.so", "try_first_pass"]), (6, ["b"])], None, [2, 3])
    assert pam.logical_lines("auth \\\n [a b\\\n c] \\") == ([], 1, [])  # ends inside the continuation
    assert pam.logical_lines("auth \\\n [a b\\\n c] x\n") == ([(1, ["auth", "[a b  c]", "x"])], None, [])
    text = "auth required pam_unix.so \\\n" + "  arg\\\n" * (MIB // 7) + "last\n"
    (lines, unfinished, crossed), elapsed = _timed(pam.logical_lines, text)
    assert elapsed < 2.0, f"{elapsed:.2f} s"  # 0.17 s here; 6 s before
    assert len(lines) == 1 and len(lines[0][1]) == 3 + MIB // 7 + 1 and unfinished is None and crossed == []


def test_main_cf_continuations_are_linear_and_read_as_postfix() -> None:
    assert read_main_cf("a = 1\n  2\n\n#x\n b\nc=\n  d\na=\n x\nbad line\n  y\n") == {"a": ("x", 8), "c": ("d", 6)}
    assert read_main_cf("e =\t\n\t f  g \n") == {"e": ("f  g", 1)}
    text = "smtpd_recipient_restrictions =\n" + "  permit_mynetworks,\n" * (MIB // 21)
    settings, elapsed = _timed(read_main_cf, text)
    assert elapsed < 1.0, f"{elapsed:.2f} s"  # 0.01 s here; 0.55 s before
    value, line = settings["smtpd_recipient_restrictions"]
    assert line == 1 and value == " ".join(["permit_mynetworks,"] * (MIB // 21))
