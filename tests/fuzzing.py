"""The fuzz harness: generated hostile input for every parser of guest data, baselines and the command line
(issue 17 item 8). Used by `tests/unit/test_fuzz.py` (a few thousand examples in the normal suite, driven by
hypothesis) and `benchmarks/fuzz.py` (the campaign: N inputs on two worker processes).

Inputs are built by seeded structured generators: a grammar per format (unit files, Exec lines, sh -c
scripts, environment files, PAM stacks, postfix main.cf/master.cf, Dovecot, resolv.conf, ...) and the real
files of tests/corpus/ and units/examples/ as seeds, then mutated (hostile tokens, control characters, bytes
that are not UTF-8, line ends, splices, repetitions). File trees are written to a scratch root and read
through the code under test. Every input is a JSON-able record, saved with the failure for replay.

The oracles, per example:
- no exception escapes but the ones the entry point documents (MailpreflightError and subclasses for
  everything that reports to the admin; ValueError / SpecifierError where a low-level parser says so);
- no hang: each example runs under a limit of HANG_SECONDS of CPU time (SIGPROF), and may not block (no CPU
  time used in ten times that, SIGALRM), raising `Hang`, a BaseException no `except Exception` of the code under
  test can swallow;
- the command line: exit 0..3, nothing on stderr says "internal error" or "Traceback", --format json prints
  JSON, text output holds no raw control character, and every byte written is UTF-8 (a strict UTF-8
  stream, as an admin's terminal is);
- memory is bounded by the campaign driver (RLIMIT_AS in each worker): a MemoryError is a crash.

Nothing generated is ever written outside the scratch root (links are made last and never written
through), and `restore` only runs on baseline paths that stay inside it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import posixpath
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CORPUS = HERE / "corpus"
EXAMPLES = PROJECT / "units" / "examples"
HANG_SECONDS = 2.0
MAX_TEXT = 16 * 1024  # a generated text; `amplify` may go up to BIG_TEXT
BIG_TEXT = 256 * 1024

Rng = random.Random  # hypothesis' randoms() are random.Random too


class Hang(BaseException):
    """An example ran longer than its limit. BaseException: `except Exception` in the code must not eat it."""


class OracleError(AssertionError):
    """The code returned, but what it returned breaks a rule (exit code, stderr, output)."""


# --- characters and tokens ---------------------------------------------------------------------------------------

CONTROL = [chr(c) for c in (*range(0, 32), 127)] + ["\x85", "\x9b", "\u2028", "\u2029"]
ODD = ["\ufeff", "\udc80", "\udcff", "\udcc3", "\ufffe", "\uffff", "\U0010ffff", "\U0001f600", "\xa0", "é",
       "\u0130", "ß", "\u200b", "\u202e", "\x1b[2J", "\x1b]0;owned\x07", "\x1b[31m"]
NUMBERS = ["0", "-1", "1", "07777", "4755", "65535", "65536", "4294967295", "4294967296", "-9223372036854775809",
           "99999999999999999999999999", "1e309", "0x1F", "1.5", "inf", "infinity", "nan", "", "08", "0o17"]
COMMON = ["\n", "\r\n", "\r", "\0", "\\", "\\\n", " ", "\t", '"', "'", "`", "=", "#", ";", "$", "%", "{", "}",
          "[", "]", "(", ")", ":", ",", "/", "//", "..", "../..", "*", "?", "~", "-", "@", "|", "&", "<", ">"]


def rand_char(rng: Rng) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(CONTROL)
    if kind == 1:
        return rng.choice(ODD)
    if kind == 2:
        return chr(rng.randrange(0x80, 0x800))
    if kind == 3:
        return chr(rng.choice((rng.randrange(0x800, 0xD800), rng.randrange(0xE000, 0x110000))))
    return chr(rng.randrange(0x20, 0x7F))


# --- mutation ---------------------------------------------------------------------------------------------------


def mutate(rng: Rng, text: str, tokens: list[str], donors: list[str], rounds: int | None = None) -> str:
    """`text` with a few hostile edits: tokens inserted, characters replaced, ranges deleted, duplicated,
    repeated or spliced from another seed, lines swapped, the end cut off."""
    for _ in range(rng.randrange(1, 6) if rounds is None else rounds):
        n = len(text)
        at = rng.randrange(n + 1)
        op = rng.randrange(13)
        if op in (0, 1, 2):
            text = text[:at] + rng.choice(tokens if op < 2 else COMMON) + text[at:]
        elif op == 3:
            text = text[:at] + rand_char(rng) + text[at + 1:]
        elif op == 4 and n:
            end = min(n, at + rng.randrange(1, 40))
            text = text[:at] + text[end:]
        elif op == 5 and n:
            end = min(n, at + rng.randrange(1, 80))
            text = text[:end] + text[at:end] + text[end:]
        elif op == 6 and n:  # repeat a piece: long lines, many assignments, deep nesting
            end = min(n, at + rng.randrange(1, 24))
            times = rng.choice((2, 8, 64, 512, 4096))
            piece = text[at:end] * times
            text = text[:at] + piece[:BIG_TEXT] + text[end:]
        elif op == 7 and donors:
            donor = rng.choice(donors)
            start = rng.randrange(len(donor) + 1)
            text = text[:at] + donor[start:start + rng.randrange(1, 200)] + text[at:]
        elif op == 8:
            lines = text.split("\n")
            if len(lines) > 1:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                text = "\n".join(lines)
        elif op == 9:
            text = text[:at]
        elif op == 10:
            text = text[:at] + rng.choice(NUMBERS) + text[at:]
        elif op == 11 and n:
            end = min(n, at + rng.randrange(1, 30))
            text = text[:at] + text[at:end].swapcase() + text[end:]
        else:
            text = text[:at] + "".join(rand_char(rng) for _ in range(rng.randrange(1, 8))) + text[at:]
    return text if len(text) <= BIG_TEXT else text[:BIG_TEXT]


def soup(rng: Rng, tokens: list[str], words: int = 12) -> str:
    return "".join(rng.choice(tokens) if rng.random() < 0.8 else rand_char(rng) for _ in range(rng.randrange(words)))


def to_bytes(text: str) -> bytes:
    """Text to bytes, lone surrogates back to the bytes they stand for (so the input can be invalid UTF-8)."""
    return text.encode("utf-8", "surrogateescape")


def as_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --- grammars ---------------------------------------------------------------------------------------------------

UNIT_TYPES = ("service", "socket", "target", "timer", "path", "mount", "slice", "device", "swap", "scope")
UNIT_NAMES = ("spamd.service", "postfix.service", "postfix@.service", "postfix@-.service", "dovecot.service",
              "saslauthd.service", "clamav-freshclam.service", "freshclam.service", "fetchmail.service",
              "amavis.service", "cyrus-imapd.service", "clamd@scan.service", "a-b-c.service", "network-online.target",
              "multi-user.target", "foo@bar\\x2dbaz.service", "x.socket", "sa-update.timer")
PROGRAMS = ("/usr/bin/sa-update", "sa-update", "/usr/bin/freshclam", "/usr/bin/fetchmail", "/usr/sbin/postfix",
            "/usr/sbin/postmulti", "/usr/lib/postfix/sbin/master", "/usr/sbin/spamd", "/usr/bin/spamd",
            "/usr/sbin/amavisd", "/usr/sbin/clamd", "/usr/sbin/dovecot", "/usr/sbin/saslauthd", "/usr/bin/curl",
            "/usr/bin/wget", "/usr/bin/env", "/usr/bin/timeout", "/usr/bin/nice", "/usr/bin/flock", "/bin/true",
            "/usr/bin/mailpreflight", "/usr/lib/fetchmail-systemd-exec", "/usr/bin/sudo", "/sbin/runuser",
            "/usr/bin/ionice", "/usr/bin/systemd-run", "/usr/bin/sa-compile", "/usr/bin/razor-admin",
            "/usr/bin/pyzor", "/usr/bin/nslookup", "/usr/bin/dig", "/usr/bin/nc", "%h/bin/run", "/opt/%p/bin/%i")
SHELLS = ("/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/dash", "sh", "bash", "/usr/bin/busybox-sh")
ARGS = ("--channel", "updates.spamassassin.org", "--channelfile", "/etc/mail/spamassassin/channels", "-c",
        "/etc/postfix", "-i", "postfix-out", "-", "start", "check", "--daemon", "-d", "--quiet", "-D",
        "--gpgkey", "5244EC45", "--nogpg", "--updatedir", "/var/lib/spamassassin", "$OPTIONS", "$SPAMD_ARGS",
        "${SPAMD_ARGS}", "$$", "${X:-d}", "%i", "%I", "%n", "%N", "%p", "%P", "%f", "%j", "%J", "%t", "%h", "%u",
        "%H", "%b", "%m", "%%", "%", "%y", "http://mirror.example.org/sa/", "https://[2001:db8::1]:8443/x",
        "ftp://user:pw@example.com/", "example.com:25", "[smtp.example.net]:587", "192.0.2.1", "localhost:783",
        "\\;", ";", "'quoted arg'", '"dq \\"x\\" y"', "\\x41", "\\u00e9", "\\777", "\\U0010ffff", "\\s", "\\q",
        "--config-file=/etc/freshclam.conf", "-f", "/etc/fetchmailrc", "--fetchmailrc", "-L", "/var/log/x",
        "--proxy", "http://proxy:3128", "-x", "socks5h://127.0.0.1:1080", "-e", "--", "-o", "relayhost=[x]:25",
        "--timeout=30", "30", "-k", "5", "--allow-tell", "-m5", "-r", "/run/spamd.pid", "--max-children=5")
KEYS = {
    "Unit": ("Description", "After", "Before", "Wants", "Requires", "BindsTo", "PartOf", "Documentation",
             "ConditionPathExists", "StartLimitBurst", "DefaultDependencies", "OnFailure", "X-Mine"),
    "Service": ("Type", "ExecStartPre", "ExecStartPre", "ExecStart", "ExecStart", "ExecStartPost", "ExecCondition",
                "ExecReload", "ExecStop", "ExecStopPost", "Environment", "Environment", "EnvironmentFile",
                "TimeoutStartSec", "TimeoutSec", "TimeoutStopSec", "User", "Group", "PIDFile", "Restart",
                "SuccessExitStatus", "WorkingDirectory", "RemainAfterExit", "PassEnvironment", "UnsetEnvironment",
                "DynamicUser", "RuntimeDirectory", "Nice", "LimitNOFILE", "NoSuchKey"),
    "Install": ("WantedBy", "RequiredBy", "Alias", "Also", "DefaultInstance"),
    "Manager": ("DefaultTimeoutStartSec", "DefaultTimeoutStopSec", "DefaultEnvironment"),
}
SECTIONS = ("Unit", "Service", "Install", "Socket", "Timer", "X-Fuzz", "Manager", "Unit ", "", "Service]",
            "-Service", "Se\x01rvice")
TIMES = ("90", "0", "infinity", "1min 30s", "5min", "2h", "1y", "-1", "1.5s", "300ms", "5us", "99999999999", "1 2",
         "abc", "1d 2h 3m 4s 5ms 6us", "1e3", "", "infinit")
SHELL_WORDS = ("true", ":", "false", "exit", "exit 0", "exit 1", "return", "set -e", "set -o pipefail",
               "set -eu", "exec", "echo hi", "sleep 1", "logger -t x", "[ -f /etc/x ]", "test -d /var/lib/x", "cd /",
               "export A=1", "local b=2", "read x", "eval \"$X\"", ". /etc/default/x", "source /etc/x", "wait",
               "trap 'x' EXIT", "break", "continue", "shift", "unset X", "readonly R=1")


def gen_unit_name(rng: Rng) -> str:
    if rng.random() < 0.5:
        return rng.choice(UNIT_NAMES)
    prefix = "".join(rng.choice("abcxyz-_.:\\@") for _ in range(rng.randrange(0, 12))) or "a"
    if rng.random() < 0.3:
        prefix += "@" + "".join(rng.choice("ab-\\x2d.@:") for _ in range(rng.randrange(0, 8)))
    name = f"{prefix}.{rng.choice(UNIT_TYPES)}"
    return mutate(rng, name, ["@", "-", "\\x2d", ".", "\\", "/", "%"], list(UNIT_NAMES), 1) if rng.random() < 0.2 \
        else name


def gen_shell(rng: Rng, depth: int = 0) -> str:
    """A small sh/bash script: lists, and-or, pipes, if/for/while/case, functions, substitutions, here-docs."""

    def simple() -> str:
        head = rng.choice((*PROGRAMS, *SHELL_WORDS, *SHELL_WORDS))
        words = [head, *(rng.choice(ARGS) for _ in range(rng.randrange(3)))]
        if rng.random() < 0.2:
            words.insert(0, rng.choice(("A=1", "http_proxy=http://p:3128", "X=$(id -u)", "Y=\"$Z\"", "N=")))
        if rng.random() < 0.15:
            words.append(rng.choice((">/dev/null", "2>&1", "</dev/null", "&>/dev/null", ">>/var/log/x", "<<<x",
                                     "2>$(mktemp)")))
        if rng.random() < 0.15:
            words.append(rng.choice(("\"$(", "`")) + simple() + rng.choice((")\"", "`")))
        return " ".join(words)

    def statement() -> str:
        if depth > 3:
            return simple()
        kind = rng.randrange(14)
        inner = gen_shell(rng, depth + 1)
        if kind == 0:
            return f"if {simple()}; then {inner}; elif {simple()}; then {simple()}; else {simple()}; fi"
        if kind == 1:
            return f"for x in a b $L; do {inner}; done"
        if kind == 2:
            return f"while {simple()}; do {inner}; done"
        if kind == 3:
            return f"case \"$1\" in a|b) {inner};; *) {simple()};; esac"
        if kind == 4:
            return f"( {inner} )"
        if kind == 5:
            return f"{{ {inner}; }}"
        if kind == 6:
            return f"f() {{ {inner}; }}; f"
        if kind == 7:
            return f"{simple()} <<EOF\n{simple()}\n$(x)\nEOF\n{simple()}"
        if kind == 8:
            return f"! {simple()}"
        return simple()

    parts = [statement()]
    for _ in range(rng.randrange(4)):
        parts.append(rng.choice((" && ", " || ", " | ", " |& ", "; ", " & ", "\n", " || true; ", " || :\n")))
        parts.append(statement())
    script = "".join(parts)
    return mutate(rng, script, ["'", '"', "`", "$(", "${", "}", ")", "((", "<<", "\\\n", ";;", "fi", "done"],
                  [], 1) if rng.random() < 0.2 else script


def _quote_for_exec(rng: Rng, text: str) -> str:
    style = rng.randrange(3)
    if style == 0:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == 1:
        return "'" + text.replace("'", "'\\''") + "'"
    return text


WRAPPERS = ("/usr/bin/timeout 300", "/usr/bin/timeout -k 5 --foreground 60s", "/usr/bin/nice -n 19", "nice",
            "/usr/bin/ionice -c3", "/usr/bin/env", "/usr/bin/env -i A=1 PATH=/usr/bin:/bin", "/usr/bin/env -u X --",
            "/usr/bin/env -S", "/usr/bin/sudo -u spamd", "/usr/bin/sudo --", "/sbin/runuser -u vscan --",
            "/sbin/runuser -s /bin/bash spamd -c", "/bin/su - fetchmail -c", "/usr/bin/flock -w 5 /run/lock/x",
            "/usr/bin/flock /run/lock/x -c", "/usr/bin/chpst -u spamd:spamd", "/sbin/start-stop-daemon --start --exec",
            "/sbin/start-stop-daemon -c vscan -x", "/usr/bin/setpriv --reuid=1 --", "/usr/bin/systemd-cat -t x",
            "/usr/bin/nohup", "/usr/bin/stdbuf -oL", "/usr/bin/chrt 0", "/usr/bin/taskset 0x1",
            "/usr/bin/mailpreflight guard --timeout 60 --")


def gen_exec(rng: Rng) -> str:
    commands = []
    for _ in range(1 + (rng.random() < 0.2)):
        prefix = "".join(rng.choice("-@:+!|") for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3))))
        wrap = " ".join(rng.choice(WRAPPERS) for _ in range(rng.choice((0, 0, 1, 1, 2))))
        wrap = f"{wrap} " if wrap else ""
        if rng.random() < 0.4:
            shell = rng.choice(SHELLS)
            flag = rng.choice(("-c", "-c", "-ec", "-e -c", "-xc", "-c --", "-o errexit -c", "/etc/init.d/x", "-x"))
            argv0 = " sh" if "@" in prefix else ""
            commands.append(f"{prefix}{wrap}{shell}{argv0} {flag} {_quote_for_exec(rng, gen_shell(rng))}")
        else:
            args = " ".join(rng.choice(ARGS) for _ in range(rng.randrange(5)))
            commands.append(f"{prefix}{wrap}{rng.choice(PROGRAMS)} {args}".rstrip())
    return " ; ".join(commands)


UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/system")
SCRIPTS = ("/usr/lib/fetchmail-systemd-exec", "/usr/sbin/update-mail", "/usr/local/bin/sa-update-wrapper",
           "/etc/init.d/x")


def gen_env_assignments(rng: Rng) -> str:
    words = []
    for _ in range(rng.randrange(1, 4)):
        name = rng.choice(("SPAMD_ARGS", "OPTIONS", "http_proxy", "https_proxy", "A", "B_1", "1BAD", "", "X Y"))
        value = rng.choice(("", "-d -c -m5 -H", "http://proxy.example.com:3128", "%n", "$A", "a b", "\\x41",
                            "${A}", "é", "\\"))
        words.append(_quote_for_exec(rng, f"{name}={value}"))
    return " ".join(words)


def gen_unit_value(rng: Rng, key: str) -> str:
    if key.startswith("Exec"):
        return "" if rng.random() < 0.1 else gen_exec(rng)
    if key == "Environment":
        return gen_env_assignments(rng)
    if key == "EnvironmentFile":
        return rng.choice(("-", "")) + rng.choice(("/etc/sysconfig/spamd", "/etc/default/spamd", "/etc/sysconfig/*",
                                                   "/etc/default/[a-z]*", "/run/x/../../etc/default/x", "relative",
                                                   "/etc/default/%i", "/etc/sysconfig/fetchmail", "/dev/null",
                                                   "/etc/default/*/*"))
    if "Timeout" in key:
        return rng.choice(TIMES)
    if key in ("After", "Before", "Wants", "Requires", "WantedBy", "RequiredBy", "Alias", "Also", "BindsTo",
               "PartOf", "OnFailure"):
        return " ".join(gen_unit_name(rng) for _ in range(rng.randrange(3)))
    if key == "Type":
        return rng.choice(("simple", "forking", "oneshot", "notify", "exec", "dbus", "idle", "bogus", ""))
    if key in ("User", "Group"):
        return rng.choice(("root", "spamd", "vscan", "fetchmail", "%u", "nobody", "65534", "", "-x", "a b"))
    return soup(rng, ["a", "1", " ", "%n", "%i", "$X", "\\", "yes", "no", "/run/x.pid", "\"", "'"], 6)


def gen_unit(rng: Rng, sections: tuple[str, ...] = ("Unit", "Service", "Install")) -> str:
    lines: list[str] = []
    for section in rng.sample(sections, rng.randrange(1, len(sections) + 1)):
        if rng.random() < 0.05:
            section = rng.choice(SECTIONS)
        lines.append(f"[{section}]")
        for _ in range(rng.randrange(7)):
            key = rng.choice(KEYS.get(section.strip(), KEYS["Service"]))
            value = gen_unit_value(rng, key)
            if rng.random() < 0.1 and len(value) > 4:  # a continuation line
                cut = rng.randrange(1, len(value))
                value = value[:cut] + rng.choice(("\\\n", "\\\n# comment\n", "\\\n;x\n", "\\\r\n")) + value[cut:]
            spacing = rng.choice(("=", "=", " = ", "= ", "\t=\t"))
            lines.append(f"{key}{spacing}{value}")
        if rng.random() < 0.2:
            lines.append(rng.choice(("# comment", "; comment", "", "  ", ".include /etc/x", "no equals here",
                                     "=novalue", "\ufeff#bom")))
    text = rng.choice(("\n", "\n", "\r\n", "\r")).join(lines) + rng.choice(("\n", "", "\\"))
    return ("\ufeff" + text) if rng.random() < 0.05 else text


def gen_env_file(rng: Rng) -> str:
    lines = []
    for _ in range(rng.randrange(12)):
        name = rng.choice(("SPAMD_ARGS", "OPTIONS", "FETCHMAIL_POLLING_INTERVAL", "SASLAUTHD_AUTHMECH", "MECHANISMS",
                           "http_proxy", "MAIL_CONFIG", "A", "a.b", "1X", "", " K ", "export X"))
        value = rng.choice(('"-d -c -m5 -H"', "'single $X'", "plain value  ", '"multi\nline"', "back\\\nslash",
                            '"esc \\" \\$ \\` \\\\ \\n"', "pam", "-a pam", "http://proxy.example.com:3128", "",
                            "%n", "${X}", "a\\ b", '"unterminated', "'unterminated", "x # not a comment"))
        lines.append(rng.choice(("{n}={v}", "{n}= {v}", "{n} = {v}", "export {n}={v}", "# {n}={v}",
                                 "; {n}", "{n}", "## Path: x\n{n}={v}")).format(n=name, v=value))
    return rng.choice(("\n", "\r\n", "\r")).join(lines) + rng.choice(("\n", "", "\\", "\\\n"))


PAM_MODULES = ("pam_unix.so", "pam_sss.so", "pam_ldap.so", "pam_deny.so", "pam_permit.so", "pam_env.so",
               "pam_nologin.so", "pam_unix2.so", "pam_winbind.so", "/lib64/security/pam_unix.so", "pam_missing.so",
               "pam_krb5.so", "pam_faillock.so", "pam_succeed_if.so", "pam_systemd.so", "../pam_x.so")


def gen_pam(rng: Rng) -> str:
    lines = ["#%PAM-1.0"] if rng.random() < 0.5 else []
    for _ in range(rng.randrange(10)):
        kind = rng.randrange(10)
        pam_type = rng.choice(("auth", "account", "password", "session", "-auth", "-session", "Auth", "bogus", ""))
        if kind == 0:
            lines.append(f"@include {rng.choice(('common-auth', 'common-account', 'other', 'nope', '/etc/pam.d/x'))}")
        elif kind == 1:
            lines.append(f"{pam_type} {rng.choice(('include', 'substack', 'INCLUDE'))} "
                         f"{rng.choice(('common-auth', 'system-auth', 'other', 'password-auth', 'imap', 'missing'))}")
        else:
            control = rng.choice(("required", "requisite", "sufficient", "optional", "Required", "bogus",
                                  "[success=1 default=ignore]", "[success=ok new_authtok_reqd=ok ignore=ignore "
                                  "default=bad]", "[default=die", "[a=b \\] c]"))
            args = " ".join(rng.choice(("try_first_pass", "use_first_pass", "nullok", "debug", "[x=y]",
                                        "user ingroup mail", "quiet")) for _ in range(rng.randrange(3)))
            lines.append(f"{pam_type}\t{control} {rng.choice(PAM_MODULES)} {args}".rstrip())
        if rng.random() < 0.1:
            lines[-1] += rng.choice((" \\", " # comment", "\\", "\r"))
    return "\n".join(lines) + rng.choice(("\n", ""))


def gen_main_cf(rng: Rng) -> str:
    names = ("relayhost", "smtp_fallback_relay", "default_transport", "relay_transport", "smtpd_sasl_auth_enable",
             "smtpd_sasl_type", "smtpd_sasl_path", "smtpd_sasl_service", "cyrus_sasl_config_path",
             "multi_instance_directories", "multi_instance_name", "multi_instance_enable", "myhostname", "mydomain",
             "queue_directory", "transport_maps", "smtp_sasl_password_maps", "sasl_path", "x")
    values = ("[smtp.example.net]:587", "smtp.example.net", "$myhostname", "${mydomain}", "$(relayhost)",
              "${relayhost?[x]:25}", "${relayhost:fallback.example.org}", "$undefined", "yes", "no", "dovecot",
              "cyrus", "private/auth", "smtpd", "smtp:[relay.example.com]", "lmtp:inet:127.0.0.1:24",
              "lmtp:unix:private/dovecot-lmtp", "error:mail disabled", "/etc/postfix-out /etc/postfix-in",
              "postfix-out", "[2001:db8::1]:submission", "a, b c", "$a$b${c}", "static:user:password",
              "inline:{ a=b, c=d }", "${${x}}", "[x]:99999", "[x]:smtps", ":", "")
    lines = []
    for _ in range(rng.randrange(12)):
        line = f"{rng.choice(names)}{rng.choice((' = ', '=', ' ='))}{rng.choice(values)}"
        if rng.random() < 0.15:
            line += "\n  " + rng.choice(values)
        lines.append(line)
        if rng.random() < 0.1:
            lines.append(rng.choice(("# comment", "   # indented comment", "not a setting", "=x", "  orphan")))
    return "\n".join(lines) + "\n"


def gen_master_cf(rng: Rng) -> str:
    lines = ["# service type  private unpriv  chroot  wakeup  maxproc command + args"]
    for _ in range(rng.randrange(6)):
        service = rng.choice(("smtp", "submission", "smtps", "127.0.0.1:smtp", "[::1]:587", "postscreen", "x"))
        kind = rng.choice(("inet", "pass", "unix", "fifo", "inet"))
        command = rng.choice(("smtpd", "postscreen", "/usr/lib/postfix/smtpd", "pickup", "smtpd -v"))
        line = f"{service} {kind} n - {rng.choice(('y', 'n', '-'))} - - {command}"
        for _ in range(rng.randrange(4)):
            option = rng.choice(("smtpd_sasl_auth_enable=yes", "smtpd_sasl_type=dovecot", "smtpd_sasl_path=private/"
                                 "auth", "smtpd_sasl_auth_enable=$x", "{ smtpd_sasl_type = cyrus }",
                                 "{ smtpd_sasl_service = smtp x", "syslog_name=postfix/submission", "=", "x"))
            line += rng.choice(("\n  -o ", " -o ", "\n\t-o ", " ")) + option
        lines.append(line)
    return "\n".join(lines) + rng.choice(("\n", "", "\n  -o"))


def gen_dovecot(rng: Rng) -> str:
    includes = ("conf.d/*.conf", "conf.d/10-auth.conf", "/etc/dovecot/dovecot.conf", "../*", "auth-*.conf.ext", "*",
                "conf.d/[", '"x y"', "")
    drivers = ("pam", "passwd-file", "ldap", "sql", "")
    args = ("session=yes dovecot", "* ", "max_requests=100 %Ls", '"quoted', "cache_key=%u imap", "-x", "")
    names = ("", "  service_name = %{protocol}", "  passdb_pam_service_name = mail", "  service_name = %s")
    lines = []
    for _ in range(rng.randrange(10)):
        kind = rng.randrange(8)
        if kind == 0:
            lines.append(f"!include{rng.choice(('', '_try'))} {rng.choice(includes)}")
        elif kind == 1:
            block = rng.choice(("", "pam ", "pam-x ", "{ "))
            lines.append(f"passdb {block}{{\n  driver = {rng.choice(drivers)}\n  args = {rng.choice(args)}\n"
                         f"{rng.choice(names)}\n}}")
        elif kind == 2:
            lines.append("protocols = " + rng.choice(("imap pop3 lmtp", "$protocols sieve", "imap imap", "",
                                                      "submission")))
        elif kind == 3:
            lines.append(rng.choice(("service auth {", "}", "userdb {", "  unix_listener x {", "{", "}}",
                                     "protocol imap {")))
        elif kind == 4:
            lines.append(f"{rng.choice(('auth_mechanisms', 'disable_plaintext_auth', 'mail_location', 'x'))} = "
                         f"{rng.choice(('plain login', 'yes', 'maildir:~/Maildir', '$x', '# not'))}")
        else:
            lines.append(rng.choice(("# comment", "key value without equals", "a = b # c", "   ")))
    return "\n".join(lines) + "\n"


def gen_resolv_conf(rng: Rng) -> str:
    lines = []
    for _ in range(rng.randrange(8)):
        lines.append(rng.choice((
            "nameserver {}", "nameserver {} # comment", "nameserver\t{};x", "search example.com example.net",
            "options edns0 timeout:1 attempts:5 rotate", "domain example.org", "# nameserver {}", "; x",
            "nameserver", "nameserver {} {}", " nameserver {}", "NAMESERVER {}", "sortlist 130.155.160.0/255.255.240.0",
        )).format(rng.choice(("127.0.0.53", "::1", "fe80::1%eth0", "192.0.2.1", "2001:db8::53", "1.2.3", "x", "",
                              "%", "127.0.0.1%", "[::1]", "999.1.1.1")),
                  rng.choice(("8.8.8.8", ""))))
    return "\n".join(lines) + rng.choice(("\n", ""))


def gen_nft(rng: Rng) -> str:
    """An nftables ruleset (with includes: globs, relative, absolute, loops, spanning lines) or iptables-save."""
    if rng.random() < 0.3:
        rules = [rng.choice(("-A OUTPUT -o eth0 -p tcp --dport 25 -j ACCEPT", "-A OUTPUT -o lo -j ACCEPT",
                             "-A OUTPUT ! -o eth+ -j DROP", "-A OUTPUT -m bpf --object-pinned /sys/fs/bpf/x -j DROP",
                             "-A OUTPUT -p udp --dport 53 -d 192.0.2.53 -j ACCEPT", ":OUTPUT DROP [0:0]", "COMMIT",
                             "# comment", "-A OUTPUT --out-interface wg0 -j ACCEPT"))
                 for _ in range(rng.randrange(8))]
        return "*filter\n" + "\n".join(rules) + rng.choice(("\nCOMMIT\n", "\n", ""))
    lines = [rng.choice(("flush ruleset", "#!/usr/sbin/nft -f", "define LAN = 192.0.2.0/24", ""))]
    for _ in range(rng.randrange(8)):
        lines.append(rng.choice((
            "table inet filter {", "chain output {", "type filter hook output priority 0; policy drop;",
            'oifname "eth0" tcp dport { 25, 587 } accept', "oif lo accept", 'oifname { "eth0", wg0 } accept',
            "ip daddr $LAN accept # include \"x\"", "udp dport 53 accept", "}", "}}", 'iifname "br-*" drop',
            'include "/etc/nftables.d/*.nft"', 'include "rules.nft"', 'include "./local.nft"',
            'include "../../etc/shadow"', "include", 'include "spans\nlines.nft"', 'include \\\n"cont.nft"',
            'xinclude "no.nft"', 'include"glued.nft"', 'include "nftables.conf"', 'include "/etc/nftables.d/[a"',
            'include "/etc/nftables.d"', 'include "/etc/nftables.conf"', 'comment "include \\"x\\""',
            'device "eth1"', "devices = { eth0, eth1 }", 'oif != "eth0" drop')))
    return "\n".join(lines) + "\n"


def gen_colon_conf(rng: Rng) -> str:
    keys = ("pwcheck_method", "mech_list", "sasl_pwcheck_method", "saslauthd_path", "allowplaintext", "x")
    values = ("saslauthd", "auxprop", "saslauthd auxprop", "PLAIN LOGIN", "/run/sasl2/mux", "", ":")
    return "\n".join(f"{rng.choice(keys)}{rng.choice((': ', ':', ' : '))}{rng.choice(values)}"
                     for _ in range(rng.randrange(6))) + "\n"


def gen_cyrus_conf(rng: Rng) -> str:
    services = " ".join(f'\n  {n} cmd="{c}" listen="{n}" prefork=0' for n, c in
                        rng.sample((("imap", "imapd"), ("pop3", "pop3d"), ("sieve", "timsieved"),
                                    ("imaps", "imapd -s"), ("lmtp", "lmtpd")), rng.randrange(4)))
    return f"START {{\n  recover cmd=\"ctl_cyrusdb -r\"\n}}\nSERVICES {{{services}\n}}\n"


def gen_config(rng: Rng) -> str:
    """The other files the start-path rules read: freshclam.conf, fetchmailrc, SpamAssassin, sa-update."""
    lines = []
    for _ in range(rng.randrange(10)):
        lines.append(rng.choice((
            "DatabaseMirror {h}", "PrivateMirror {u}", "DNSDatabaseInfo current.cvd.clamav.net", "HTTPProxyServer {h}",
            "HTTPProxyPort {n}", "DatabaseCustomURL {u}", "ScriptedUpdates yes", "Checks 24",
            "poll {h} proto pop3 port {n} user 'x' pass 'y' is z here", "set daemon 300", "skip {h} via {h}",
            "defaults proto imap timeout 30", "poll {h} plugin \"openssl s_client -connect %h:%p\"",
            "loadplugin Mail::SpamAssassin::Plugin::{p}", "use_razor2 1", "use_pyzor 0", "dns_server {h}",
            "urirhssub x.example.com. A 2", "pyzor_options --homedir /var/lib/x", "razor_config /etc/razor.conf",
            "mirror {u}", "http_proxy = {u}", "use_proxy = on", "{h}", "include /etc/x", "$x = 1;",
            "@bypass_spam_checks_maps = (1);", "$sa_spam_subject_tag = '***SPAM***';",
        )).format(h=rng.choice(("db.local.clamav.net", "[2001:db8::1]", "mirror.example.org:8080", "x", "",
                                "192.0.2.7", "host name", "%h")),
                  u=rng.choice(("http://mirror.example.org/clamav", "https://u:p@example.com:99999/",
                                "ftp://[::1]/x", "http://[bad", "file:///x", "http://", "://", "http://%zz")),
                  n=rng.choice(NUMBERS), p=rng.choice(("Razor2", "Pyzor", "DCC", "URIDNSBL", "TxRep", "x"))))
    return "\n".join(lines) + "\n"


# --- seeds from the repository ----------------------------------------------------------------------------------


@cache
def corpus_strings(kind: str) -> tuple[str, ...]:
    """Seed texts for one dialect from tests/corpus/cases/*.json."""
    fields = {"unit": ("confparser.json", "text"), "exec": ("execline.json", "value"),
              "envfile": ("envfile.json", "text"), "environ": ("environ.json", "value"),
              "unitname": ("unitname.json", "input"), "specifier": ("specifiers.json", "template")}
    if kind not in fields:
        return ()
    name, key = fields[kind]
    path = CORPUS / "cases" / name
    if not path.exists():
        return ()
    out = []
    for case in json.loads(path.read_text(encoding="utf-8")):
        value = case.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return tuple(out)


Entry = Any  # str (a file, mode 0644) | {"text": str, "mode": int} | {"link": str} | {"dir": 1}
Tree = dict[str, Entry]


def read_tree(directory: Path) -> Tree:
    """A directory on disk as a tree: guest path -> entry."""
    tree: Tree = {}
    for base, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(base) / name
            guest = "/" + str(path.relative_to(directory))
            if path.is_symlink():
                tree[guest] = {"link": os.readlink(path)}
            elif path.is_dir():
                if not os.listdir(path):
                    tree[guest] = {"dir": 1}
            else:
                text = as_text(path.read_bytes()[:MAX_TEXT])
                mode = path.stat().st_mode & 0o7777
                tree[guest] = text if mode == 0o644 else {"text": text, "mode": mode}
    return tree


@cache
def seed_trees() -> tuple[Tree, ...]:
    """Every guest root of the repository (realistic and deps corpus, the shipped example, the auth test
    roots), each as a tree."""
    roots = sorted((CORPUS / "realistic").glob("*/root")) + sorted((CORPUS / "deps").glob("*/root"))
    roots += sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []
    trees = [read_tree(root) for root in roots]
    sys.path.insert(0, str(HERE))
    import mailroots  # the auth test roots are written by code

    with tempfile.TemporaryDirectory() as scratch:
        for name in ("leap15", "debian12"):
            builder = getattr(mailroots, name, None)
            if builder is not None:
                root = Path(scratch) / name
                root.mkdir()
                builder(root)
                trees.append(read_tree(root))
    cases = CORPUS / "cases" / "installroot.json"
    if cases.exists():
        for case in json.loads(cases.read_text(encoding="utf-8")):
            tree = {}
            for path, spec in case.get("tree", {}).items():
                if "symlink" in spec:
                    tree["/" + path.lstrip("/")] = {"link": spec["symlink"]}
                elif isinstance(spec.get("content"), str):
                    tree["/" + path.lstrip("/")] = spec["content"]
            trees.append(tree)
    return tuple(t for t in trees if t)


