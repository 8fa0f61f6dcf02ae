"""One run of the command line: parse, dispatch, and the one place that maps outcomes and errors to exit
codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a crash is UNKNOWN). See docs/design.md, "Command line"."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence

from mailpreflight.access.rootfs import RootFS
from mailpreflight.cli.env import Environment
from mailpreflight.cli.options import build_parser
from mailpreflight.cli.verbs import VERBS
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import Status


def run(arguments: Sequence[str], env: Environment | None = None) -> int:
    """The exit code of one run: the verb's Status, or UNKNOWN (3) for any error, a crash included."""
    env = env or Environment()
    parser = build_parser()
    try:
        args = parser.parse_args(list(arguments))
    except SystemExit as exc:  # argparse: usage errors are UNKNOWN, --help/--version are OK
        return Status.OK.exit_code if exc.code == 0 else Status.UNKNOWN.exit_code
    handler = VERBS.get(args.verb)
    if handler is None:  # `guard` only ever comes first, and is handled above
        env.say(f"`{args.verb}` must be the first word")
        return Status.UNKNOWN.exit_code
    try:
        with contextlib.ExitStack() as resources:  # what a verb opens for the run (a guest's disks) is closed here
            args.resources = resources
            resources.callback(_report_refused, args, env)
            return handler(args, env).exit_code
    except MailpreflightError as exc:
        env.say(str(exc))
    except ModuleNotFoundError as exc:  # a broken or partial installation: say what is missing
        env.say(f"the Python module {exc.name!r} is missing; reinstall with `pip install mailpreflight` "
                f"(and the `live` extra for explain)")
    except KeyboardInterrupt as exc:  # also SIGTERM/SIGHUP during --guest-firewall (firewall/sandbox.py)
        env.say(str(exc) or "interrupted")
    except BrokenPipeError:
        return Status.OK.exit_code
    except Exception as exc:  # a crash is UNKNOWN, never WARNING: one line, the traceback with --debug
        import traceback  # only for a crash

        if args.debug:
            traceback.print_exc(file=env.stderr)
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
        remote = getattr(exc, "mailpreflight_where", "")
        if remote:  # raised in a worker process of deps (cli/fanout.py): where it was raised there
            place = f" at {remote}"
        env.say(f"internal error{place}: {type(exc).__name__}: {exc} (run again with --debug for the traceback, "
                f"and report it)")
    return Status.UNKNOWN.exit_code


def _report_refused(args: argparse.Namespace, env: Environment) -> None:
    """Every guest file the read gate refused (a FIFO, a device, too big), once, wherever the verb reported it."""
    fs: RootFS | None = getattr(args, "rootfs", None)
    if fs is not None:
        for refusal in fs.refusals:
            env.say(f"warning: {fs.host(refusal.path)}: {refusal.reason}")
