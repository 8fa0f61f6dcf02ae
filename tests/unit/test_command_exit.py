"""`mailpreflight` as a program (cli.command()): the process ends with main()'s exit code and all of its output,
at once when nothing is left for the interpreter's teardown, and the usual way when something is: an exit handler
(coverage's, logging's), a thread that is not a daemon, output that cannot be flushed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# main() replaced by what each case needs; command() itself is the one the console script and -m run
PROGRAM = """
import sys
import mailpreflight.cli as cli
{setup}
def main():
    sys.stdout.write("x" * {size} + "\\n")  # buffered: command() flushes it before it ends the process
    return {code}
cli.main = main
cli.command()
raise AssertionError("command() returned")
"""
BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as an admin runs it


def _run(setup: str = "", code: int = 2, **kwargs: object) -> subprocess.CompletedProcess[str]:
    program = PROGRAM.format(setup=setup, code=code, size=100000)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=BUFFERED,
                          **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.mark.parametrize("code", [0, 1, 2, 3])
def test_the_exit_code_and_all_of_the_output(code: int) -> None:
    done = _run(code=code)
    assert done.returncode == code and done.stdout == "x" * 100000 + "\n" and done.stderr == ""


def test_the_interpreters_teardown_is_skipped_when_nothing_needs_it() -> None:
    """What only the teardown would do (an object's __del__ when the modules are cleared) does not happen: the fast
    way was taken. With an exit handler registered, it was not, and the teardown runs."""
    canary = ("import os\nclass Canary:\n    def __del__(self):\n        os.write(2, b'teardown ran\\n')\n"
              "cli.canary = Canary()")
    assert _run(canary).stderr == ""
    assert _run(canary + "\nimport atexit\natexit.register(lambda: None)").stderr == "teardown ran\n"


def test_a_profiler_still_reports() -> None:
    """`python -m cProfile -m mailpreflight ...` prints its figures after the program: not ended before that."""
    done = subprocess.run([sys.executable, "-m", "cProfile", "-m", "mailpreflight", "--version"], capture_output=True,
                          text=True, timeout=60, env=BUFFERED)
    assert done.returncode == 0 and "function calls" in done.stdout, done.stdout[-500:]


def test_an_exit_handler_still_runs() -> None:
    done = _run("import atexit\natexit.register(lambda: print('handler ran', file=sys.stderr))")
    assert done.returncode == 2 and done.stderr == "handler ran\n" and len(done.stdout) == 100001


def test_a_thread_that_is_not_a_daemon_is_still_waited_for() -> None:
    setup = ("import threading, time\n"
             "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', file=sys.stderr))).start()")
    done = _run(setup)
    assert done.returncode == 2 and done.stderr == "thread done\n"


def test_a_daemon_thread_does_not_keep_it() -> None:
    setup = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()"
    done = _run(setup)
    assert done.returncode == 2 and done.stdout.endswith("x\n")


def test_output_to_a_closed_pipe_ends_as_it_always_did(tmp_path: Path) -> None:
    """`mailpreflight deps | head -c 1`: the flush fails, and the interpreter's exit says so as before the change
    (Python's own status 120 after 'Exception ignored', when main() itself did not meet the closed pipe)."""
    program = PROGRAM.format(setup="", code=0, size=1000)  # less than the buffer: written at the flush
    with subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=BUFFERED) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before anything is read: the flush meets a closed pipe
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 120, err
    assert "BrokenPipeError" in err


def test_python_m_mailpreflight_ends_through_command() -> None:
    done = subprocess.run([sys.executable, "-m", "mailpreflight", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("mailpreflight ")