def dialect_of(path: str) -> str:
    """Which grammar a guest file follows, from where it sits."""
    name = posixpath.basename(path)
    if "/pam.d/" in path or path == "/etc/pam.conf":
        return "pam"
    if name == "main.cf":
        return "main.cf"
    if name == "master.cf":
        return "master.cf"
    if "/dovecot" in path:
        return "dovecot"
    if name == "resolv.conf":
        return "resolv"
    if "/systemd/" in path and (name.endswith(".conf") or name.rpartition(".")[2] in UNIT_TYPES):
        return "unit"
    if "/sysconfig/" in path or "/default/" in path or name == "os-release":
        return "envfile"
    if "/sasl2/" in path or name == "imapd.conf":
        return "colon"
    if name == "cyrus.conf":
        return "cyrus"
    if "nftables" in path or name.endswith(".nft") or "/iptables/" in path:
        return "nft"
    if "/bin/" in path or "/sbin/" in path or "/libexec/" in path or "fetchmail-systemd" in name:
        return "shell"
    return "config"


TOKENS: dict[str, list[str]] = {
    "unit": ["[Service]", "[Unit]", "[Install]", "[X-A]", "ExecStart=", "ExecStartPre=", "Environment=",
             "EnvironmentFile=", "TimeoutStartSec=", "\\\n", "%i", "%n", "%", "$A", "${A}", "\\x", "\\u",
             "\ufeff", "-", "@", "+", "!!", "|", "\\;", " ; ", "/bin/sh -c '", '"', "'"],
    "exec": ["-", "@", ":", "+", "!", "!!", "|", "\\;", " ; ", ";", "%i", "%n", "%%", "%", "%y", "$X", "${X}", "\\",
             "\\x", "\\x00", "\\u", "\\U", "\\0", "\\777", '"', "'", " ", "\t", "/", "//", "./", "../", "sh -c "],
    "shell": ["'", '"', "`", "$(", "${", "}", ")", "(", "((", "<<", "<<-", "<<<", "\\\n", ";;", ";&", "fi", "done",
              "esac", "then", "do", "if", "case", "in", "||", "&&", "|", "&", ";", "!", "#", "set -e", "exit",
              "return", "true", "${X:-", "${X:=", "${X:+", "$?", "$$", "$@", "function f", "{", "}"],
    "envfile": ["=", "'", '"', "\\", "\\\n", "#", ";", "export ", " ", "\t", "$", "`", "\r", "\n", "\0"],
    "environ": ["=", '"', "'", "\\", " ", "%n", "%i", "%", "A=", "1A=", "=b", "\\x41"],
    "pam": ["@include ", "include", "substack", "[", "]", "\\]", "\\", "#", "-auth", "auth", "account", "password",
            "session", "required", "sufficient", "optional", "requisite", "pam_unix.so", "/", "\r", "\t"],
    "main.cf": ["$", "${", "$(", "}", ")", "?", ":", "=", " ", "\n ", "\n\t", "#", "[", "]", ",", "relayhost",
                "smtpd_sasl_type", "smtpd_sasl_auth_enable = yes"],
    "master.cf": ["-o", "{", "}", "=", "\n  ", " ", "inet", "pass", "smtpd", "#", ":"],
    "dovecot": ["{", "}", "!include ", "!include_try ", "=", "#", "passdb", "driver = pam", "args = ", "*", "$",
                "\"", "%{protocol}", "%Ls", "%s", "protocols"],
    "resolv": ["nameserver ", "#", ";", "%", "::", ".", " ", "\t", "search ", "options "],
    "colon": [":", " ", "pwcheck_method", "saslauthd", "#"],
    "cyrus": ["{", "}", "cmd=", "\"", "#", "SERVICES", "imapd", "\n"],
    "config": ["http://", "https://", "[", "]", ":", "@", "%", " ", "=", "#", "\"", "'", "poll ", "via ", "port ",
               "loadplugin ", "DatabaseMirror ", "::1", "/"],
    "unitname": ["@", "-", ".", "\\x2d", "\\x", "\\", "/", ":", "_", ".service", ".target", "%"],
    "nft": ["include ", '"', "#", "\\\n", "{", "}", ";", "*", "?", "[", "/", "./", "../", "oifname ", "eth0",
            "-o ", "--object-pinned", "COMMIT", "\n"],
}
TOKENS["specifier"] = TOKENS["exec"]
GRAMMARS: dict[str, Callable[[Rng], str]] = {
    "unit": gen_unit, "exec": gen_exec, "shell": gen_shell, "envfile": gen_env_file, "environ": gen_env_assignments,
    "pam": gen_pam, "main.cf": gen_main_cf, "master.cf": gen_master_cf, "dovecot": gen_dovecot,
    "resolv": gen_resolv_conf, "colon": gen_colon_conf, "cyrus": gen_cyrus_conf, "config": gen_config,
    "unitname": gen_unit_name, "nft": gen_nft,
    "specifier": lambda rng: " ".join(rng.choice(ARGS) for _ in range(rng.randrange(5))),
}


