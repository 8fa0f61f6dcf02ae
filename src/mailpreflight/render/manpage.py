"""The man page and the bash completion, generated from the argparse definitions so that they cannot drift.

    python tools/gendocs.py > docs/mailpreflight.1
    python tools/gendocs.py --completion > contrib/bash-completion/mailpreflight

Build-time only: pure functions of the parsers the caller passes (tools/gendocs.py passes cli.build_parser()).

`guard` is parsed before argparse sees the command line (cli.main); its options come from guard.build_parser().
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

from mailpreflight import __version__

SEE_ALSO = (("systemctl", 1), ("systemd.unit", 5), ("systemd.service", 5), ("systemd.exec", 5), ("sa-update", 1),
            ("nft", 8), ("iptables-restore", 8), ("firewall-cmd", 1), ("pam.conf", 5), ("saslauthd", 8))
EXIT_STATUS = (
    (0, "OK: every unit will start (check), nothing to report, or the action succeeded."),
    (1, "WARNING: the units will start, but something is degraded or a risk remains (deps, check); "
        "dropin show: the installed drop\\-in is outdated; drift: files changed since the baseline."),
    (2, "CRITICAL: a unit will not start or mail logins will fail (check), systemd would refuse the unit "
        "(show), the last start failed (explain), a change since the baseline causes a critical finding "
        "(drift)."),
    (3, "UNKNOWN: usage errors, an unknown unit, systemd cannot be reached, any other error."),
)
FILES = (
    ("/etc/systemd/system/\\fIUNIT\\fR.d/zz\\-mailpreflight.conf",
     "The drop\\-in written by \\fBdropin install\\fR and removed by \\fBdropin remove\\fR."),
    ("/etc/systemd/system/\\fIUNIT\\fR.d/zz\\-mailpreflight.conf.mailpreflight\\-backup",
     "A file of that name that was not ours, kept by \\fBdropin install\\fR and put back by "
     "\\fBdropin remove\\fR."),
    ("\\fIPATH\\fR.mailpreflight\\-backup",
     "The file \\fBrestore\\fR replaced, kept beside it (undo: move it back)."),
    ("/etc/resolv.conf",
     "The nameservers \\fBcheck\\fR probes with (see \\fB\\-\\-resolv\\-conf\\fR and \\fB\\-\\-guest\\-dns\\fR), "
     "and the resolvers \\fBfirewall\\fR allows."),
    ("/etc/pam.d, /usr/lib/pam.d, /usr/etc/pam.d, /etc/pam.conf",
     "The PAM configuration \\fBcheck\\fR reads for every mail login path, in libpam's order, and "
     "\\fBsnapshot\\fR records."),
    ("/etc/nftables.conf, /etc/sysconfig/nftables.conf, /etc/iptables/rules.v4, /etc/iptables/rules.v6, "
     "/etc/sysconfig/iptables, /etc/sysconfig/ip6tables",
     "The guest's own outgoing rules, for \\fBcheck \\-\\-root\\fR \\fIDIR\\fR \\fB\\-\\-guest\\-firewall\\fR "
     "(nft includes are read inside the guest)."),
    ("/run/mailpreflight/guestfw.lock, /run/mailpreflight/guestfw/",
     "The lock and the state file of each \\fB\\-\\-guest\\-firewall\\fR run, locked while it runs; "
     "\\fBcleanup\\fR removes what a killed run left."),
)


# --- roff -------------------------------------------------------------------------------------------------

_SPECIAL = {"\\": "\\e", "-": "\\-", "\u2014": "\\(em", "\u2013": "\\(en", "\u2192": "\\(->", "\u00a0": "\\~"}


def escape(text: str) -> str:
    """Text as roff shows it literally: backslashes, hyphens as \\-, non-ASCII as \\[uXXXX]."""
    out = []
    for char in text:
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif ord(char) > 126 or (ord(char) < 32 and char != "\n"):
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def _line(text: str) -> str:
    """One line of roff text that is not taken for a request: a leading dot or apostrophe gets \\&."""
    return "\\&" + text if text[:1] in (".", "'") else text


def _bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


# --- reading the parsers ----------------------------------------------------------------------------------


def verbs(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) for each verb, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _effective(name: str, sub: argparse.ArgumentParser,
               own: Mapping[str, argparse.ArgumentParser] | None) -> argparse.ArgumentParser:
    """A verb parsed before argparse (guard: cli.main) brings its own parser; the caller passes it in."""
    return (own or {}).get(name, sub)


def _is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if not text and not action.option_strings:
        text = "The unit, e.g. spamd.service." if action.metavar == "UNIT" else ""
    if "%" in text:
        text = text % {**vars(action), "prog": prog}
    if action.choices is not None:
        text = (text + " " if text else "") + "One of: " + ", ".join(str(c) for c in action.choices) + "."
    shown_default = action.default not in (None, argparse.SUPPRESS) and (
        action.choices is None or action.default in action.choices)  # firewall maps its "text" default to nft
    if action.option_strings and not _is_flag(action) and shown_default and "default" not in text:
        text = (text + " " if text else "") + f"Default: {action.default}."
    return text


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS]


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _synopsis_word(action: argparse.Action) -> str:
    if not action.option_strings:
        word = _italic(_metavar(action)) if action.choices is None else _bold("|".join(map(str, action.choices)))
        if action.nargs == "*":
            return f"[{word}\\ ...]"
        if action.nargs == "+":
            return f"{word}\\ [{word}\\ ...]"
        return word
    option = action.option_strings[-1]  # the long form
    if action.choices is not None:
        return f"[{_bold(option)}\\ {_bold('|'.join(map(str, action.choices)))}]"
    if _is_flag(action):
        return f"[{_bold(option)}]"
    return f"[{_bold(option)}\\ {_italic(_metavar(action))}]"


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [_bold("mailpreflight"), _bold(name)]
    if name == "dropin":  # the action first, as the usage line reads best
        words += [_synopsis_word(a) for a in _positionals(parser)]
        words += [_synopsis_word(a) for a in _options(parser) if "-h" not in a.option_strings]
    else:
        words += [_synopsis_word(a) for a in _options(parser) if "-h" not in a.option_strings]
        words += [_synopsis_word(a) for a in _positionals(parser)]
    if name == "guard":
        words += [_bold("--"), _italic("COMMAND"), f"[{_italic('ARG')}\\ ...]"]
    return " ".join(words)


def _option_tag(action: argparse.Action) -> str:
    if not action.option_strings:
        return _italic(_metavar(action)) if action.choices is None else _bold("|".join(map(str, action.choices)))
    value = "" if _is_flag(action) else " " + _italic(_metavar(action))
    return ", ".join(_bold(option) + value for option in action.option_strings)


def _describe(out: list[str], parser: argparse.ArgumentParser, prog: str) -> None:
    for action in _positionals(parser) + _options(parser):
        out += [".TP", _line(_option_tag(action)), _line(escape(_help(action, prog)) or "\\&")]


def _epilog(epilog: str) -> list[str]:
    """The parser's epilog: `  COMMAND   what it does` lines become tagged paragraphs; a heading such as
    `examples:` and the exit-status line (EXIT STATUS has it) are left out."""
    out: list[str] = []
    for line in epilog.splitlines():
        text = line.strip()
        if not text or re.fullmatch(r"[\w ]+:", text) or text.lower().startswith("exit status"):
            continue
        if line.startswith(" "):
            command, *meaning = re.split(r"\s{2,}", text, maxsplit=1)
            out += [".TP", _line(_bold(command)), _line(escape(" ".join(meaning))) if meaning else "\\&"]
        else:
            out += [".PP", _line(escape(text))]
    return out


def render_man(parser: argparse.ArgumentParser, own: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    """A roff man page (section 1) from the parser of cli.build_parser."""
    prog = parser.prog
    entries = [(name, helptext, _effective(name, sub, own)) for name, helptext, sub in verbs(parser)]
    out = [
        '.\\" Generated by `python tools/gendocs.py` from the argparse definitions. Do not edit.',
        f'.TH MAILPREFLIGHT 1 "" "{prog} {escape(__version__)}" "User Commands"',
        ".SH NAME",
        f"{prog} \\- {escape((parser.description or '').rstrip('.'))}",
        ".SH SYNOPSIS",
        ".nh",
        ".ad l",
        ".PP",
        f"{_bold(prog)} [{_bold('-h')}] [{_bold('--version')}]",
    ]
    for name, _, sub in entries:
        out += [".PP", _synopsis(name, sub)]
    out += [".ad",
            ".hy",
            ".SH DESCRIPTION",
            _line(escape(parser.description or "")),
            ".PP",
            "Commands:",
            ".RS"]
    for name, helptext, _ in entries:
        out += [".TP", _bold(name), _line(escape(helptext))]
    out += [".RE", ".SH OPTIONS"]
    _describe(out, parser, prog)
    out += [".SH COMMANDS"]
    for name, helptext, sub in entries:
        out += [f'.SS "{escape(name)}"', _line(escape(sub.description or helptext))]
        _describe(out, sub, sub.prog)
    out += [".SH EXIT STATUS"]
    for status, meaning in EXIT_STATUS:
        out += [".TP", f"\\fB{status}\\fR", meaning]
    out += [".PP",
            "\\fBguard\\fR exits 0 whatever the command did, so that it never fails a unit's start, and 3 on a "
            "usage error; with \\fB\\-\\-strict\\fR, the command's own status (124 on a timeout, 126 or 127 "
            "when it cannot be run).",
            ".SH FILES"]
    for path, meaning in FILES:
        out += [".TP", path, meaning]
    if parser.epilog:
        out += [".SH EXAMPLES", *_epilog(parser.epilog)]
    out += [".SH SEE ALSO",
            ",\n".join(f"\\fB{escape(page)}\\fR({section})" for page, section in SEE_ALSO)]
    return "\n".join(out) + "\n"


# --- bash completion --------------------------------------------------------------------------------------

_UNITS = "systemctl list-unit-files --no-legend --type=service 2>/dev/null | awk '{print $1}'"


def _values(action: argparse.Action) -> str:
    """The compgen arguments for an option's value: its choices, directories, files or nothing."""
    if action.choices is not None:
        return "-W " + _shell_quote(" ".join(str(c) for c in action.choices))
    metavar = _metavar(action)
    if metavar == "DIR":
        return "-d"
    if metavar == "FILE":
        return "-f"
    return ""


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _function_name(name: str) -> str:
    return "_mailpreflight_" + re.sub(r"\W", "_", name)


