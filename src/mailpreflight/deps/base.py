"""The interface every dependency rule implements, and what a rule may look at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailpreflight.access.rootfs import RootFS
from mailpreflight.model import Dependency, FoundCommand, Role
from mailpreflight.units.unit import Unit, service_type

# The PATH systemd gives services when the unit sets none.
SYSTEMD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
START_KEYS = frozenset({"ExecCondition", "ExecStartPre", "ExecStartPost"})


def command_role(command: FoundCommand, unit: Unit) -> Role:
    """start: systemd waits for the command before the unit is up (ExecCondition, ExecStartPre,
    ExecStartPost, a Type=oneshot ExecStart); runtime: it runs while the unit is active."""
    if command.key in START_KEYS or (command.key == "ExecStart" and service_type(unit).name == "oneshot"):
        return Role.START
    return Role.RUNTIME


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read: the loaded unit and the tree it lives in (never the network)."""

    unit: Unit
    fs: RootFS


class CommandRule(Protocol):
    """Turns one command the unit runs into dependencies (role start for ExecStartPre/ExecCondition/
    one-shot work, runtime for what a daemon needs while it runs)."""

    tools: frozenset[str]  # program base names handled, e.g. {"sa-update"}

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]: ...


class UnitRule(Protocol):
    """Dependencies a unit has because of what it IS (e.g. spamd loading the Razor2 plugin), not because
    of one command line."""

    def dependencies(self, commands: list[FoundCommand], context: RuleContext) -> list[Dependency]: ...
