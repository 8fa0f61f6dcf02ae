"""The interface every dependency rule implements, and what a rule may look at."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mailpreflight.access.rootfs import DEV_NULL, RootFS
from mailpreflight.model import Dependency, FoundCommand, Role
from mailpreflight.model.fastinit import fast_init
from mailpreflight.units.unit import Unit, service_type, service_user

# The PATH systemd gives services when the unit sets none.
SYSTEMD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
START_KEYS = frozenset({"ExecCondition", "ExecStartPre", "ExecStartPost"})


_NOT_KEPT = object()  # remembered(): not in the cache (a miss is common: no KeyError raised for it)
KEPT = 64  # results a bounded cache of the analysis remembers (remembered(), kept())
_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")


def remembered(cache: dict[_K, _T], key: _K, compute: Callable[[], _T], most: int = KEPT) -> _T:
    """cache[key], computed on first use; at most `most` entries, the oldest dropped first: what a fleet's units
    share is worked out once (issue 14), and a hostile tree of thousands of distinct units costs no memory."""
    value = cache.get(key, _NOT_KEPT)
    if value is not _NOT_KEPT:
        return value  # type: ignore[return-value]
    value = compute()
    if len(cache) >= most:
        del cache[next(iter(cache))]
    cache[key] = value
    return value


def by_identity(cache: dict[int, tuple[object, _T]], of: object, compute: Callable[[], _T], most: int = KEPT) -> _T:
    """remembered() for a result that depends on one object a fleet's units share (a tuple the analysis
    remembered), looked up by its identity: its fields are not hashed again for each unit. Each entry holds the
    object, so no other object can take its id meanwhile."""
    found = cache.get(id(of))
    if found is not None and found[0] is of:
        return found[1]
    value = compute()
    if len(cache) >= most:
        del cache[next(iter(cache))]
    cache[id(of)] = (of, value)
    return value


def kept(fs: RootFS, kind: str, key: Hashable, compute: Callable[[], _T]) -> _T:
    """remembered() in fs.memo(), for a result that depends on a unit's command line or settings and on the tree:
    per RootFS (fs.forget() drops them too), at most KEPT per `kind` (the name of the function computing them)."""
    cache: dict[Hashable, _T] = fs.memo((kind,), dict)
    return remembered(cache, key, compute)


def chased(fs: RootFS, path: str) -> str | None:
    """fs.chase(path), remembered a while: the programs of a unit's Exec lines are looked up by discover() and
    again by startup_facts(), and a fleet's units run the same few."""
    return kept(fs, "chased", path, lambda: _chase(fs, path))


def _chase(fs: RootFS, path: str) -> str | None:
    """fs.chase(path), with its directory's answer remembered too: in a directory that is not there, no name is
    (a fleet's units each run their own program, often from the same missing /usr/sbin of an offline root)."""
    parent, _, base = path.rpartition("/")
    if parent and base and path != DEV_NULL and path.startswith("/") and "/." not in path and "//" not in path and (
            kept(fs, "chased_dir", parent, lambda: fs.chase(parent)) is None):
        return None
    return fs.chase(path)


_UNEXPANDED = re.compile(r"\$(?:[A-Za-z_{(]|[0-9@*#?$!-])|`")


def unexpanded(text: str) -> bool:
    """Does the text still hold a shell/systemd variable or command substitution nobody could expand here
    (`$http_proxy`, `${X}`, `$(…)`, `…`)? Such a value is never an endpoint: its real value is not known."""
    return bool(_UNEXPANDED.search(text))


def command_role(command: FoundCommand, service_type: str) -> Role:
    """start: systemd waits for the command before the unit is up (ExecCondition, ExecStartPre,
    ExecStartPost, a Type=oneshot ExecStart); runtime: it runs while the unit is active."""
    if command.key in START_KEYS or (command.key == "ExecStart" and service_type == "oneshot"):
        return Role.START
    return Role.RUNTIME


@fast_init
@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read: the tree the unit lives in and the two settings of the unit rules look at
    (never the network). `guard` runs one command without knowing its unit: it has the tree only."""

    fs: RootFS
    service_type: str = ""  # units.unit.service_type(); "" when not known
    user: str | None = None  # the unit's User=, for commands that do not say whom they run as

    @classmethod
    def of(cls, unit: Unit, fs: RootFS) -> RuleContext:
        return cls(fs, service_type(unit).name, service_user(unit))

    def role(self, command: FoundCommand) -> Role:
        return command_role(command, self.service_type)

    def user_of(self, command: FoundCommand) -> str | None:
        """Whom the command runs as: its own user (sudo, runuser, User= passed down), else the unit's."""
        return command.user or self.user


class CommandRule(Protocol):
    """Turns one command the unit runs into dependencies (role start for ExecStartPre/ExecCondition/
    one-shot work, runtime for what a daemon needs while it runs)."""

    tools: frozenset[str]  # program base names handled, e.g. {"sa-update"}

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]: ...


class UnitRule(Protocol):
    """Dependencies a unit has because of what it IS (e.g. spamd loading the Razor2 plugin), not because
    of one command line."""

    def dependencies(self, commands: list[FoundCommand], context: RuleContext) -> list[Dependency]: ...