@cache
def seed_texts(dialect: str) -> tuple[str, ...]:
    """Real files of one dialect from the seed trees, and the corpus strings."""
    texts = [entry if isinstance(entry, str) else entry["text"] for tree in seed_trees()
             for path, entry in tree.items() if not (isinstance(entry, dict) and "text" not in entry)
             and dialect_of(path) == dialect]
    return tuple(dict.fromkeys([*corpus_strings(dialect), *texts]))


def text_for(rng: Rng, dialect: str) -> str:
    """A hostile text of one dialect: a real file or a grammar's output, mutated (sometimes not at all)."""
    seeds = seed_texts(dialect)
    text = rng.choice(seeds) if seeds and rng.random() < 0.5 else GRAMMARS[dialect](rng)
    if rng.random() < 0.85:
        text = mutate(rng, text, TOKENS[dialect], list(seeds[:40]))
    return text


# --- trees on disk ----------------------------------------------------------------------------------------------

LINK_TARGETS = ("/dev/null", "/", "..", ".", "../..", "/etc", "/etc/pam.d/common-auth", "loop-a", "self",
                "/usr/lib/systemd/system/spamd.service", "spamd.service", "../../../../../../etc/passwd",
                "/proc/self/root", "//etc//pam.d/", "x" * 300, "/etc/systemd/system/spamd.service.d")
