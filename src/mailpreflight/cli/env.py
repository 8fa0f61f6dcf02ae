"""What a verb may touch of the world it runs in (docs/design.md, "Command line")."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from mailpreflight.render.escape import clean


@dataclass
class Environment:
    """What a verb may touch of the world it runs in (httpie's Environment): streams, whether stdout is a
    terminal, the clock and the process environment. Tests pass their own and run verbs in-process."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdout_isatty: bool | None = None  # None: ask stdout
    clock: Callable[[], float] = time.monotonic
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def colour(self) -> bool:
        if self.stdout_isatty is not None:
            return self.stdout_isatty
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty())

    def out(self, text: str = "", end: str = "\n", painted: bool = False) -> None:
        """Print output; control characters are escaped (`painted`: the renderer escaped its own text and added
        colour sequences of its own)."""
        self.stdout.write((text if painted else clean(text)) + end)

    def say(self, message: str) -> None:
        """One line on stderr, as the tool speaks to the admin."""
        self.stderr.write(f"mailpreflight: {clean(message)}\n")
