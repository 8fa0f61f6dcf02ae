"""fetchmail: the mail servers it polls, read from its run control file.

Facts (fetchmail 6.4 rcfile_l.l / rcfile_y.y, fetchmail(1)):
- rc file: `-f FILE`/`--fetchmailrc FILE`; else `$FETCHMAILHOME/fetchmailrc` (no leading dot there); else
  `~/.fetchmailrc` of the user it runs as. openSUSE's service wrapper reads /etc/fetchmailrc
  (FETCHMAIL_RC_PATH in /etc/sysconfig/fetchmail).
- lexer: `"..."`/`'...'` strings, `#` at the start of a token comments to the end of the line, `;` `:` `,`
  are blanks, `with and has wants options` are noise words. fetchmail's keywords are lower case; we accept
  any case (a mistyped case is a syntax error for fetchmail, not a different server).
- `poll`/`server` NAME starts a server entry, `skip` NAME one that is only polled when named on the command
  line; `defaults` sets options for the entries after it. `via HOST` connects to HOST instead of NAME;
  `proto`/`protocol` P, `service`/`port` N; `ssl` = implicit TLS. Default ports: POP3 110 (995 with ssl),
  IMAP 143 (993), KPOP 1109, ODMR 366, ETRN 25; `auto` (the default) tries IMAP, then POP3.
- daemon mode: `-d N`/`--daemon N` (0 = off), else `set daemon N` in the rc file.
- server names on the command line restrict the poll to them (a name not in the rc file still gets the
  `defaults`); `-p`, `-P`/`--service`, `--ssl` there override the rc file.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.base import RuleContext
from mailpreflight.deps.urls import hostport, parse_port, user_home
from mailpreflight.model import Dependency, DepKind, FoundCommand, Role

SERVICES = {"pop3": 110, "pop3s": 995, "imap": 143, "imap2": 143, "imaps": 993, "pop2": 109, "kpop": 1109,
            "smtp": 25, "odmr": 366}
# protocol -> [(plain port, implicit-TLS port)], in the order fetchmail tries them
PROTOCOL_PORTS = {"pop3": [(110, 995)], "apop": [(110, 995)], "rpop": [(110, 995)], "sdps": [(110, 995)],
                  "imap": [(143, 993)], "kpop": [(1109, 1109)], "pop2": [(109, 109)], "etrn": [(25, 25)],
                  "odmr": [(366, 366)], "auto": [(143, 993), (110, 995)]}
NAME_NEXT = frozenset({"user", "username", "pass", "password", "is", "to", "="})
_SEPARATORS = " \t\r;:,"
_SHORT_VALUE = frozenset("fdipPutrSDmLlbBwIMZEQe")
_LONG_VALUE = frozenset({
    "fetchmailrc", "daemon", "idfile", "protocol", "proto", "service", "port", "username", "user", "timeout",
    "folder", "smtphost", "smtpaddress", "smtpname", "mda", "logfile", "limit", "batchlimit", "fetchlimit",
    "fetchsizelimit", "fastuidl", "expunge", "interface", "monitor", "antispam", "envelope", "qvirtual",
    "warnings", "plugin", "plugout", "principal", "auth", "sslkey", "sslcert", "sslproto", "sslcertfile",
    "sslcertpath", "sslfingerprint", "sslcommonname", "pidfile", "postmaster", "bad-header", "fetchdomains"})


@dataclass(frozen=True)
class Token:
    """One token of a fetchmailrc: a word, `=`, or a quoted string without its quotes, and its line."""

    text: str
    line: int
    quoted: bool = False

    @property
    def word(self) -> str:
        return "" if self.quoted else self.text.lower()


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index, line, size = 0, 1, len(text)
    while index < size:
        char = text[index]
        if char == "\n":
            line += 1
            index += 1
        elif char in _SEPARATORS:
            index += 1
        elif char == "#":
            end = text.find("\n", index)
            index = size if end < 0 else end
        elif char in "\"'":
            end = text.find(char, index + 1)
            end = size if end < 0 else end
            tokens.append(Token(text[index + 1:end], line, True))
            line += text.count("\n", index, end)
            index = end + 1
        elif char == "=":
            tokens.append(Token("=", line))
            index += 1
        else:
            end = index
            while end < size and text[end] not in "=" + _SEPARATORS + "\n":
                end += 1
            tokens.append(Token(text[index:end], line))
            index = end
    return tokens


@dataclass(frozen=True)
class Server:
    """One server entry of a fetchmailrc (`poll`, `server` or `skip` NAME; the `defaults` entry has no name): the
    options that decide where fetchmail connects."""

    name: str
    line: int
    skip: bool = False
    via: str | None = None
    proto: str = "auto"
    service: str | None = None
    ssl: bool = False
    plugin: bool = False


@dataclass
class RcFile:
    """What a fetchmailrc says about where fetchmail connects: its server entries in file order, `set daemon`, and the
    `defaults` entry."""

    servers: list[Server]
    daemon: int | None = None  # `set daemon N`
    defaults: Server = Server("", 0)  # also applied to servers named only on the command line


def parse_rc(text: str) -> RcFile:
    tokens = tokenize(text)
    rc = RcFile([])
    defaults = Server("", 0)
    current: Server | None = None
    in_defaults = False
    index = 0

    def value_after(position: int) -> str | None:
        return tokens[position + 1].text if position + 1 < len(tokens) else None

    def finish() -> None:
        nonlocal current, defaults, in_defaults
        if current is not None:
            if in_defaults:
                defaults = current
            else:
                rc.servers.append(current)
        current, in_defaults = None, False

    while index < len(tokens):
        token, word = tokens[index], tokens[index].word
        negated = index > 0 and tokens[index - 1].word == "no"
        step = 1
        if word in ("poll", "server", "skip") and value_after(index) is not None:
            finish()
            current = replace(defaults, name=tokens[index + 1].text, line=token.line, skip=word == "skip")
            step = 2
        elif word == "defaults":
            finish()
            current, in_defaults = replace(defaults, line=token.line), True
        elif word == "set":
            finish()
            following = value_after(index)
            if following and following.lower() == "daemon" and index + 2 < len(tokens):
                number = tokens[index + 2].text
                rc.daemon = int(number) if number.lstrip("-").isdigit() else rc.daemon
                step = 3
        elif current is not None and word in ("via", "proto", "protocol", "service", "port", "sslmode", "plugin"):
            value = value_after(index)
            step = 2
            if value is not None:
                current = _server_option(current, word, value)
        elif current is not None and word == "ssl":
            current = replace(current, ssl=not negated)
        elif word in NAME_NEXT:
            step = 2  # the next token is a name, whatever it looks like
        index += step
    finish()
    rc.defaults = defaults
    return rc


def _server_option(server: Server, word: str, value: str) -> Server:
    if word == "via":
        return replace(server, via=value)
    if word in ("proto", "protocol"):
        return replace(server, proto=value.lower())
    if word in ("service", "port"):
        return replace(server, service=value)
    if word == "sslmode":  # fetchmail 7: wrapped = implicit TLS
        return replace(server, ssl=value.lower() == "wrapped")
    return replace(server, plugin=True)


@dataclass
class CommandLine:
    """The fetchmail command-line options read here (rc file, daemon interval, protocol, port, --ssl) and the server
    names given as arguments."""

    rcfile: str | None = None
    daemon: int | None = None
    proto: str | None = None
    service: str | None = None
    ssl: bool = False
    servers: tuple[str, ...] = ()


def parse_argv(argv: tuple[str, ...]) -> CommandLine:
    result = CommandLine()
    names: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            names.extend(argv[index:])
            break
        if not word.startswith("-") or word == "-":
            names.append(word)
            continue
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            takes = name in _LONG_VALUE
        else:
            name = word[1]
            value, equals = word[2:], "=" if len(word) > 2 else ""
            takes = name in _SHORT_VALUE
        if takes and not equals and index < len(argv):
            value = argv[index]
            index += 1
        _apply_option(result, name, value if takes else "")
    result.servers = tuple(names)
    return result


def _apply_option(result: CommandLine, name: str, value: str) -> None:
    if name in ("f", "fetchmailrc"):
        result.rcfile = value
    elif name in ("d", "daemon"):
        result.daemon = int(value) if value.isdigit() else result.daemon
    elif name in ("p", "protocol", "proto"):
        result.proto = value.lower()
    elif name in ("P", "service", "port"):
        result.service = value
    elif name == "ssl":
        result.ssl = True


def find_rc(fs: RootFS, command: FoundCommand, context: RuleContext, given: str | None) -> str | None:
    if given:
        return given if given.startswith("/") else None
    home_dir = command.env.get("FETCHMAILHOME")
    candidates = [posixpath.join(home_dir, "fetchmailrc"), posixpath.join(home_dir, ".fetchmailrc")] if (
        home_dir) else []
    candidates += [command.env.get("FETCHMAIL_RC_PATH", ""), "/etc/fetchmailrc"]
    home = command.env.get("HOME") or user_home(fs, context.user_of(command) or "root")
    if home:
        candidates.append(posixpath.join(home, ".fetchmailrc"))
    return next((c for c in candidates if c.startswith("/") and fs.read_text(c) is not None), None)


class FetchmailRule:
    """fetchmail: tcp host:port of every server it polls."""

    tools = frozenset({"fetchmail"})

    def dependencies(self, command: FoundCommand, context: RuleContext) -> list[Dependency]:
        cli = parse_argv(command.argv[1:])
        path = find_rc(context.fs, command, context, cli.rcfile)
        text = context.fs.read_text(path) if path else None
        if cli.rcfile and text is None:
            return []  # fetchmail cannot read the named rc file and exits
        rc = parse_rc(text or "")
        daemon = cli.daemon if cli.daemon is not None else rc.daemon
        role = Role.RUNTIME if daemon else context.role(command)
        if cli.servers:
            known = {s.name: s for s in rc.servers}
            chosen = [(known[n], f"{path}:{known[n].line}") if n in known else (
                replace(rc.defaults, name=n), str(command.source)) for n in cli.servers]
        else:
            chosen = [(s, f"{path}:{s.line}") for s in rc.servers if not s.skip]
        deps: list[Dependency] = []
        for server, where in chosen:
            server = replace(server, proto=cli.proto or server.proto, service=cli.service or server.service,
                             ssl=cli.ssl or server.ssl)
            deps.extend(_server_deps(server, role, where))
        return deps


def _server_deps(server: Server, role: Role, where: str) -> list[Dependency]:
    host = server.via or server.name
    if not host:
        return []
    ports: list[int] = []
    if server.service is not None:
        port = parse_port(server.service, 0, SERVICES)
        ports = [port] if port else []
    else:
        ports = [tls if server.ssl else plain for plain, tls in PROTOCOL_PORTS.get(server.proto, [])]
    notes = [f"{server.proto}{' over TLS' if server.ssl else ''}"]
    if server.via:
        notes.append(f"poll {server.name} via {server.via}")
    if server.plugin:
        notes.append("connection made by a plugin command")
    return [Dependency(DepKind.TCP, hostport(host, port), role, where, note="; ".join(notes)) for port in ports]