def _verb_function(name: str, parser: argparse.ArgumentParser) -> list[str]:
    options = _options(parser)
    valued = [a for a in options if not _is_flag(a)]
    words = " ".join(o for a in options for o in a.option_strings) + (" --" if name == "guard" else "")
    lines = [f"{_function_name(name)}() {{",
             "    local cur=$1 prev=$2 first=$3 i word skip=0 npos=0"]
    if name == "guard":  # everything after -- is the command
        lines += ["    for ((i = first; i < COMP_CWORD; i++)); do",
                  '        if [[ ${COMP_WORDS[i]} == -- ]]; then',
                  "            if ((i == COMP_CWORD - 1)); then",
                  '                mapfile -t COMPREPLY < <(compgen -c -- "$cur")',
                  "            else",
                  '                mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
                  "            fi",
                  "            return 0",
                  "        fi",
                  "    done"]
    if valued:
        lines += ['    case "$prev" in']
        for action in valued:
            pattern = "|".join(action.option_strings)
            compgen = _values(action)
            if compgen:
                lines += [f'        {pattern}) mapfile -t COMPREPLY < <(compgen {compgen} -- "$cur"); return 0 ;;']
            else:
                lines += [f"        {pattern}) return 0 ;;"]
        lines += ["    esac"]
    lines += ['    if [[ $cur == -* ]]; then',
              f'        mapfile -t COMPREPLY < <(compgen -W {_shell_quote(words)} -- "$cur")',
              "        return 0",
              "    fi"]
    positionals = _positionals(parser)
    if not positionals:
        if name == "guard":
            lines += ["    COMPREPLY=(--)"]
        lines += ["}"]
        return lines
    valued_pattern = "|".join(o for a in valued for o in a.option_strings)
    lines += ["    for ((i = first; i < COMP_CWORD; i++)); do",
              '        word=${COMP_WORDS[i]}',
              "        if ((skip)); then skip=0; continue; fi",
              '        case "$word" in']
    if valued_pattern:
        lines += [f"            {valued_pattern}) skip=1 ;;"]
    lines += ["            -*) ;;",
              "            *) npos=$((npos + 1)) ;;",
              "        esac",
              "    done"]
    lines += ['    case "$npos" in']
    for index, action in enumerate(positionals):
        last = index == len(positionals) - 1
        label = "*" if last and action.nargs in ("*", "+") else str(index)
        if action.choices is not None:
            compgen = "compgen -W " + _shell_quote(" ".join(str(c) for c in action.choices)) + ' -- "$cur"'
        else:
            compgen = 'compgen -W "$(_mailpreflight_units)" -- "$cur"'
        lines += [f"        {label}) mapfile -t COMPREPLY < <({compgen}) ;;"]
    lines += ["    esac", "}"]
    return lines


