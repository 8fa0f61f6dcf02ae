"""What a drop-in written into a guest (`--root`, `--image`, `--domain`) may call: only programs the guest has.

The host's path to mailpreflight means nothing inside a guest: at boot, systemd 252 logs "Executable ...
missing, skipping" for the `-`-prefixed guard line and records exit 0 — sa-update silently never runs again
(a booted Debian 12 guest showed it; /work/shared/reference/VM-LAB.md). So, in this order:

1. the guest's own mailpreflight (/usr/bin, /usr/sbin, /usr/local/bin): the full guard, with its diagnosis;
2. else coreutils' timeout(1), under the guest's /bin/sh, and the guest's logger(1) for the warning line:
   `-/bin/sh -c 'timeout --kill-after=5 S "$@" || { ...; printf ... | logger --journald || logger -p ...; }' sh
   ARGV`. logger talks to journald's sockets, which also works for units with StandardError=null, as Debian's
   spamd.service has; `--journald` adds OBJECT_SYSTEMD_UNIT=, without which a booted guest's journal lost the
   line's unit (a syslog line from a process gone before journald reads it carries none);
3. else plain `-/usr/bin/timeout --kill-after=5 S ARGV`: bounded and tolerated, without the warning line.

Each form keeps the warn-instead-of-fail behaviour; only the first adds the diagnosis.
"""

from __future__ import annotations

import posixpath
import re
import stat
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.errors import MailpreflightError

GUEST_PROGRAMS = ("/usr/bin/mailpreflight", "/usr/sbin/mailpreflight", "/usr/local/bin/mailpreflight")
TIMEOUTS = ("/usr/bin/timeout", "/bin/timeout")
SHELLS = ("/bin/sh", "/usr/bin/sh")
LOGGERS = ("/usr/bin/logger", "/bin/logger")
KILL_AFTER = 5.0
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}")  # systemd's unit-name characters: no quote


@dataclass(frozen=True)
class Wrapper:
    """How guarded commands are wrapped, and why this form (said to the admin)."""

    form: str  # "guard" | "timeout+logger" | "timeout"
    program: str  # the guard program, or timeout(1)
    shell: str | None = None
    logger: str | None = None
    why: str = ""

    def argv(self, original: list[str], timeout: float, name: str, unit: str) -> list[str]:
        """The wrapped command's words (the `-` prefix is added by the caller). `name` and `unit` go into a
        shell script: only characters that are inert there are kept."""
        bound = f"{timeout:g}"
        if self.form == "guard":
            return [self.program, "guard", "--timeout", bound, "--", *original]
        if self.form == "timeout":
            return [self.program, f"--kill-after={KILL_AFTER:g}", bound, *original]
        assert self.shell and self.logger
        name = _inert(name)
        unit = unit if UNIT_NAME.fullmatch(unit) else _inert(unit)  # single-quoted below: a '\' stays
        # The warning goes to the journal with OBJECT_SYSTEMD_UNIT= naming the unit (logger --journald), so that
        # `journalctl -u UNIT` finds it even when journald reads it after logger has exited (a plain syslog line
        # from a process already gone carries no unit: a booted guest lost it that way). A logger without
        # --journald (util-linux built without systemd) fails, and the classic syslog line is sent instead.
        script = (f'{self.program} --kill-after={KILL_AFTER:g} {bound} "$@" || {{ rc=$?; '
                  f'm="guard: {name} exited $rc (124: stopped after {bound} s); the unit starts anyway"; '
                  f"printf '%s\\n' \"MESSAGE=mailpreflight $m\" PRIORITY=4 SYSLOG_IDENTIFIER=mailpreflight "
                  f"'OBJECT_SYSTEMD_UNIT={unit}' | {self.logger} --journald 2>/dev/null || "
                  f'{self.logger} -p daemon.warning -t mailpreflight "$m"; }}')
        return [self.shell, "-c", script, "mailpreflight-guard", *original]


def _inert(text: str) -> str:
    """`text` with every character a shell (inside double quotes) or printf could act on replaced by '_'; blanks,
    commas and parentheses stay (`sa-update (run by sh -c)`)."""
    return re.sub(r"[^A-Za-z0-9@:._+, ()-]", "_", text)[:200]


def _executable(fs: RootFS, guest: str) -> bool:
    resolved = fs.chase(guest)
    if resolved is None:
        return False
    info = fs.lstat(resolved)
    return info is not None and stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111)


def first_executable(fs: RootFS, candidates: tuple[str, ...]) -> str | None:
    return next((path for path in candidates if _executable(fs, path)), None)


def guest_wrapper(fs: RootFS) -> Wrapper:
    """The form for a drop-in that runs inside the root `fs` (a guest's tree)."""
    own = first_executable(fs, GUEST_PROGRAMS)
    if own:
        return Wrapper("guard", own, why=f"the guest has mailpreflight at {own}: the guard with its diagnosis")
    timeout = first_executable(fs, TIMEOUTS)
    if timeout is None:
        raise MailpreflightError("the guest has neither mailpreflight nor coreutils' timeout: a drop-in could "
                                 "only call programs that are not there",
                                 hint="install mailpreflight in the guest (apt-get install ./mailpreflight_*.deb), "
                                      "or coreutils, then run dropin install again")
    shell, logger = first_executable(fs, SHELLS), first_executable(fs, LOGGERS)
    if shell and logger:
        return Wrapper("timeout+logger", timeout, shell, logger,
                       why=f"the guest has no mailpreflight: {timeout} bounds each command and {logger} puts the "
                           "warning into the journal (no diagnosis line)")
    return Wrapper("timeout", timeout, why=f"the guest has no mailpreflight and no logger: {timeout} bounds each "
                                           "command; a failure is tolerated without a warning line")


def rules_cleanup(updatedir: str, shell: str) -> list[str]:
    """The words of a command that removes SpamAssassin's update dir when a failed sa-update left it without
    rules (an empty channel dir makes spamd exit 'no rules were found'): a dir with a *.cf stays."""
    if not posixpath.isabs(updatedir) or any(c in updatedir for c in "'\"\\$`\n") or ".." in updatedir.split("/"):
        raise MailpreflightError(f"unexpected SpamAssassin update dir {updatedir!r}: no clean-up line written")
    script = 'ls "$1"/*.cf >/dev/null 2>&1 || rm -rf -- "$1"'
    return [shell, "-c", script, "mailpreflight-rules", updatedir]
