"""`mailpreflight guard`'s command line: parsed by the guard itself (fix/guard.py) at every start it guards,
and read by the analysis (deps/discover.py) to know how long the command it wraps can run and whether its
failure is tolerated: one parser, so that both read `--timeout 1e3`, an abbreviated `--time`, `--grace 0` the
same way, and a line the guard refuses (`--timeout 30s`) is one the analysis does not unwrap either.
Standard library only: the guard's start path imports it."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, NoReturn

# Statuses that mean success besides 0. sa-update exits 1 when there are no new rules (sa-update.raw
# l.1257-1271): that is an ordinary day, not a failure.
DEFAULT_OK: Mapping[str, frozenset[int]] = {"sa-update": frozenset({0, 1})}
DIAGNOSE_BUDGET = 3.0  # seconds the guard probes after a failure, by default (--diagnose-budget)


class Options(NamedTuple):
    timeout: float
    grace: float
    ok_status: frozenset[int] | None
    strict: bool
    diagnose_budget: float
    command: list[str]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _seconds(minimum_exclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)  # ValueError -> argparse's "invalid value"
        if not math.isfinite(value) or value < 0 or (minimum_exclusive and value == 0):
            raise argparse.ArgumentTypeError(f"{'positive' if minimum_exclusive else 'non-negative'} seconds expected")
        return value
    return parse


def _statuses(text: str) -> frozenset[int]:
    try:
        found = frozenset(int(word) for word in text.split(",") if word.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of exit statuses: {text!r}") from None
    if not found or any(not 0 <= status <= 255 for status in found):
        raise argparse.ArgumentTypeError(f"exit statuses are 0-255: {text!r}")
    return found


def build_parser() -> argparse.ArgumentParser:
    """guard's options, for parse_args and for the man page and completion (render/manpage.py). Its errors raise
    UsageError."""
    parser = _Parser(prog="mailpreflight guard", usage="%(prog)s [OPTIONS] -- COMMAND [ARG...]",
                     description="Run COMMAND so that it can neither fail nor hang a unit's start.")
    parser.add_argument("--timeout", type=_seconds(True), default=60.0, metavar="S",
                        help="SIGTERM the command's process group after S seconds (default 60)")
    parser.add_argument("--grace", type=_seconds(False), default=5.0, metavar="S",
                        help="then SIGKILL it after S more seconds (default 5)")
    parser.add_argument("--ok-status", type=_statuses, metavar="N,...",
                        help="exit statuses that also count as success besides 0 (default for sa-update: 1)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with the command's status (124 on timeout) instead of always 0")
    parser.add_argument("--diagnose-budget", type=_seconds(False), default=DIAGNOSE_BUDGET, metavar="S",
                        help="seconds to probe the command's endpoints after a failure (default 3; 0: never)")
    return parser


def parse_args(argv: Sequence[str]) -> Options:
    """`[--timeout S] [--grace S] [--ok-status N,...] [--strict] [--diagnose-budget S] -- COMMAND [ARG...]`.

    Split at the first `--` ourselves: everything after it is the command, untouched (argparse's handling of
    `--` and REMAINDER differs between Python versions). Raises UsageError; SystemExit(0) for --help."""
    parser = build_parser()
    if "--" not in argv:
        if any(word in ("-h", "--help") for word in argv):
            parser.parse_args(["--help"])
        raise UsageError("expected -- COMMAND [ARG...]")
    split = list(argv).index("--")
    args = parser.parse_args(list(argv[:split]))
    command = list(argv[split + 1:])
    if not command:
        raise UsageError("no COMMAND after --")
    return Options(args.timeout, args.grace, args.ok_status, args.strict, args.diagnose_budget, command)


def ok_statuses(argv0: str, given: frozenset[int] | None) -> frozenset[int]:
    if given is not None:
        return given | {0}
    return DEFAULT_OK.get(os.path.basename(argv0), frozenset({0}))
