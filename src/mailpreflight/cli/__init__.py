"""The command line (docs/design.md, "Command line"): options.py builds the parser, verbs.py holds the verbs,
app.py runs one command line and maps its outcome to the exit code, env.py is what a verb may touch.

`mailpreflight guard` runs at every start of a guarded service: it is dispatched here, before anything else
of the command line is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from mailpreflight.cli.env import Environment


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """The exit code of one run."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["guard"]:  # hot path: no parser, no model, no other imports
        from mailpreflight.fix.guard import main as guard_main

        return guard_main(arguments[1:])  # guard's own exit protocol (docs/design.md, "Exit codes")
    from mailpreflight.cli.app import run

    return run(arguments, env)


def command() -> NoReturn:
    """`mailpreflight` as a program (the console script, `python -m mailpreflight`): main(), then the exit. When
    nothing is left for the interpreter's teardown to do — the output flushed, no exit handler registered, no thread
    but daemons — the process ends at once: freeing a run's objects one by one took `deps` over 10,000 units 28 ms
    (issue 14). Otherwise (a handler, e.g. coverage's; a profiler, tracer or debugger, which reports after the
    program, as `python -m cProfile -m mailpreflight`; a thread to join; output that cannot be flushed, as in
    `deps | head`) the interpreter ends it as it always did."""
    code = main()
    if _nothing_left(code):
        os._exit(code)
    raise SystemExit(code)


def _nothing_left(code: int) -> bool:
    import atexit

    handlers = getattr(atexit, "_ncallbacks", None)  # CPython's; without it, the usual exit
    threading = sys.modules.get("threading")
    if not isinstance(code, int) or handlers is None or handlers() or sys.flags.inspect or (
            sys.getprofile() is not None or sys.gettrace() is not None) or (
            threading is not None and any(not t.daemon for t in threading.enumerate()
                                          if t is not threading.main_thread())):
        return False  # an exit handler, a profiler or debugger that reports after main (python -m cProfile), a thread
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


def __getattr__(name: str) -> Any:
    """`cli.build_parser`, `cli.Environment`, `cli.VERBS` without importing them for guard."""
    if name == "build_parser":
        from mailpreflight.cli.options import build_parser

        return build_parser
    if name == "Environment":
        from mailpreflight.cli.env import Environment

        return Environment
    if name == "VERBS":
        from mailpreflight.cli.verbs import VERBS

        return VERBS
    raise AttributeError(name)