NEW_FILES = ("/etc/systemd/system/spamd.service.d/{}.conf", "/usr/lib/systemd/system/spamd.service.d/{}.conf",
             "/etc/systemd/system/service.d/{}.conf", "/etc/systemd/system/{}.service",
             "/usr/lib/systemd/system/{}.service", "/lib/systemd/system/{}@.service",
             "/etc/systemd/system/{}.service.d/override.conf", "/run/systemd/system/{}.service",
             "/etc/systemd/system/postfix@-.service.d/{}.conf", "/etc/systemd/system/multi-user.target.wants/{}",
             "/etc/sysconfig/{}", "/etc/default/{}", "/etc/pam.d/{}", "/usr/lib/pam.d/{}", "/etc/pam.d/common-{}",
             "/etc/postfix/main.cf", "/etc/postfix/master.cf", "/etc/postfix-{}/main.cf", "/etc/dovecot/dovecot.conf",
             "/etc/dovecot/conf.d/10-{}.conf", "/etc/resolv.conf", "/etc/sasl2/smtpd.conf", "/etc/imapd.conf",
             "/etc/cyrus.conf", "/etc/freshclam.conf", "/etc/clamav/freshclam.conf", "/etc/fetchmailrc",
             "/etc/mail/spamassassin/{}.pre", "/etc/mail/spamassassin/local.cf", "/usr/bin/{}", "/usr/sbin/{}",
             "/etc/systemd/system.conf", "/etc/systemd/system.conf.d/{}.conf", "/etc/os-release", "/etc/passwd",
             "/etc/hostname", "/etc/machine-id", "/etc/debian_version", "/lib64/security/pam_{}.so",
             "/etc/pam.conf", "/etc/sysconfig/saslauthd", "/etc/default/saslauthd", "/etc/services",
             "/etc/wgetrc", "/usr/lib/os-release", "/etc/nftables.conf", "/etc/sysconfig/nftables.conf",
             "/etc/nftables.d/{}.nft", "/etc/rules.nft", "/local.nft", "/etc/iptables/rules.v4",
             "/etc/iptables/rules.v6", "/etc/sysconfig/iptables", "/etc/nftables.d/{}/x.nft")
NAME_PARTS = ("spamd", "postfix", "dovecot", "saslauthd", "imap", "smtp", "other", "auth", "a-b", "x@y", "\udcff",
              "\x1b[2J", "sp ace", "\u202e", "fetchmail", "freshclam", "override", "50-sa-update", "..", ".hidden",
              "z" * 250)


def mutate_tree(rng: Rng, tree: Tree, focus: tuple[str, ...] | None = None, rounds: int | None = None) -> Tree:
    """A few hostile edits of a tree: files changed (by their dialect), added, removed, copied, masked, linked."""
    tree = dict(tree)
    files = [p for p, e in tree.items() if isinstance(e, str) or (isinstance(e, dict) and "text" in e)]
    for _ in range(rng.randrange(1, 7) if rounds is None else rounds):
        op = rng.randrange(10)
        if op <= 3 and files:  # change a file by its own grammar
            path = rng.choice([p for p in files if focus is None or dialect_of(p) in focus] or files)
            entry = tree.get(path)
            text = entry if isinstance(entry, str) else entry.get("text", "") if isinstance(entry, dict) else ""
            dialect = dialect_of(path)
            text = (mutate(rng, text, TOKENS[dialect], list(seed_texts(dialect)[:40])) if rng.random() < 0.7
                    else text_for(rng, dialect))
            tree[path] = text if not isinstance(entry, dict) else {**entry, "text": text}
        elif op in (4, 5):  # a new file where the code looks
            pattern = rng.choice([p for p in NEW_FILES if focus is None or dialect_of(p) in focus] or NEW_FILES)
            path = pattern.format(rng.choice(NAME_PARTS))
            tree[path] = text_for(rng, dialect_of(path))
            files.append(path)
        elif op == 6 and tree:
            gone = rng.choice(sorted(tree))
            tree.pop(gone)
            files = [p for p in files if p != gone]
        elif op == 7 and files:  # a link, to a file, a directory, outside, in a loop, to /dev/null
            where = rng.choice(files)
            target = rng.choice((*LINK_TARGETS, rng.choice(files), posixpath.basename(rng.choice(files))))
            if target == "self":
                target = posixpath.basename(where)
            elif target == "loop-a":
                tree[where + ".loop"] = {"link": posixpath.basename(where)}
                target = posixpath.basename(where) + ".loop"
            path = where if rng.random() < 0.5 else posixpath.join(posixpath.dirname(where), rng.choice(NAME_PARTS))
            tree[path] = {"link": target}
        elif op == 8 and files:  # masked by an empty file, or private
            path = rng.choice(files)
            tree[path] = "" if rng.random() < 0.5 else {"text": tree[path] if isinstance(tree[path], str) else "",
                                                        "mode": rng.choice((0o600, 0o000, 0o4755, 0o640))}
        elif files:  # the same file somewhere else (an admin's copy in /etc, a drop-in dir)
            path = rng.choice(files)
            entry = tree[path]
            tree[rng.choice(NEW_FILES).format(rng.choice(NAME_PARTS))] = entry
    return tree


