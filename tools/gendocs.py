#!/usr/bin/env python3
"""Build time: print the man page (roff) or, with --completion, the bash completion script, both generated
from the command line's own argparse definitions (src/mailpreflight/render/manpage.py).

    .venv/bin/python tools/gendocs.py > docs/mailpreflight.1
    .venv/bin/python tools/gendocs.py --completion > contrib/bash-completion/mailpreflight
"""

from __future__ import annotations

import argparse
import sys

from mailpreflight.cli import build_parser
from mailpreflight.fix import guard
from mailpreflight.render.manpage import render_bash_completion, render_man


def main() -> int:
    parser = argparse.ArgumentParser(prog="tools/gendocs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--completion", action="store_true", help="print the bash completion script")
    args = parser.parse_args()
    cli = build_parser()
    own = {"guard": guard.build_parser()}  # parsed before argparse (cli.main): its own parser
    sys.stdout.write(render_bash_completion(cli, own) if args.completion else render_man(cli, own))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
