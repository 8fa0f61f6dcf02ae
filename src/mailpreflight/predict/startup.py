"""Start predictions that the root and the sandbox decide, not the network (facts in deps/startup.py, checked
against a booted Debian 12 guest by tests/vm/).

- sa-update dies before its first packet when GPG is on and `gpg` is not installed, or when it must create
  its keyring home or channel directory where the unit's sandbox makes the tree read-only (ProtectSystem=full
  makes /etc read-only: Debian's spamd.service with `sa-update || true` starts in seconds, whatever the network).
- A sealed network (PrivateNetwork=, IPAddressDeny=any, RestrictAddressFamilies=) makes every lookup fail at
  once: sa-update exits 4 quickly instead of hanging.
- A run that reaches its channel loop but does not install rules leaves `<updatedir>/<channel>/` behind,
  empty; spamd then takes that directory for its rules and exits 255 ("no rules were found"): `|| true` or
  `-` forgave sa-update, the unit fails all the same.
"""

from __future__ import annotations

import shlex

from mailpreflight.deps.startup import SaUpdateLocal, StartupFacts, early_death
from mailpreflight.model import CommandVerdict, Prediction

PERL_START_S = 2.0  # sa-update's Perl start-up and die on ordinary hardware (~13 s under QEMU/TCG)


def before_network(verdict: CommandVerdict, local: SaUpdateLocal, facts: StartupFacts) -> CommandVerdict:
    """sa-update's verdict when the root or the sandbox decides it before the network; else `verdict`."""
    early = early_death(local, facts)
    if early is not None:
        return CommandVerdict(verdict.command, Prediction.FAIL, "255", PERL_START_S, early)
    if facts.sandbox.network:
        return CommandVerdict(verdict.command, Prediction.FAIL, "4", PERL_START_S + 1.0,
                              f"{facts.sandbox.network}: every channel fails (exit 4) within seconds", verdict.probes)
    return verdict


def reaches_channels(verdict: CommandVerdict) -> bool:
    """Did sa-update get as far as creating its channel directories (l.492)? Only an early die (255) stops it."""
    return verdict.predicted_exit != "255"


def spamd_fails(facts: StartupFacts, pre_verdicts: list[tuple[SaUpdateLocal, CommandVerdict]],
                service_type: str, restart: str) -> str | None:
    """Why spamd (the unit's ExecStart) will find no rules and exit 255, or None. `service_type`, `restart`:
    the unit's Type= and Restart= (a Type=simple unit is 'active' at once; its spamd then dies and Restart=
    brings it back, again and again — it never serves)."""
    rules = facts.spamd
    if rules is None or rules.updatedir_has_rules or facts.rules_cleaned:
        return None  # rules there, or removed before spamd starts when there are none (our drop-in's last line)
    if service_type in ("simple", "exec") and restart in ("always", "on-failure"):
        outcome = (f"exits 255 ('no rules were found') right after it starts, and Restart={restart} starts it again "
                   "and again (until StartLimitBurst= stops it): spamd never serves")
    else:
        outcome = "exits 255 ('no rules were found'): the start fails"
    if any(verdict.predicted_exit == "0" and local.updatedir == rules.updatedir for local, verdict in pre_verdicts):
        return None  # an sa-update of the start path installs rules where spamd looks, first
    if rules.updatedir_exists:
        return (f"spamd loads its rules from {rules.updatedir}, which exists but holds no rules (*.cf): it "
                f"{outcome}; no sa-update in the start path is expected to install them")
    for local, verdict in pre_verdicts:
        if local.updatedir != rules.updatedir:
            continue  # sa-update --updatedir elsewhere: spamd never looks there
        if reaches_channels(verdict) and verdict.predicted_exit != "0":
            created = ", ".join(local.missing_dirs) or local.updatedir
            return (f"sa-update ({verdict.command.source}) is expected to exit {verdict.predicted_exit} after "
                    f"creating {created}, left empty; spamd then loads its rules from {rules.updatedir} instead of "
                    f"the packaged ones and {outcome} — '|| true' or '-' forgive sa-update, not this")
    return None


def spamd_fix(facts: StartupFacts) -> str:
    """The command for spamd's empty rules directory (MP116's), or "" when there is none yet to remove."""
    rules = facts.spamd
    if rules is None or not rules.updatedir_exists or rules.updatedir_has_rules:
        return ""
    # rm -r, not rmdir: what a failed sa-update leaves may hold files (a channel dir with MIRRORED.BY) but no
    # *.cf, and spamd still takes it; an rmdir of an already empty DIR/* glob would also exit 1
    return f"rm -r {shlex.quote(rules.updatedir)} (it holds no rules; then spamd uses the packaged rules)"


# spamd compiles its rules at start-up and asks DNS while doing so (the fresh.fmb.la test queries); with DNS
# silently dropped it waits out SpamAssassin's rbl_timeout (15 s, Mail::SpamAssassin::Conf) before it serves
# — measured in the booted guest: "async: aborting after 15.001 s". That wait counts against TimeoutStartSec
# only when systemd waits for the daemon to get ready (Type=forking, notify), not for Type=simple.
SPAMD_DNS_WAIT_S = 15.0


def spamd_start_wait(facts: StartupFacts, service_type: str, dns_dropped: bool) -> float:
    """Seconds spamd's own start takes before systemd counts it started, when DNS does not answer."""
    if facts.spamd is None or not dns_dropped or service_type not in ("forking", "notify", "notify-reload"):
        return 0.0
    return SPAMD_DNS_WAIT_S