def random_tree(rng: Rng, focus: tuple[str, ...] | None = None) -> Tree:
    """One or two seed roots merged, then mutated; units written from the grammar (with valid names, so that
    they are loaded and analysed), the shell scripts their Exec lines may name; sometimes only generated files."""
    trees = seed_trees()
    tree: Tree = {}
    if rng.random() < 0.9:
        for _ in range(1 + (rng.random() < 0.3)):
            tree.update(rng.choice(trees))
    if focus is None or "unit" in focus:
        for number in range(rng.choice((0, 1, 1, 2, 3))):
            name = rng.choice((f"fuzz{number}.service", f"fuzz{number}@.service", "spamd.service",
                               "postfix@-.service", "clamav-freshclam.service", "fetchmail.service"))
            tree[f"{rng.choice(UNIT_DIRS)}/{name}"] = gen_unit(rng) if rng.random() < 0.7 else text_for(rng, "unit")
            if rng.random() < 0.3:
                tree[f"/etc/systemd/system/{name}.d/{rng.choice(NAME_PARTS)}.conf"] = gen_unit(rng)
        if rng.random() < 0.3:
            tree[rng.choice(SCRIPTS)] = rng.choice(("#!/bin/sh\n", "#!/bin/bash -e\n", "#!/usr/bin/env sh\n",
                                                    "#!/usr/bin/perl\n", "")) + gen_shell(rng)
    return mutate_tree(rng, tree, focus)


def _parents_inside(root: Path, path: Path) -> bool:
    """Make the directories above `path` one by one, never through a link (a link made earlier may lead out of
    the root): False when one of them is a link or not a directory."""
    current = root
    for part in path.relative_to(root).parts[:-1]:
        current = current / part
        if current.is_symlink():
            return False
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            return False
    return True


def materialize(tree: Tree, root: Path) -> None:
    """Write `tree` under `root` (which must not exist). Files and directories first, links last, and no
    directory is made through a link, so that nothing is ever written outside the root; an entry that collides
    with another is left out."""
    root.mkdir(parents=True)
    links = []
    for guest in sorted(tree):
        entry = tree[guest]
        parts = [p for p in guest.split("/") if p and p not in (".", "..")]
        if not parts or any("\0" in p for p in parts):
            continue
        path = root.joinpath(*parts)
        if isinstance(entry, dict) and "link" in entry:
            links.append((path, entry["link"]))
            continue
        try:
            if not _parents_inside(root, path):
                continue
            if isinstance(entry, dict) and entry.get("dir"):
                path.mkdir(exist_ok=True)
                continue
            text = entry if isinstance(entry, str) else entry.get("text", "")
            with open(path, "xb") as handle:
                handle.write(to_bytes(text))
            if isinstance(entry, dict) and isinstance(entry.get("mode"), int):
                os.chmod(path, entry["mode"] & 0o7777)
        except (OSError, ValueError):
            continue
    for path, target in links:
        if "\0" in target:
            continue
        try:
            if _parents_inside(root, path):
                os.symlink(target, path)
        except (OSError, ValueError):
            continue


def wipe(root: Path) -> None:
    """Remove a scratch root (shutil.rmtree removes links, never follows them)."""
    if root.exists() or root.is_symlink():
        shutil.rmtree(root)


# --- targets ----------------------------------------------------------------------------------------------------

Record = dict[str, Any]


@contextlib.contextmanager
def documented(*errors: type[BaseException]) -> Iterator[None]:
    """Exceptions the entry point documents: they end the call, they are not crashes."""
    with contextlib.suppress(*errors):
        yield


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise OracleError(message)


@dataclass(frozen=True)
class Target:
    name: str
    entry_points: str  # what is called, for the report
    generate: Callable[[Rng, Path], Record]
    run: Callable[[Record, Path], None]
    tree: bool = False  # record["tree"] is written to WORKDIR/root before run
    suite_examples: int = 200  # how many the normal test suite runs


def _host_facts(rng: Rng) -> dict[str, str]:
    if rng.random() < 0.5:
        return {}
    return {k: rng.choice(("mail1", "x.example.com", "", "%H", "ab\ncd", "0123456789abcdef0123456789abcdef"))
            for k in rng.sample("HlmbvaowBWMA", rng.randrange(1, 6))}


# OpenPGP detached signatures (sa-update's .asc, a mirror's answer)


def _pgp_length(rng: Rng, size: int) -> bytes:
    form = rng.choice((0, 0, 0, 1, 1, 2, 3))
    if form == 0 and size < 192:
        return bytes([size])
    if form == 1 and size < 8384:
        size -= 192
        return bytes([(size >> 8) + 192, size & 0xFF])
    if form == 2:  # a partial length (not allowed for signatures), or an odd one
        return bytes([rng.choice((224, 254, 255, 191, 192))])
    return b"\xff" + size.to_bytes(4, "big")


def _pgp_packet(rng: Rng, tag: int, body: bytes) -> bytes:
    if rng.random() < 0.6:  # new format
        return bytes([0xC0 | tag]) + _pgp_length(rng, len(body)) + body
    size_type = rng.choice((0, 1, 2, 3))  # old format: 1, 2, 4 octets, or indeterminate
    size = b"" if size_type == 3 else len(body).to_bytes((1, 2, 4)[size_type], "big", signed=False) if \
        len(body) < 256 ** (1, 2, 4)[size_type] else b"\xff" * (1, 2, 4)[size_type]
    return bytes([0x80 | (tag << 2) | size_type]) + size + body


def _pgp_subpackets(rng: Rng) -> bytes:
    out = b""
    for _ in range(rng.choice((0, 1, 2, 3, 70))):
        kind = rng.choice((2, 16, 33, 33, 16, 4, 127, 0, 2 | 0x80))
        data = {2: rng.randbytes(4), 16: rng.randbytes(8), 33: bytes([rng.choice((4, 5, 6))]) + rng.randbytes(20)}.get(
            kind & 0x7F, rng.randbytes(rng.randrange(6)))
        if rng.random() < 0.1:
            data = data[:rng.randrange(len(data) + 1)]
        out += _pgp_length(rng, len(data) + 1) + bytes([kind]) + data
    return out


def gen_signature(rng: Rng) -> bytes:
    """Armored or binary detached signatures: v4 (subpackets 2, 16, 33 in both areas) and v3 packets, other
    packets, odd lengths, a CRC that matches or not, armor headers; then bytes changed."""
    packets = b""
    for _ in range(rng.choice((1, 1, 1, 2, 0, 40))):
        version = rng.choice((4, 4, 4, 3, 5, 6, 2))
        if version == 3:
            body = bytes([3, 5, 0]) + rng.randbytes(4) + rng.randbytes(8) + bytes([1, 8]) + rng.randbytes(2)
        else:
            hashed, unhashed = _pgp_subpackets(rng), _pgp_subpackets(rng)
            body = (bytes([version, 0, 1, 8]) + len(hashed).to_bytes(2, "big") + hashed
                    + len(unhashed).to_bytes(2, "big") + unhashed + rng.randbytes(2) + b"\x00\x08\xff")
        packets += _pgp_packet(rng, rng.choice((2, 2, 2, 2, 2, 6, 13, 0, 63)), body[:rng.randrange(len(body) + 1)]
                               if rng.random() < 0.1 else body)
    if rng.random() < 0.4:
        data = packets
    else:
        crc = 0xB704CE
        for byte in packets:
            crc ^= byte << 16
            for _ in range(8):
                crc = (crc << 1) ^ 0x1864CFB if crc & 0x800000 else crc << 1
        crc &= 0xFFFFFF
        if rng.random() < 0.2:
            crc ^= 1
        import base64

        encoded = base64.b64encode(packets).decode()
        lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
        headers = rng.choice(("", "Comment: a header line\n", "Version: GnuPG v1\nHash: SHA256\n", "x\n"))
        text = ("-----BEGIN PGP SIGNATURE-----\n" + headers + rng.choice(("\n", "", "\r\n")) + "\n".join(lines)
                + rng.choice(("\n=", "\n", "=")) + base64.b64encode(crc.to_bytes(3, "big")).decode()
                + rng.choice(("\n-----END PGP SIGNATURE-----\n",) * 6 + ("", "\n-----END PGP SIGNATURE")))
        data = text.encode()
    for _ in range(rng.choice((0, 0, 0, 0, 1, 3))):
        if data:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
    return data


def gen_openpgp(rng: Rng, _: Path) -> Record:
    return {"data": as_text(gen_signature(rng))}


def run_openpgp(record: Record, _: Path) -> None:
    from mailpreflight.deps.openpgp import SignatureFile, read_signatures

    result = read_signatures(to_bytes(record["data"]))  # documented: never raises
    _check(isinstance(result, SignatureFile) and (result.problem is None) == bool(result.signatures), "odd result")
    for signature in result.signatures:
        _check(signature.issuer_keyid is None or re.fullmatch("[0-9A-F]{16}", signature.issuer_keyid) is not None,
               f"key id {signature.issuer_keyid!r}")
        _check(signature.issuer_fpr is None or re.fullmatch("[0-9A-F]{40}", signature.issuer_fpr) is not None,
               f"fingerprint {signature.issuer_fpr!r}")


# unit files and drop-ins: the config parser


def gen_unit_file(rng: Rng, _: Path) -> Record:
    from mailpreflight.units.syntax import SECTIONS_BY_TYPE

    data = text_for(rng, "unit") if rng.random() < 0.95 else as_text(rng.randbytes(rng.randrange(200)))
    sections = rng.choice((None, sorted(SECTIONS_BY_TYPE["service"]), ["Manager"], ["Unit", "-Service", "X"]))
    return {"data": data, "sections": sections, "path": rng.choice(("/etc/systemd/system/a.service",
                                                                    "/run/x.service.d/10-\x1b.conf"))}


def run_unit_file(record: Record, _: Path) -> None:
    from mailpreflight.units.syntax import ParsedFile, parse_unit_file

    sections = record["sections"]
    parsed = parse_unit_file(to_bytes(record["data"]), record["path"], frozenset(sections) if sections else None)
    _check(isinstance(parsed, ParsedFile), "parse_unit_file returned no ParsedFile")
    _check(parsed.fatal is None or parsed.fatal in parsed.diagnostics, "a fatal error missing from diagnostics")
    _check(all(a.key and a.key == a.key.strip(" \t\n\r") for a in parsed.assignments), "an empty or padded key")


# Exec lines


def gen_exec_line(rng: Rng, _: Path) -> Record:
    from mailpreflight.units.execline import EXEC_KEYS

    return {"key": rng.choice(EXEC_KEYS), "value": text_for(rng, "exec"), "unit": gen_unit_name(rng),
            "host": _host_facts(rng), "version": rng.choice((252, 252, 258)),
            "flags": [rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5]}


def _expander(unit: str, host: dict[str, str], user: bool = False) -> Any:
    from mailpreflight.units.specifiers import Expander, system_manager, user_manager
    from mailpreflight.units.unitname import parse_unit_name

    name = parse_unit_name(unit) or parse_unit_name("fallback@inst.service")
    assert name is not None
    manager = (user_manager({"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"}, {"u": "u", "U": "1000"}, host)
               if user else system_manager(host))
    return Expander(name, manager)


