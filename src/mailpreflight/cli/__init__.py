"""The command line (docs/design.md, "Command line"): options.py builds the parser, verbs.py holds the verbs,
app.py runs one command line and maps its outcome to the exit code, env.py is what a verb may touch.

`mailpreflight guard` runs at every start of a guarded service: it is dispatched here, before anything else
of the command line is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