def render_bash_completion(parser: argparse.ArgumentParser,
                           own: Mapping[str, argparse.ArgumentParser] | None = None) -> str:
    """A bash completion script for the parser of cli.build_parser."""
    entries = [(name, _effective(name, sub, own)) for name, _, sub in verbs(parser)]
    names = " ".join(name for name, _ in entries)
    top = " ".join(o for a in _options(parser) for o in a.option_strings)
    lines = ["# bash completion for mailpreflight",
             "# Generated by `python tools/gendocs.py --completion` from the argparse definitions.",
             "# Install as /usr/share/bash-completion/completions/mailpreflight",
             "",
             "_mailpreflight_units() {",
             f"    {_UNITS}",
             "}",
             ""]
    for name, sub in entries:
        lines += [*_verb_function(name, sub), ""]
    lines += ["_mailpreflight() {",
              "    local cur prev verb='' i",
              "    COMPREPLY=()",
              '    cur=${COMP_WORDS[COMP_CWORD]}',
              "    prev=''",
              '    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}',
              "    for ((i = 1; i < COMP_CWORD; i++)); do",
              '        case "${COMP_WORDS[i]}" in',
              f"            {'|'.join(name for name, _ in entries)}) verb=${{COMP_WORDS[i]}}; break ;;",
              "        esac",
              "    done",
              '    if [[ -z $verb ]]; then',
              '        if [[ $cur == -* ]]; then',
              f'            mapfile -t COMPREPLY < <(compgen -W {_shell_quote(top)} -- "$cur")',
              "        else",
              f'            mapfile -t COMPREPLY < <(compgen -W {_shell_quote(names)} -- "$cur")',
              "        fi",
              "        return 0",
              "    fi",
              '    case "$verb" in']
    lines += [f'        {name}) {_function_name(name)} "$cur" "$prev" $((i + 1)) ;;' for name, _ in entries]
    lines += ["    esac",
              "    return 0",
              "}",
              "",
              "complete -F _mailpreflight mailpreflight"]
    return "\n".join(lines) + "\n"