def run_exec_line(record: Record, _: Path) -> None:
    from mailpreflight.model import Source
    from mailpreflight.units.execline import ExecParse, extract_first_word, parse_exec

    warnings: list[str] = []
    value = record["value"]
    parsed = parse_exec(record["key"], value, Source("/etc/systemd/system/a.service", 3),
                        _expander(record["unit"], record["host"]), warnings, record["version"])
    _check(isinstance(parsed, ExecParse), "parse_exec returned no ExecParse")
    _check(not parsed.fatal or parsed.error is not None, "fatal without an error message")
    for command in parsed.commands:
        _check(bool(command.path) and all(isinstance(a, str) for a in command.argv), f"bad command {command}")
    relax_escapes, cunescape, relax = record["flags"]
    pos = 0
    with documented(ValueError):  # extract_first_word documents ValueError for bad quoting and escapes
        for _ in range(len(value) + 1):
            word, end = extract_first_word(value, pos, relax_escapes=relax_escapes, cunescape=cunescape, relax=relax)
            if word is None:
                break
            _check(end > pos, f"extract_first_word did not advance at {pos}")
            pos = end


# specifiers


def gen_specifiers(rng: Rng, _: Path) -> Record:
    return {"text": text_for(rng, "specifier"), "unit": gen_unit_name(rng), "host": _host_facts(rng),
            "user": rng.random() < 0.3, "max": rng.choice((4096, 1024 * 1024, 8))}


def run_specifiers(record: Record, _: Path) -> None:
    from mailpreflight.units.specifiers import SpecifierError

    expander = _expander(record["unit"], record["host"], record["user"])
    with documented(SpecifierError):  # systemd refuses the setting
        result = expander.expand(record["text"], record["max"])
        _check(len(result) < record["max"], "expanded beyond max_length")


# unit names


def gen_unit_names(rng: Rng, _: Path) -> Record:
    return {"names": [text_for(rng, "unitname") for _ in range(rng.randrange(1, 4))]}


def run_unit_names(record: Record, _: Path) -> None:
    from mailpreflight.units.unitname import (
        dropin_unit_names,
        escape,
        instance_is_valid,
        parse_unit_name,
        path_unescape,
        prefix_is_valid,
        unescape,
    )

    for name in record["names"]:
        parsed = parse_unit_name(name)
        names = dropin_unit_names(name)
        _check(bool(names) and names[0] == name, "dropin_unit_names must start with the name itself")
        instance_is_valid(name)
        prefix_is_valid(name)
        if parsed is not None:
            _check(parsed.name == name and f"{parsed.prefix}" in name, "parse_unit_name changed the name")
            _check(parsed.template is None or parse_unit_name(parsed.template) is not None, "invalid template name")
            for part in (parsed.prefix, parsed.instance or ""):
                with documented(ValueError):  # a bad \x escape
                    unescape(part)
                with documented(ValueError):  # not a normalized path
                    path_unescape(part)
        if not any("\ud800" <= c <= "\udfff" for c in name):  # escape() takes text; guest names never reach it
            _check(unescape(escape(name)) == name, f"unescape(escape({name!r})) differs")


# environment files, Environment=, $VAR


def gen_environment(rng: Rng, _: Path) -> Record:
    data = text_for(rng, "envfile") if rng.random() < 0.95 else as_text(rng.randbytes(rng.randrange(300)))
    argv = [rng.choice((*ARGS, "$A", "${A}", "$SPAMD_ARGS", "${X}${Y}", "$$A", "${A:-x}", "$", "${", "a${A}b"))
            for _ in range(rng.randrange(6))]
    return {"data": data, "version": rng.choice((252, 254)), "value": text_for(rng, "environ"), "argv": argv,
            "unit": gen_unit_name(rng)}


def run_environment(record: Record, _: Path) -> None:
    from mailpreflight.units.environ import (
        EnvFileResult,
        env_name_is_valid,
        expand_argv,
        merge,
        parse_env_file,
        parse_environment_value,
    )

    result = parse_env_file(to_bytes(record["data"]), record["version"])
    _check(isinstance(result, EnvFileResult), "parse_env_file returned no EnvFileResult")
    names = [name for name, _ in result.env]
    _check(all(env_name_is_valid(n) for n in names), "an invalid name kept")
    _check(len(names) == len(set(names)), "a name assigned twice is kept twice")
    warnings: list[str] = []
    assignments = parse_environment_value(record["value"], _expander(record["unit"], {}), warnings)
    env = merge(assignments, result.env)
    _check(all(isinstance(w, str) for w in expand_argv(record["argv"], env)), "expand_argv gave a non-string")


# the sh -c reader


def gen_shell_script(rng: Rng, _: Path) -> Record:
    env = {k: rng.choice(("", "1", "a b", "$(x)", "http://p:3128")) for k in rng.sample(("A", "OPTIONS", "L", "X"),
                                                                                          rng.randrange(3))}
    script = text_for(rng, "shell")
    if rng.random() < 0.1:
        script = rng.choice(("#!/bin/sh -e\n", "#!/bin/bash -eu\n", "#!/bin/sh --\n", "set -e; ")) + script
    return {"script": script, "env": env}


def run_shell_script(record: Record, _: Path) -> None:
    from mailpreflight.deps.shell import ShellReading, read_shell

    reading = read_shell(record["script"], record["env"])
    _check(isinstance(reading, ShellReading), "read_shell returned no ShellReading")
    _check(all(c.line >= 1 and c.argv for c in reading.commands), "a command without a line or argv")


# resolv.conf


def gen_resolv(rng: Rng, _: Path) -> Record:
    return {"text": text_for(rng, "resolv")}


def run_resolv(record: Record, _: Path) -> None:
    import ipaddress

    from mailpreflight.probes.resolvconf import MAXNS, parse_resolv_conf

    config = parse_resolv_conf(record["text"], "/etc/resolv.conf")
    # glibc keeps only addresses, at most MAXNS: anything else would become a broken firewall rule or probe
    _check(bool(config.nameservers) and len(config.servers) <= MAXNS, f"nameservers {config.nameservers!r}")
    for server in config.nameservers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise OracleError(f"nameserver {server!r} is not an address") from None


# postfix main.cf / master.cf, Cyrus SASL's key: value files


def gen_postfix(rng: Rng, _: Path) -> Record:
    return {"main": text_for(rng, "main.cf"), "master": text_for(rng, "master.cf"), "colon": text_for(rng, "colon"),
            "cyrus": text_for(rng, "cyrus")}


def run_postfix(record: Record, _: Path) -> None:
    from mailpreflight.auth import services
    from mailpreflight.deps.postfix import RELAY_SETTINGS, TRANSPORT_SETTINGS, destination_deps, expand, read_main_cf

    settings = read_main_cf(record["main"])
    _check(all(line >= 1 for _, line in settings.values()), "a setting without a line")
    asked = {*RELAY_SETTINGS, *TRANSPORT_SETTINGS, "smtpd_sasl_type", "smtpd_sasl_path", "multi_instance_directories",
             *list(settings)[:20]}  # what the code asks for, and a few more: each call may read the whole file
    for name in asked & set(settings):
        raw, line = settings[name]
        value = expand(raw, settings)
        if name in RELAY_SETTINGS + TRANSPORT_SETTINGS and value:
            destination_deps(value, f"/etc/postfix/main.cf:{line}")
    for name, overrides, _line in services._master_smtpd(record["master"]):
        _check(isinstance(name, str) and isinstance(overrides, dict), "bad master.cf entry")
    services._colon_conf(record["colon"])
    for command in ("imapd", "pop3d", "timsieved"):
        services._cyrus_runs(record["cyrus"], command)


# trees: the loader, the start-path analysis, PAM, Dovecot, the mail logins


def _tree_record(rng: Rng, workdir: Path, focus: tuple[str, ...] | None, **extra: Any) -> Record:
    tree = random_tree(rng, focus)
    record = {"tree": tree, **extra}
    write_root(record, workdir)
    return record


def write_root(record: Record, workdir: Path) -> Path:
    root = workdir / "root"
    wipe(root)
    materialize(record["tree"], root)
    return root


def _names_in(tree: Tree, rng: Rng) -> list[str]:
    names = sorted({posixpath.basename(p) for p in tree if "/systemd/" in p
                    and posixpath.basename(p).rpartition(".")[2] in UNIT_TYPES})
    picked = rng.sample(names, min(len(names), rng.randrange(1, 4))) if names else []
    return [*picked, *(gen_unit_name(rng) for _ in range(rng.randrange(2)))]


def gen_loader(rng: Rng, workdir: Path) -> Record:
    tree = random_tree(rng, ("unit", "envfile", "shell"))
    record = {"tree": tree, "names": _names_in(tree, rng)}
    write_root(record, workdir)
    return record


