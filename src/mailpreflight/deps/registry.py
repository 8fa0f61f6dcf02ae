"""Which rule reads which command. Commands no rule knows have no dependencies: the URLs and host:port words
of their arguments are only mentioned (low confidence), never probed nor allowed."""

from __future__ import annotations

from mailpreflight.deps.base import CommandRule, UnitRule, remembered
from mailpreflight.deps.fetchmail import FetchmailRule
from mailpreflight.deps.freshclam import FreshclamRule
from mailpreflight.deps.postfix import PostfixRule
from mailpreflight.deps.saupdate import SaUpdateRule
from mailpreflight.deps.spamassassin_plugins import TOOLS as SPAM_DAEMONS
from mailpreflight.deps.spamassassin_plugins import SpamAssassinPluginsRule
from mailpreflight.deps.urls import UnknownCommandRule, UrlFetchRule

UNIT_RULES: tuple[UnitRule, ...] = (SpamAssassinPluginsRule(),)
# Daemons whose ExecStart carries the unit-level (runtime) dependencies.
DAEMONS = frozenset(SPAM_DAEMONS) | {"freshclam", "fetchmail", "postfix", "master", "clamd", "dovecot"}
FALLBACK = UnknownCommandRule()


_RULES: dict[str | None, tuple[CommandRule, ...]] = {}


def command_rules(sa_version: str | None = None) -> tuple[CommandRule, ...]:
    """The rules (which keep nothing but `sa_version`), made once per version: every unit asks."""
    return remembered(_RULES, sa_version, lambda: (SaUpdateRule(sa_version), FreshclamRule(), FetchmailRule(),
                                                   PostfixRule(), UrlFetchRule()))


def rule_for(tool: str, rules: tuple[CommandRule, ...]) -> CommandRule:
    for rule in rules:
        if tool in rule.tools:
            return rule
    return FALLBACK
