"""Which authentication path each installed mail service uses, read from its own configuration.

Readers: saslauthd (its unit's ExecStart `-a MECH` after Environment/EnvironmentFile expansion, else
/etc/sysconfig/saslauthd or /etc/default/saslauthd), Postfix smtpd (main.cf and master.cf `-o` overrides:
smtpd_sasl_auth_enable/type/path/service; Cyrus SASL's `<path>.conf` pwcheck_method), Cyrus IMAP
(imapd.conf sasl_pwcheck_method, cyrus.conf SERVICES) and Dovecot (passdb drivers with their PAM service
names, `!include`/`!include_try`, protocols). Sources of each fact are in docs/auth.md.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.postfix import expand, read_main_cf
from mailpreflight.errors import MailpreflightError
from mailpreflight.units import environ, generators
from mailpreflight.units.distro import distribution
from mailpreflight.units.loader import LoadState, Unit, UnitLoader, exec_environment, expand_command

SASLAUTHD_BINARIES = ("/usr/sbin/saslauthd", "/sbin/saslauthd")
SASLAUTHD_CONFIGS = (("/etc/sysconfig/saslauthd", ("SASLAUTHD_AUTHMECH", "MECH")),
                     ("/etc/default/saslauthd", ("MECHANISMS", "MECH")))
# Cyrus SASL reads `<app>.conf` from the first directory of its config path that has one: postfix's
# cyrus_sasl_config_path when set, else the library's built-in path (plugin dir, then /etc/sasl2). Debian's
# postfix forces /etc/postfix/sasl:/usr/lib/sasl whatever cyrus_sasl_config_path says.
SASL_CONF_DIRS = ("/usr/lib64/sasl2", "/usr/lib/sasl2", "/etc/sasl2")
DEBIAN_SASL_CONF_DIRS = ("/etc/postfix/sasl", "/usr/lib/sasl")
CYRUS_SERVICE_NAMES = {"imapd": ("IMAP", "imap"), "pop3d": ("POP3", "pop"), "timsieved": ("Sieve", "sieve")}
DOVECOT_AUTH_PROTOCOLS = {"imap": "IMAP", "pop3": "POP3", "submission": "Submission", "sieve": "Sieve"}
DOVECOT_MAX_FILES = 256  # files read for one dovecot.conf, includes included
DOVECOT_MAX_BYTES = 4 * 1024 * 1024  # and their size, all told
DOVECOT_DEFAULT_PROTOCOLS = "imap pop3 lmtp"  # `protocols` before any setting (so `$protocols` starts there)
DOVECOT_PAM_OPTIONS = re.compile(r"^(session|setcred|failure_show_msg|max_requests|cache_key|blocking)=")


@dataclass(frozen=True)
class Saslauthd:
    unit: str | None  # the unit that runs it, None when there is only the binary or config
    state: str  # running-config: loaded | masked | not-installed
    enabled: bool
    mechanism: str | None
    source: str  # file:line the mechanism came from


@dataclass(frozen=True)
class AuthPath:
    unit: str  # the unit whose logins these are
    consumer: str  # e.g. "postfix smtpd (smtp, submission)"
    protocol: str  # SMTP, IMAP, POP3, Sieve, Submission
    method: str  # how the password is checked, in words
    pam_service: str | None  # the PAM service name libpam is asked for, None when PAM is not involved
    evidence: tuple[str, ...]  # file:line: setting
    problem: str | None = None  # the chain is broken before PAM (e.g. saslauthd missing)
    problem_paths: tuple[str, ...] = ()


def enabled_units(fs: RootFS) -> set[str]:
    """Units with an enablement link in a *.wants or *.requires directory (the admin's or the vendor's)."""
    names: set[str] = set()
    for base in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        for directory in fs.listdir(base):
            if directory.endswith((".wants", ".requires")):
                names.update(fs.listdir(f"{base}/{directory}"))
    return names


def _pulled_in(loader: UnitLoader, name: str, by: tuple[str, ...]) -> bool:
    """Does one of these (enabled) units pull `name` in with Wants=/Requires=/BindsTo=?"""
    enabled = enabled_units(loader.fs)
    for consumer in by:
        unit = _load(loader, consumer)
        if unit is None or unit.id not in enabled:
            continue
        for key in ("Wants", "Requires", "BindsTo", "Requisite"):
            if any(name in a.value.split() for a in unit.values("Unit", key)):
                return True
    return False


def _load(loader: UnitLoader, *names: str) -> Unit | None:
    for name in names:
        try:
            unit = loader.load(name)
        except MailpreflightError:
            continue
        if unit.load_state is not LoadState.NOT_FOUND:
            return unit
    return None


def _exists(fs: RootFS, path: str) -> bool:
    return fs.chase(path) is not None


def _sysv_enabled(fs: RootFS, name: str, config: dict[str, str]) -> bool:
    """Debian runs saslauthd from /etc/init.d (no unit): START=yes and an S link in a multi-user runlevel."""
    links = any(entry.startswith("S") and entry.lstrip("S0123456789") == name
                for level in "2345" for entry in fs.listdir(f"/etc/rc{level}.d"))
    return links and config.get("START", "").lower() == "yes"


def read_saslauthd(fs: RootFS, loader: UnitLoader) -> Saslauthd | None:
    unit = _load(loader, "saslauthd.service")
    enabled = "saslauthd.service" in enabled_units(fs) or _pulled_in(
        loader, "saslauthd.service", ("postfix.service", "cyrus-imapd.service", "cyrus.service"))
    if unit is not None and unit.load_state is LoadState.MASKED:
        return Saslauthd(unit.id, "masked", False, None, unit.fragment_path or "")
    if unit is not None and unit.load_state is LoadState.LOADED:
        env = exec_environment(unit, fs)
        for command in unit.exec.get("ExecStart", ()):
            argv = expand_command(command, env.variables)
            mechanism = _option(argv, "-a")
            if mechanism:
                return Saslauthd(unit.id, "loaded", enabled, mechanism, f"{command.source} (-a {mechanism})")
    for path, names in SASLAUTHD_CONFIGS:
        data = fs.read_text(path)
        if data is None:
            continue
        parsed = dict(environ.parse_env_file(data.encode()).env)
        # Debian: no unit file, the init script (systemd-sysv-generator makes saslauthd.service of it)
        sysv = (unit is None or unit.generated_by == generators.SYSV) and _exists(fs, "/etc/init.d/saslauthd")
        if sysv:
            enabled = _sysv_enabled(fs, "saslauthd", parsed)
        for name in names:
            if parsed.get(name):
                line = next((n for n, text in enumerate(data.splitlines(), 1) if text.strip().startswith(name)), 1)
                return Saslauthd(unit.id if unit else "/etc/init.d/saslauthd" if sysv else None,
                                 "loaded" if unit or sysv else "not-installed", enabled,
                                 parsed[name].split()[0], f"{path}:{line} ({name}={parsed[name]})")
    if unit is None and not any(_exists(fs, b) for b in SASLAUTHD_BINARIES):
        return None
    return Saslauthd(unit.id if unit else None, "loaded" if unit else "not-installed", enabled, None, "")


def _option(argv: tuple[str, ...], flag: str) -> str | None:
    """getopt-style: `-a pam` or `-apam`; the last one wins."""
    found = None
    for index, word in enumerate(argv[1:], 1):
        if word == flag and index + 1 < len(argv):
            found = argv[index + 1]
        elif word.startswith(flag) and len(word) > len(flag) and not word.startswith("--"):
            found = word[len(flag):]
    return found


def _colon_conf(text: str) -> dict[str, tuple[str, int]]:
    """`key: value` files (Cyrus SASL app .conf, imapd.conf): key -> (value, line); last one wins."""
    settings: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        settings[key.strip().lower()] = (value.strip(), number)
    return settings


def _via_saslauthd(saslauthd: Saslauthd | None, service: str, evidence: list[str]) -> tuple[str, str | None,
                                                                                              str | None]:
    """(method, PAM service, problem) for a SASL password check handed to saslauthd."""
    if saslauthd is None:
        return "saslauthd", None, "saslauthd is not installed: every password check fails"
    if saslauthd.state == "not-installed":
        return "saslauthd", None, "nothing starts saslauthd (no unit, no init script): every password check fails"
    if saslauthd.state == "masked":
        return "saslauthd", None, f"{saslauthd.unit} is masked: every password check fails"
    if saslauthd.source:
        evidence.append(f"{saslauthd.source}")
    problem = None if saslauthd.enabled else f"{saslauthd.unit or 'saslauthd'} is not enabled: after a reboot " \
        "nothing answers the password checks"
    if saslauthd.mechanism is None:
        return "saslauthd (mechanism unknown)", None, problem
    if saslauthd.mechanism == "pam":
        return "saslauthd -a pam", service, problem
    return f"saslauthd -a {saslauthd.mechanism}", None, problem


def _master_smtpd(text: str | None) -> list[tuple[str, dict[str, str], int]]:
    """master.cf services running smtpd for clients: (service, -o overrides, line)."""
    if text is None:
        return [("smtp", {}, 0)]
    entries: list[tuple[list[str], int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and entries:
            entries[-1][0].extend(line.split())
        else:
            entries.append((line.split(), number))
    services = []
    for words, number in entries:
        # `inet`, or `pass` behind postscreen (smtp inet ... postscreen + smtpd pass ... smtpd)
        if len(words) < 8 or words[1] not in ("inet", "pass") or posixpath.basename(words[7]) != "smtpd":
            continue
        overrides: dict[str, str] = {}
        args = words[8:]
        index = 0
        while index < len(args):
            if args[index] == "-o" and index + 1 < len(args):
                if args[index + 1].startswith("{"):  # Postfix 3.0+: -o { name = value with blanks }
                    end = next((i for i in range(index + 1, len(args)) if args[i].endswith("}")), len(args) - 1)
                    setting = " ".join(args[index + 1:end + 1]).strip("{} ")
                    index = end + 1
                else:
                    setting, index = args[index + 1], index + 2
                name, _, value = setting.partition("=")
                overrides[name.strip()] = value.strip()
                continue
            index += 1
        services.append((words[0].rpartition(":")[2], overrides, number))
    return services


def read_postfix(fs: RootFS, saslauthd: Saslauthd | None, dovecot_unit: str | None) -> list[AuthPath]:
    main_cf = "/etc/postfix/main.cf"
    text = fs.read_text(main_cf)
    if text is None:
        return []
    settings = read_main_cf(text)

    def value(name: str, overrides: dict[str, str], default: str) -> tuple[str, str]:
        if name in overrides:  # `-o name=$other` refers to main.cf
            raw = overrides[name]
            return (expand(raw, settings) or raw), "/etc/postfix/master.cf (-o)"
        if name in settings:
            raw, line = settings[name]
            return (expand(raw, settings) or raw), f"{main_cf}:{line}"
        return default, "postfix default"

    grouped: dict[tuple[str, str, str], list[str]] = {}
    sources: dict[tuple[str, str, str], list[str]] = {}
    for service, overrides, line in _master_smtpd(fs.read_text("/etc/postfix/master.cf")):
        enabled, enabled_at = value("smtpd_sasl_auth_enable", overrides, "no")
        if enabled.lower() not in ("yes", "true", "1"):
            continue
        sasl_type, type_at = value("smtpd_sasl_type", overrides, "cyrus")
        sasl_path, path_at = value("smtpd_sasl_path", overrides, "smtpd")
        sasl_service, _ = value("smtpd_sasl_service", overrides, "smtp")
        key = (sasl_type, sasl_path, sasl_service)
        grouped.setdefault(key, []).append(service)
        where = f"/etc/postfix/master.cf:{line}" if line else "postfix default smtp service"
        sources.setdefault(key, [f"{where}: {service} runs smtpd with smtpd_sasl_auth_enable=yes ({enabled_at})",
                                 f"{type_at}: smtpd_sasl_type = {sasl_type}", f"{path_at}: smtpd_sasl_path = "
                                 f"{sasl_path}"])
    paths: list[AuthPath] = []
    for (sasl_type, sasl_path, sasl_service), services in grouped.items():
        evidence = list(sources[(sasl_type, sasl_path, sasl_service)])
        consumer = f"postfix smtpd ({', '.join(services)})"
        if sasl_type == "dovecot":
            problem = None if dovecot_unit else "smtpd_sasl_type = dovecot, but Dovecot is not installed"
            paths.append(AuthPath("postfix.service", consumer, "SMTP", f"dovecot auth ({sasl_path})", None,
                                  tuple(evidence), problem, ("/etc/dovecot/dovecot.conf",) if problem else ()))
            continue
        if sasl_type != "cyrus":
            paths.append(AuthPath("postfix.service", consumer, "SMTP", f"SASL type {sasl_type}", None,
                                  tuple(evidence)))
            continue
        configured = settings.get("cyrus_sasl_config_path")
        dirs: tuple[str, ...]
        if distribution(fs).debian:
            dirs = DEBIAN_SASL_CONF_DIRS
        elif configured and configured[0]:
            dirs = tuple(configured[0].split(":"))
        else:
            dirs = SASL_CONF_DIRS
        conf = next((f"{d}/{sasl_path}.conf" for d in dirs if _exists(fs, f"{d}/{sasl_path}.conf")), None)
        pwcheck = "auxprop"
        if conf is None:
            evidence.append(f"no {sasl_path}.conf in {', '.join(dirs)}: Cyrus SASL's default pwcheck_method "
                            "auxprop")
        else:
            conf_settings = _colon_conf(fs.read_text(conf) or "")
            if "pwcheck_method" in conf_settings:
                pwcheck, line = conf_settings["pwcheck_method"]
                evidence.append(f"{conf}:{line}: pwcheck_method: {pwcheck}")
        if "saslauthd" in pwcheck.split():
            method, pam_service, problem = _via_saslauthd(saslauthd, sasl_service, evidence)
            paths.append(AuthPath("postfix.service", consumer, "SMTP", f"Cyrus SASL -> {method}", pam_service,
                                  tuple(evidence), problem, ("/usr/sbin/saslauthd",) if problem else ()))
        else:
            paths.append(AuthPath("postfix.service", consumer, "SMTP", f"Cyrus SASL pwcheck_method {pwcheck}",
                                  None, tuple(evidence)))
    return paths


def read_cyrus(fs: RootFS, loader: UnitLoader, saslauthd: Saslauthd | None) -> list[AuthPath]:
    text = fs.read_text("/etc/imapd.conf")
    if text is None:
        return []
    unit = _load(loader, "cyrus-imapd.service", "cyrus.service")
    if unit is not None and unit.masked:
        return []
    unit_name = unit.id if unit else "cyrus-imapd.service"
    settings = _colon_conf(text)
    pwcheck, line = settings.get("sasl_pwcheck_method", ("auxprop", 0))
    services = []
    for command, (protocol, sasl_service) in CYRUS_SERVICE_NAMES.items():
        if _cyrus_runs(fs.read_text("/etc/cyrus.conf"), command):
            services.append((protocol, sasl_service))
    paths = []
    for protocol, sasl_service in services:
        evidence = [f"/etc/imapd.conf:{line}: sasl_pwcheck_method: {pwcheck}" if line else
                    "imapd.conf sets no sasl_pwcheck_method: auxprop"]
        if "saslauthd" in pwcheck.split():
            method, pam_service, problem = _via_saslauthd(saslauthd, sasl_service, evidence)
            paths.append(AuthPath(unit_name, f"cyrus {protocol}", protocol, f"Cyrus SASL -> {method}", pam_service,
                                  tuple(evidence), problem))
        else:
            paths.append(AuthPath(unit_name, f"cyrus {protocol}", protocol, f"Cyrus SASL pwcheck_method {pwcheck}",
                                  None, tuple(evidence)))
    return paths


_CYRUS_CMD = re.compile(r'cmd\s*=\s*"?\s*(\S*)')
_CYRUS_SECTION = re.compile(r"SERVICES\s*\{")
_CYRUS_CLOSING = re.compile(r"\n[^\S\n]*\}")  # a `}` first on its line


def _cyrus_runs(text: str | None, command: str) -> bool:
    """Does cyrus.conf's SERVICES section start `command` (the program of a `cmd=`, with or without its directory)?
    Without cyrus.conf: only imapd. Linear: the section is the first `SERVICES {` up to the next line starting with
    `}` (one pattern for both took quadratic time over many unclosed sections or blank lines), and each cmd= value
    is looked at once (a pattern backtracking over a long word did too)."""
    if text is None:
        return command == "imapd"
    cleaned = re.sub(r"#[^\n]*", "", text)
    start = _CYRUS_SECTION.search(cleaned)
    end = _CYRUS_CLOSING.search(cleaned, start.end()) if start else None
    body = cleaned[start.end():end.start()] if start and end else ""
    program = re.compile(rf"{re.escape(command)}\b")
    return any(program.match(found.group(1).rsplit("/", 1)[-1]) for found in _CYRUS_CMD.finditer(body))


@dataclass
class DovecotConfig:
    settings: dict[str, tuple[str, str]]  # top-level key -> (value, file:line)
    passdbs: list[dict[str, tuple[str, str]]]  # each passdb block's keys (plus "name" for 2.4 `passdb NAME {`)


def read_dovecot_config(fs: RootFS, path: str = "/etc/dovecot/dovecot.conf") -> DovecotConfig | None:
    if fs.read_text(path) is None:
        return None
    config = DovecotConfig({"protocols": (DOVECOT_DEFAULT_PROTOCOLS, "dovecot default")}, [])
    _dovecot_file(fs, path, config, [], 0, [DOVECOT_MAX_FILES, DOVECOT_MAX_BYTES])
    return config


def _dovecot_file(fs: RootFS, path: str, config: DovecotConfig, stack: list[dict[str, tuple[str, str]] | None],
                  depth: int, budget: list[int], including: tuple[str, ...] = ()) -> None:
    """One file and what it includes; `budget`: files and bytes still to be read for the whole configuration
    (files that include each other by globs must not take exponential time). A file that includes itself,
    directly or not, is skipped: dovecot refuses it ("Recursive include file")."""
    real = fs.chase(path) or path
    if depth > 20 or budget[0] <= 0 or budget[1] <= 0 or real in including:
        return
    budget[0] -= 1
    text = fs.read_text(path)
    if text is None:
        return
    budget[1] -= len(text)
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if line.startswith("!include"):
            pattern = line.split(None, 1)[1].strip().strip('"') if " " in line else ""
            pattern = pattern if pattern.startswith("/") else posixpath.join(posixpath.dirname(path), pattern)
            for match in fs.glob(pattern).paths:  # glob(3) as dovecot does, inside the root, capped
                _dovecot_file(fs, match, config, stack, depth + 1, budget, (*including, real))
            continue
        if line.endswith("{"):
            words = line[:-1].split()
            if words and words[0] == "passdb" and not stack:
                block: dict[str, tuple[str, str]] = {"@": ("", where)}
                if len(words) > 1:
                    block["name"] = (words[1], where)
                config.passdbs.append(block)
                stack.append(block)
            else:
                stack.append(None)
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        key, equals, value = line.partition("=")
        if not equals:
            continue
        key, value = key.strip(), value.strip().strip('"')
        if stack:
            if stack[-1] is not None:
                stack[-1][key] = (value, where)
            continue
        previous = config.settings.get(key, ("", ""))[0]
        config.settings[key] = (value.replace(f"${key}", previous).strip(), where)


DOVECOT_SERVICE_VARIABLES = ("%{protocol}", "%{service}", "%Ls", "%s")


def read_dovecot(fs: RootFS, postfix_uses_dovecot: bool) -> list[AuthPath]:
    """Dovecot's passdbs (the caller has checked that Dovecot is installed and not masked)."""
    config = read_dovecot_config(fs)
    if config is None:
        return []
    protocols_value, protocols_at = config.settings["protocols"]
    protocols = [p for p in dict.fromkeys(protocols_value.split()) if p in DOVECOT_AUTH_PROTOCOLS]
    if postfix_uses_dovecot:
        protocols.append("smtp")  # postfix's smtpd asks Dovecot's auth socket with service=smtp
    labels = "/".join(DOVECOT_AUTH_PROTOCOLS.get(p, "SMTP") for p in protocols)
    paths = []
    for block in config.passdbs:
        driver = block.get("driver", block.get("name", ("", "")))[0]
        evidence = [f"{block['@'][1]}: passdb (driver = {driver})"]
        if driver != "pam":
            paths.append(AuthPath("dovecot.service", "dovecot", labels, f"dovecot passdb {driver}", None,
                                  tuple(evidence)))
            continue
        service = _dovecot_pam_service(block)
        evidence.append(f"{block.get('args', block.get('service_name', ('', block['@'][1])))[1]}: PAM service "
                        f"{service}")
        if not any(variable in service for variable in DOVECOT_SERVICE_VARIABLES):  # one service for all
            paths.append(AuthPath("dovecot.service", "dovecot", labels, "dovecot passdb pam", service,
                                  tuple(evidence)))
            continue
        for protocol in protocols:  # a PAM service per protocol
            name = service
            for variable in DOVECOT_SERVICE_VARIABLES:
                name = name.replace(variable, protocol)
            paths.append(AuthPath("postfix.service" if protocol == "smtp" else "dovecot.service",
                                  f"dovecot {protocol}", DOVECOT_AUTH_PROTOCOLS.get(protocol, "SMTP"),
                                  "dovecot passdb pam", name,
                                  (*evidence, f"{protocols_at}: protocols = {protocols_value}")))
    return paths