def run_loader(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.render.show import render_json, render_text
    from mailpreflight.units.loader import UnitLoader, exec_environment, expand_command
    from mailpreflight.units.view import show_view

    fs = RootFS(str(workdir / "root"))
    loader = UnitLoader(fs)
    with documented(MailpreflightError):
        loader.service_names()
    for name in record["names"]:
        with documented(MailpreflightError):
            unit = loader.load(name)
            environment = exec_environment(unit, fs)
            for commands in unit.exec.values():
                for command in commands:
                    expand_command(command, environment.variables)
            json.loads(render_json(show_view(unit, environment)))
            render_text(show_view(unit, environment, fs))


def gen_deps(rng: Rng, workdir: Path) -> Record:
    return _tree_record(rng, workdir, None, sa_version=rng.choice((None, None, "3.004006", "4.000001", "x", "")))


def run_deps(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.deps.analyze import analyze_tree
    from mailpreflight.deps.view import deps_view
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.firewall.rules import allow_list
    from mailpreflight.probes.resolvconf import read_resolv_conf
    from mailpreflight.render import deps, firewall
    from mailpreflight.units.loader import UnitLoader

    fs = RootFS(str(workdir / "root"))
    with documented(MailpreflightError):
        results = analyze_tree(UnitLoader(fs), record["sa_version"])
        views = deps_view(results)
        json.loads(deps.render_json(views))
        deps.render_text(views)
        rules = allow_list(results, read_resolv_conf(fs).nameservers)
        firewall.render_nft(rules)
        firewall.render_iptables(rules)


PAM_NAMES = ("imap", "smtp", "dovecot", "other", "pop3", "sieve", "IMAP", "a/b/imap", "../imap", "", ".", "common-auth",
             "x\x1b", "\udcff")


def gen_pam_tree(rng: Rng, workdir: Path) -> Record:
    return _tree_record(rng, workdir, ("pam",), services=rng.sample(PAM_NAMES, rng.randrange(1, 5)))


def run_pam(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth import pam

    fs = RootFS(str(workdir / "root"))
    for name in record["services"]:
        service = pam.resolve(fs, name)
        _check(isinstance(service, pam.PamService), "resolve returned no PamService")
        for pam_type in pam.TYPES:
            service.stack(pam_type)
            service.modules(pam_type)


def gen_dovecot_tree(rng: Rng, workdir: Path) -> Record:
    tree = random_tree(rng, ("dovecot",))
    if rng.random() < 0.5:  # make sure there is a dovecot.conf to start from
        tree["/etc/dovecot/dovecot.conf"] = text_for(rng, "dovecot")
    record = {"tree": tree, "postfix_uses_dovecot": rng.random() < 0.5}
    write_root(record, workdir)
    return record


def run_dovecot(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth import services

    fs = RootFS(str(workdir / "root"))
    for path in services.read_dovecot(RootFS(str(workdir / "root")), record["postfix_uses_dovecot"]):
        _check(isinstance(path, services.AuthPath), "read_dovecot returned a non-AuthPath")
    services.read_dovecot_config(fs)


def gen_firewall_tree(rng: Rng, workdir: Path) -> Record:
    tree = random_tree(rng, ("nft",))
    for _ in range(rng.randrange(1, 5)):
        path = rng.choice([p for p in NEW_FILES if dialect_of(p) == "nft"]).format(rng.choice(NAME_PARTS))
        tree[path] = text_for(rng, "nft")
    if rng.random() < 0.2:  # an include loop through a link
        tree["/etc/nftables.d/loop.nft"] = {"link": "../nftables.conf"}
    record = {"tree": tree}
    write_root(record, workdir)
    return record


def run_firewall(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.firewall import guest, nftinclude

    root = str(workdir / "root")
    try:
        ruleset = guest.find_ruleset(RootFS(root))
    except MailpreflightError as exc:  # documented: names the guest file and line
        _check(root not in str(exc), f"a host path in the error: {exc}")
        return
    ruleset.interfaces()
    ruleset.loads()
    if ruleset.kind == "nft":
        _check(not nftinclude.include_keywords(ruleset.text), "an include left in the ruleset nft is given")
        _check(all(p.startswith("/") and root not in p for p, _ in ruleset.origins), "an origin is not a guest path")


def gen_auth(rng: Rng, workdir: Path) -> Record:
    return _tree_record(rng, workdir, ("pam", "main.cf", "master.cf", "dovecot", "colon", "cyrus", "envfile", "unit"))


def run_auth(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.auth.check import analyze_auth, auth_view
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.render.auth import auth_json, auth_text

    fs = RootFS(str(workdir / "root"))
    with documented(MailpreflightError):
        report = analyze_auth(fs)
        views = auth_view(report)
        json.dumps(auth_json(views))
        auth_text(views)
        for issue in report.issues:
            json.dumps(issue.to_json())


# snapshot baselines: drift and restore read a JSON file that travelled through tickets

BASE_KEYS = 48  # distinct base roots whose snapshot is taken once per process and then tampered with
_BASES: dict[int, tuple[Tree, str]] = {}
JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 2**64, -(2**70), float("inf"), float("nan"), "", "x", "0644", "7777", "04755",
    "0o644", "644 ", "99999999999", "-1", "\udc80", "\x1b[2J", "/etc/../../tmp/x", [], {}, [1, "a"], {"a": 1},
    {"type": "file"}, [[[[[]]]]],
)
FILE_KEYS = ("type", "mode", "uid", "gid", "owner", "group", "target", "sha256", "text", "size", "text_omitted")
BASELINE_PATHS = ("/etc/pam.d/imap", "/etc/pam.d/smtp", "/etc/pam.d/common-auth", "/etc/postfix/main.cf",
                  "/etc/dovecot/dovecot.conf", "/etc/pam.d/new", "/etc/sasl2/smtpd.conf", "/usr/lib/pam.d/x",
                  "/etc/pam.d", "/etc", "/", "", "relative", "/etc//pam.d/imap", "/etc/./pam.d/imap",
                  "/etc/pam.d/../pam.d/imap", "/etc/../../../../tmp/x", "/etc/x\x00y", "/etc/\x1b]0;t\x07",
                  "/etc/\udcff", "/etc/" + "d/" * 200 + "x", "/etc/pam.d/imap/child",
                  "/etc/pam.d/imap.mailpreflight-backup")
SOUND_PATHS = ("/etc/pam.d/imap", "/etc/pam.d/smtp", "/etc/pam.d/pop3", "/etc/pam.d/common-auth", "/etc/pam.d/new",
               "/etc/sasl2/smtpd.conf", "/etc/postfix/main.cf", "/etc/postfix/master.cf", "/etc/dovecot/dovecot.conf",
               "/etc/new/dir/file.conf", "/etc/pam.d/imap.mailpreflight-backup", "/etc/\udcff", "/etc/x y")


def key_path(workdir: Path) -> str:
    """The digest key of a scratch directory: snapshots, drift and restore use it, never the host's."""
    return str(workdir / "digest.key")


_KEYS: dict[str, Any] = {}


def digest_key(workdir: Path) -> Any:
    from mailpreflight.baseline.digestkey import load_or_create

    path = key_path(workdir)
    if path not in _KEYS:
        _KEYS[path] = load_or_create(path)
    return _KEYS[path]


def record_key(record: Record, workdir: Path) -> str:
    """The key file a baseline record was made with, written again from the record (so that a saved failure
    replays with the very key its MACs were made with); a record without one uses the scratch directory's."""
    if "digest_key" not in record:
        return key_path(workdir)
    path = workdir / "record.key"
    path.write_text(record["digest_key"])
    path.chmod(0o600)
    return str(path)


def resign(document: Any, digest: Any) -> None:
    """MAC every entry again with the key: a baseline edited by someone who holds the host's key (restore then
    trusts it; what it does with odd entries is what is tested)."""
    files = document.get("files") if isinstance(document, dict) else None
    for path, entry in (files.items() if isinstance(files, dict) else ()):
        if isinstance(entry, dict):
            entry.pop("mac", None)
            entry["mac"] = digest.mac(path, entry)


def _base(key: int, workdir: Path) -> tuple[Tree, dict[str, Any]]:
    """Base root number `key` and its snapshot (taken with the real `snapshot` code)."""
    if key not in _BASES:
        from mailpreflight.access.rootfs import RootFS
        from mailpreflight.baseline.snapshot import KIND, SCHEMA_VERSION, take
        from mailpreflight.errors import MailpreflightError

        tree = random_tree(random.Random(7919 * key + 17), ("pam", "main.cf", "dovecot", "colon", "unit"))
        root = workdir / "base"
        wipe(root)
        materialize(tree, root)
        document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": KIND, "files": {}, "findings": []}
        with documented(MailpreflightError):
            document = take(RootFS(str(root)), "/mnt/guest", digest_key(workdir))
        wipe(root)
        _BASES[key] = (tree, json.dumps(document))
    tree, text = _BASES[key]
    return tree, json.loads(text)


def _random_json(rng: Rng, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.2:
        return {rng.choice(FILE_KEYS): _random_json(rng, depth + 1) for _ in range(rng.randrange(3))}
    return copy.deepcopy(rng.choice(JSON_VALUES))  # a fresh copy: no document shares (or contains) itself


def tamper(rng: Rng, document: dict[str, Any]) -> Any:
    """A baseline edited by hand or by an attacker: wrong types, missing keys, odd paths, modes and ids."""
    for _ in range(rng.randrange(1, 5)):
        files = document.get("files") if isinstance(document, dict) else None
        op = rng.randrange(9)
        if op == 0 and isinstance(document, dict):
            document[rng.choice(("kind", "schema_version", "files", "findings", "host", "salt", "created", "root",
                                 "truncated"))] = _random_json(rng)
        elif op in (1, 2) and isinstance(files, dict) and files:
            path = rng.choice(sorted(files))
            entry = files[path]
            if isinstance(entry, dict):
                key = rng.choice(FILE_KEYS)
                if rng.random() < 0.3:
                    entry.pop(key, None)
                else:
                    entry[key] = _random_json(rng)
        elif op == 3 and isinstance(files, dict) and files:
            files[rng.choice(sorted(files))] = _random_json(rng)
        elif op in (4, 5) and isinstance(files, dict):  # a restorable-looking entry, often at a sound path
            odd = rng.random() < 0.3
            kind = rng.choice(("file", "file", "symlink", "symlink", "dir", "other", "fifo"))
            entry = {"type": kind, "mode": rng.choice(("0644", "0600", "4755", "7777", "0000", "0640")),
                     "uid": rng.choice((0, 0, 1000, 65534)), "gid": rng.choice((0, 0, 5, 65534)),
                     "owner": "root", "group": "root"}
            if odd:
                entry[rng.choice(("mode", "uid", "gid"))] = rng.choice(("17777", "0", -1, 2**32, 2**40, "x"))
            if kind == "file":
                entry["text"] = rng.choice(("auth required pam_unix.so\n", "", "x <redacted>\n", None, "\udc80\n",
                                            "no newline", "a\r\nb\x00c\x1b[2J"))
                entry["sha256"] = "0" * 64
            elif kind == "symlink":
                entry["target"] = rng.choice(("/dev/null", "common-auth", "../pam.d/other", "/", "x" * 300,
                                              "\udcff", *((None, "", "x" * 5000, 5) if odd else ())))
            files[rng.choice(BASELINE_PATHS if odd else SOUND_PATHS)] = entry
        elif op == 6 and isinstance(document, dict):
            findings = document.get("findings")
            if isinstance(findings, list):
                findings.append(_random_json(rng) if rng.random() < 0.5 else
                                {"code": rng.choice(("MP301", 1, None)), "subject": _random_json(rng),
                                 "severity": _random_json(rng), "message": _random_json(rng)})
        elif op == 7 and isinstance(document, dict):
            document["host"] = rng.choice(({"machine_id": _random_json(rng)}, {"hostname": [1]}, "host", [],
                                           {"hostname": "other", "machine_id": None}, None))
        elif op == 8:
            document = rng.choice((_random_json(rng), [document], document))
    return document


def _baseline_text(rng: Rng, document: Any) -> str:
    text = json.dumps(document, indent=rng.choice((None, 1)))
    op = rng.randrange(10)
    if op == 0:
        text = mutate(rng, text, ['"', "{", "}", "[", "]", ",", ":", "\\", "\\u", "\\ud800", "NaN", "-Infinity",
                                  "1e999", "null", "true"], [])
    elif op == 1:
        text = rng.choice(("\ufeff", "\udcff", "[" * 100_000, "{\"a\":" * 50_000, "")) + text
    elif op == 2:
        text = text[: rng.randrange(len(text) + 1)]
    return text


def gen_baseline(rng: Rng, workdir: Path) -> Record:
    base_tree, document = _base(rng.randrange(BASE_KEYS), workdir)
    tree = mutate_tree(rng, base_tree, ("pam", "main.cf", "dovecot", "colon")) if rng.random() < 0.8 else base_tree
    if rng.random() < 0.7:
        document = tamper(rng, document)
        if rng.random() < 0.5:
            resign(document, digest_key(workdir))
    files = document.get("files") if isinstance(document, dict) else None
    known = sorted(files) if isinstance(files, dict) else []
    sound = [p for p in known if p in SOUND_PATHS or p.startswith(("/etc/pam.d/", "/etc/postfix/", "/etc/sasl2/"))]
    paths = [*rng.sample(known, min(len(known), rng.randrange(3))), *rng.sample(sound, min(len(sound), 2)),
             *rng.sample(BASELINE_PATHS, rng.randrange(2))]
    if rng.random() < 0.2 and paths:  # a backup left from an earlier restore
        tree = {**tree, paths[0] + ".mailpreflight-backup": "old\n"}
    record = {"tree": tree, "baseline": _baseline_text(rng, document), "other_host": rng.random() < 0.8,
              "paths": paths, "dry_run": rng.random() < 0.5,
              "digest_key": Path(key_path(workdir)).read_text(encoding="ascii")}
    write_root(record, workdir)
    return record


def _write_baseline(record: Record, workdir: Path) -> str:
    path = workdir / "baseline.json"
    path.write_bytes(to_bytes(record["baseline"]))
    return str(path)


def run_drift(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.baseline import drift
    from mailpreflight.baseline.document import load_baseline
    from mailpreflight.errors import MailpreflightError
    from mailpreflight.render import drift as render

    file = _write_baseline(record, workdir)
    with documented(MailpreflightError):
        baseline = load_baseline(file)
        result = drift.compare(file, baseline, RootFS(str(workdir / "root")), record["other_host"],
                               record_key(record, workdir))
        json.dumps(render.to_json(result))
        render.render_text(result)


def _stays_inside(root: Path, guest: Any) -> bool:
    """Only paths that cannot lead out of the scratch root are restored (the fuzzer must not write the host):
    /etc/..., normalized, and no existing component but the last one a link or a file."""
    if not isinstance(guest, str) or not guest.startswith("/etc/") or "\0" in guest or len(guest) > 4000:
        return False
    if posixpath.normpath(guest) != guest:
        return False
    walked = root
    for part in guest.split("/")[1:-1]:
        walked = walked / part
        if walked.is_symlink() or (walked.exists() and not walked.is_dir()):
            return False
    return True


def run_restore(record: Record, workdir: Path) -> None:
    from mailpreflight.access.rootfs import RootFS
    from mailpreflight.baseline import drift
    from mailpreflight.baseline.digestkey import for_baseline
    from mailpreflight.baseline.document import load_baseline
    from mailpreflight.baseline.restore import restore
    from mailpreflight.errors import MailpreflightError

    file = _write_baseline(record, workdir)
    root = workdir / "root"
    fs = RootFS(str(root))
    with documented(MailpreflightError):
        baseline = load_baseline(file)
        drift.check_host(file, baseline, fs, record["other_host"])
        digest = for_baseline(file, baseline, record_key(record, workdir))
        for path in record["paths"]:
            if _stays_inside(root, path):
                with documented(MailpreflightError):
                    result = restore(fs, file, baseline, path, record["dry_run"], digest=digest)
                    _check(isinstance(result.message, str) and isinstance(result.diff, str), "odd Restored")


# the whole command line, in-process

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def gen_cli(rng: Rng, workdir: Path) -> Record:
    verb = rng.choice(("show", "show", "deps", "drift", "drift", "snapshot"))
    if verb == "drift":
        record = gen_baseline(rng, workdir)
        form = rng.choice(("text", "json"))
        record["argv"] = ["drift", "--baseline", "{baseline}", "--root", "{root}", "--format", form, "--digest-key",
                          "{key}",
                          *(["--other-host"] if record["other_host"] else [])]
        return record
    tree = random_tree(rng)
    if verb == "show":
        name = rng.choice(_names_in(tree, rng) or ["spamd.service"])
        argv = ["show", "--root", "{root}", "--format", rng.choice(("text", "json")),
                *(["--expand-env"] if rng.random() < 0.5 else []), "--", name]
    elif verb == "deps":
        names = _names_in(tree, rng) if rng.random() < 0.5 else []
        argv = ["deps", "--root", "{root}", "--format", rng.choice(("text", "json")),
                *([f"--sa-version={rng.choice(('3.004006', '4.000001', 'x'))}"] if rng.random() < 0.2 else []),
                "--", *names]
    else:
        argv = ["snapshot", "--root", "{root}", "--digest-key", "{key}"]
    record = {"tree": tree, "argv": argv}
    write_root(record, workdir)
    return record


def run_cli(record: Record, workdir: Path) -> None:
    from mailpreflight import cli

    baseline = _write_baseline(record, workdir) if "baseline" in record else ""
    values = {"{root}": str(workdir / "root"), "{baseline}": baseline, "{key}": record_key(record, workdir)}
    argv = [values.get(a, a) for a in record["argv"]]
    out, err = io.BytesIO(), io.BytesIO()
    # An admin's terminal under a UTF-8 locale: writing what is not UTF-8 fails there, so it fails here.
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", newline="\n", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="strict", newline="\n", write_through=True)
    code = cli.main(argv, cli.Environment(stdout=stdout, stderr=stderr, stdout_isatty=False, environ={}))
    printed, said = out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8")
    _check(code in (0, 1, 2, 3), f"exit code {code}")
    crash = re.search(r"internal error at (\S+): (\w+)", said)
    _check(crash is None, f"internal error at {crash and crash.group(1)}: {crash and crash.group(2)}; {said[-1500:]}")
    _check("Traceback" not in said, f"a traceback on stderr: {said[-2000:]}")
    _check(said.count("\n") <= 1 + said.count("mailpreflight: "), f"stderr: {said[-2000:]}")
    _check(not _CONTROL.search(said), f"a raw control character on stderr: {said[-500:]!r}")
    # guest files are named as the guest sees them, never by host path; only the read gate's refusals name the
    # file on the host, on purpose (cli/app.py: where the admin finds it)
    host_prefix = values["{root}"] + "/"
    refusal = f"mailpreflight: warning: {host_prefix}"
    told = "".join(line for line in said.splitlines(True) if not line.startswith(refusal))
    _check(host_prefix not in told and host_prefix not in printed, "a host path of a guest file in the output")
    if "json" in argv or argv[0] == "snapshot":
        if printed:
            json.loads(printed)
    else:
        _check(not _CONTROL.search(printed), "a raw control character in text output")


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("unit-file", "units.syntax.parse_unit_file (unit files, drop-ins, system.conf)", gen_unit_file,
           run_unit_file, suite_examples=400),
    Target("exec-line", "units.execline.parse_exec, extract_first_word", gen_exec_line, run_exec_line,
           suite_examples=400),
    Target("specifiers", "units.specifiers.Expander.expand", gen_specifiers, run_specifiers, suite_examples=300),
    Target("unit-name", "units.unitname: parse_unit_name, dropin_unit_names, unescape, path_unescape, escape",
           gen_unit_names, run_unit_names, suite_examples=300),
    Target("environment", "units.environ: parse_env_file, parse_environment_value, expand_argv", gen_environment,
           run_environment, suite_examples=400),
    Target("shell", "deps.shell.read_shell (sh -c strings, scripts)", gen_shell_script, run_shell_script,
           suite_examples=400),
    Target("resolv-conf", "probes.resolvconf.parse_resolv_conf", gen_resolv, run_resolv, suite_examples=300),
    Target("openpgp", "deps.openpgp.read_signatures (a mirror's .asc)", gen_openpgp, run_openpgp,
           suite_examples=200),
    Target("postfix", "deps.postfix read_main_cf/expand/destination_deps; auth.services master.cf, SASL, cyrus.conf",
           gen_postfix, run_postfix, suite_examples=300),
    Target("loader", "units.loader.UnitLoader.load, exec_environment, show_view/render on a generated root",
           gen_loader, run_loader, tree=True, suite_examples=120),
    Target("deps", "deps.analyze.analyze_tree, deps_view, firewall allow_list and renderers on a generated root",
           gen_deps, run_deps, tree=True, suite_examples=60),
    Target("pam", "auth.pam.resolve on a generated root", gen_pam_tree, run_pam, tree=True, suite_examples=120),
    Target("dovecot", "auth.services.read_dovecot (with !include) on a generated root", gen_dovecot_tree,
           run_dovecot, tree=True, suite_examples=120),
    Target("guest-firewall", "firewall.guest.find_ruleset (nft includes inlined in the guest, iptables-save), "
           "interfaces", gen_firewall_tree, run_firewall, tree=True, suite_examples=120),
    Target("auth", "auth.check.analyze_auth (postfix, master.cf, SASL, saslauthd, cyrus, dovecot, PAM), renderers",
           gen_auth, run_auth, tree=True, suite_examples=60),
    Target("baseline-drift", "baseline.document.load_baseline, drift.compare, render.drift on tampered JSON",
           gen_baseline, run_drift, tree=True, suite_examples=60),
    Target("baseline-restore", "baseline.document.load_baseline, drift.check_host, restore on tampered JSON",
           gen_baseline, run_restore, tree=True, suite_examples=60),
    Target("cli", "cli.main show/deps/drift/snapshot in-process on generated roots", gen_cli, run_cli, tree=True,
           suite_examples=60),
)}


# --- running ----------------------------------------------------------------------------------------------------


@dataclass
class Failure:
    target: str
    kind: str  # crash | hang
    phase: str  # generate | run
    error: str  # "TypeError: ..." on one line
    where: str  # the innermost frame in the project's code
    trace: str = field(repr=False, default="")

    @property
    def signature(self) -> str:
        """What tells one bug from another: the exception type and where it was raised (and, for a broken rule,
        the start of its message, which names the rule)."""
        kind = self.error.split(":", 1)[0]
        detail = f" ({self.error.split(';', 1)[0][len(kind) + 2:][:60]})" if kind == "OracleError" else ""
        return f"{self.target} {self.kind} {kind}{detail} at {self.where}"


def _failure(target: Target, kind: str, phase: str, exc: BaseException) -> Failure:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}mailpreflight{os.sep}" in f.filename] or frames
    frame = ours[-1] if ours else None
    where = f"{_short(frame.filename)}:{frame.lineno} in {frame.name}" if frame else "?"
    error = f"{type(exc).__name__}: {exc}".replace("\n", "\\n")[:400]
    return Failure(target.name, kind, phase, error, where, "".join(traceback.format_exception(exc))[-8000:])


def _short(filename: str) -> str:
    for marker in (f"src{os.sep}mailpreflight{os.sep}", f"tests{os.sep}"):
        if marker in filename:
            return marker.split(os.sep)[0] + "/" + filename.split(marker, 1)[1]
    return filename


@contextlib.contextmanager
def time_limit(seconds: float, wall_factor: float = 10.0) -> Iterator[None]:
    """Raise Hang in the main thread after `seconds` of CPU time (SIGPROF: a loaded machine does not make an
    example a hang), or when it is blocked: no CPU time used in a whole `wall_factor` x `seconds` of wall-clock
    time (SIGALRM; a read that blocks uses none). An example that is only starved of CPU (other processes,
    nice) is given more wall-clock time, as long as it uses some."""
    interval = seconds * wall_factor
    # the main thread's own CPU time: other threads of the process (a test session's leftovers) are no progress
    used = [time.thread_time()]

    def on_cpu(_signum: int, _frame: Any) -> None:
        raise Hang(f"more than {seconds:g} s of CPU time")

    def on_wall(_signum: int, _frame: Any) -> None:
        now = time.thread_time()
        progressed, used[0] = now - used[0] > interval / 1000, now
        if not progressed:
            raise Hang(f"blocked: no CPU time used in {interval:g} s")
        signal.setitimer(signal.ITIMER_REAL, interval)

    previous = signal.signal(signal.SIGPROF, on_cpu), signal.signal(signal.SIGALRM, on_wall)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


def example_rng(seed: int, target: str, index: int) -> Rng:
    """The generator of example `index` of `target` in a campaign with `seed`: any example can be made again."""
    import zlib

    return random.Random((seed * 1_000_003 + zlib.crc32(target.encode())) * 1_000_000_007 + index)


def check(target: Target, record: Record, workdir: Path, limit: float = HANG_SECONDS,
          prepared: bool = False) -> Failure | None:
    """Run one example under the oracles; None when it passes."""
    if target.tree and not prepared:
        write_root(record, workdir)
    try:
        with time_limit(limit):
            target.run(record, workdir)
    except Hang as exc:
        return _failure(target, "hang", "run", exc)
    except (Exception, SystemExit) as exc:
        return _failure(target, "crash", "run", exc)
    return None


def run_one(target: Target, rng: Rng, workdir: Path, limit: float = HANG_SECONDS) -> tuple[Failure | None, Record]:
    """Generate one example and check it. Generation runs real code too (the base snapshot of a baseline): what
    goes wrong there is reported as well."""
    try:
        with time_limit(limit * 10):
            record = target.generate(rng, workdir)
    except Hang as exc:
        return _failure(target, "hang", "generate", exc), {}
    except (Exception, SystemExit) as exc:
        return _failure(target, "crash", "generate", exc), {}
    return check(target, record, workdir, limit, prepared=True), record


def save(directory: Path, failure: Failure, record: Record, seed: int | None, index: int | None) -> Path:
    """Write the failing input (and what went wrong) where `benchmarks/fuzz.py --replay FILE` reads it."""
    import hashlib

    directory.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(failure.signature.encode()).hexdigest()[:10]
    path = directory / f"{failure.target}-{failure.kind}-{tag}-{index}.json"
    payload = {"target": failure.target, "seed": seed, "index": index, "failure": failure.__dict__, "record": record}
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=True) + "\n", encoding="ascii")
    return path


def replay(path: Path, workdir: Path, limit: float = HANG_SECONDS) -> Failure | None:
    payload = json.loads(path.read_text(encoding="ascii"))
    return check(TARGETS[payload["target"]], payload["record"], workdir, limit)


@contextlib.contextmanager
def scratch(under: str | None = None) -> Iterator[Path]:
    """A private working directory (in `under`), in memory when /dev/shm is there (roots are written per
    example)."""
    base = under or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    with tempfile.TemporaryDirectory(prefix="mailpreflight-fuzz-", dir=base) as directory:
        yield Path(directory)


def elapsed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