def _dovecot_pam_service(block: dict[str, tuple[str, str]]) -> str:
    """2.4 `service_name`; 2.3 `args`: the last word that is not an option (`*` = %Ls); default "dovecot"."""
    for key in ("service_name", "passdb_pam_service_name"):
        if key in block:
            return block[key][0]
    raw = block.get("args", ("", ""))[0]
    try:
        split = shlex.split(raw, comments=False, posix=True)
    except ValueError:  # an odd quote or a trailing backslash: dovecot splits on blanks too
        split = raw.split()
    words = [w for w in split if not DOVECOT_PAM_OPTIONS.match(w) and not w.startswith("-")]
    service = words[-1] if words else "dovecot"
    return "%Ls" if service == "*" else service


def read_all(fs: RootFS, loader: UnitLoader | None = None) -> tuple[list[AuthPath], Saslauthd | None]:
    """Every login path of the installed mail services; `loader`: one the caller already has for `fs`."""
    loader = loader or UnitLoader(fs)
    saslauthd = read_saslauthd(fs, loader)
    dovecot = _load(loader, "dovecot.service")
    # a removed package keeps its configuration (apt remove, rpm's .rpmsave): the program must be there
    has_dovecot = (fs.read_text("/etc/dovecot/dovecot.conf") is not None and not (dovecot and dovecot.masked)
                   and (dovecot is not None or _exists(fs, "/usr/sbin/dovecot")))
    postfix = read_postfix(fs, saslauthd, "dovecot.service" if has_dovecot else None)
    paths = [*postfix, *read_cyrus(fs, loader, saslauthd),
             *(read_dovecot(fs, any(p.method.startswith("dovecot auth") for p in postfix)) if has_dovecot else [])]
    return paths, saslauthd
