"""Mail-authentication findings (MP301-MP309): for each login path, will the PAM stack libpam builds still
authenticate the users it did, and what did the package manager leave behind?"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any

from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth import pam
from mailpreflight.auth.services import AuthPath, Saslauthd, read_all
from mailpreflight.model import AuthPathView, Finding, PamLineView, PamView, Severity
from mailpreflight.units.distro import distribution
from mailpreflight.units.loader import UnitLoader

# saslauthd and dovecot call pam_authenticate and pam_acct_mgmt: the auth and account stacks decide a login.
LOGIN_TYPES = ("auth", "account")
LEFTOVER_SAVED = (".rpmsave", ".rpmorig", ".dpkg-old", ".dpkg-bak", ".ucf-old", ".pacsave")
LEFTOVER_NEW = (".rpmnew", ".dpkg-dist", ".dpkg-new", ".ucf-dist", ".pacnew")
# Where a leftover beside a file matters to mail (pam.d is filtered to the files the mail stacks read).
LEFTOVER_DIRS = ("/etc/pam.d", "/etc/postfix", "/etc/postfix/sasl", "/etc/dovecot", "/etc/dovecot/conf.d",
                 "/etc/sasl2", "/etc/mail/spamassassin", "/etc/spamassassin", "/etc/clamav", "/etc/clamd.d",
                 "/etc/sssd", "/etc/openldap", "/etc/ldap", "/etc/amavis/conf.d", "/etc/security")
LEFTOVER_FILES = ("/etc/sysconfig/saslauthd", "/etc/default/saslauthd", "/etc/saslauthd.conf", "/etc/imapd.conf",
                  "/etc/cyrus.conf", "/etc/sysconfig/spamd", "/etc/default/spamassassin", "/etc/freshclam.conf",
                  "/etc/clamd.conf", "/etc/fetchmailrc", "/etc/nsswitch.conf", "/etc/ldap.conf", "/etc/nslcd.conf",
                  "/etc/pam_ldap.conf", "/etc/amavisd.conf", "/etc/pam.conf")


@dataclass(frozen=True)
class TrackedFinding:
    """A finding plus what drift needs: a stable subject and the files that decide it."""

    finding: Finding
    subject: str  # e.g. "pam:imap", "leftover:/etc/pam.d/imap.rpmsave"
    paths: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.finding.code}:{self.subject}"

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {"code": f.code, "severity": f.severity.value, "unit": f.unit, "subject": self.subject,
                "message": f.message, "hint": f.hint, "evidence": list(f.evidence), "paths": list(self.paths)}


@dataclass
class AuthReport:
    paths: list[AuthPath]
    saslauthd: Saslauthd | None
    services: dict[str, pam.PamService]
    issues: list[TrackedFinding] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # PAM services and chain subjects with a critical finding

    def module_paths(self) -> tuple[str, ...]:
        """Every module file the mail stacks load (for the baseline)."""
        return tuple(sorted({line.module_path for s in self.services.values() for line in s.lines
                             if line.module_path}))

    def findings(self) -> tuple[Finding, ...]:
        return tuple(issue.finding for issue in self.issues)

    def restricted_to(self, units: set[str]) -> AuthReport:
        """Only the login paths (and findings) of these units."""
        paths = [p for p in self.paths if p.unit in units]
        names = {p.pam_service for p in paths}
        return AuthReport(paths, self.saslauthd, {n: s for n, s in self.services.items() if n in names},
                          [i for i in self.issues if i.finding.unit in units], self.broken)


def directory_users(fs: RootFS) -> str | None:
    """Why this root's users (also) come from a directory: sssd, LDAP or winbind in nsswitch.conf."""
    for path in ("/etc/nsswitch.conf", "/usr/etc/nsswitch.conf"):
        for number, line in enumerate((fs.read_text(path) or "").splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if words and words[0] == "passwd:":
                sources = [w for w in words[1:] if w in ("sss", "ldap", "winbind")]
                if sources:
                    return f"{path}:{number}: passwd: {' '.join(words[1:])}"
                return None
    return None


def _modules(service: pam.PamService, pam_type: str) -> str:
    """e.g. "pam_env, pam_unix (common-auth)": each module, and the file it is in when that is an include."""
    lines = service.stack(pam_type)
    if not lines:
        return "nothing"
    parts: list[str] = []
    for line in lines:
        file = line.source.rsplit(":", 1)[0]
        where = f" ({posixpath.basename(file)})" if line.via else ""
        missing = " [missing]" if line.module_path is None else ""
        text = f"{line.module_name.removesuffix('.so')}{where}{missing}"
        if text not in parts:
            parts.append(text)
    return ", ".join(parts)


def _refuses(service: pam.PamService) -> bool:
    """Does the auth stack reach a required/requisite pam_deny before anything could let a login through?"""
    for line in service.stack("auth"):
        if line.control.lower() == "sufficient" or line.control.startswith("["):
            return False  # a success (or a jump) may end the stack first
        if line.module_name == "pam_deny.so" and line.decisive:
            return True
    return not service.stack("auth")


def _protocols(paths: list[AuthPath], name: str) -> str:
    labels = list(dict.fromkeys(p.protocol for p in paths if p.pam_service == name))
    return " and ".join(labels) if len(labels) < 3 else ", ".join(labels)


def analyze_auth(fs: RootFS, loader: UnitLoader | None = None) -> AuthReport:
    paths, saslauthd = read_all(fs, loader)
    services = {name: pam.resolve(fs, name) for name in dict.fromkeys(p.pam_service for p in paths
                                                                       if p.pam_service)}
    report = AuthReport(paths, saslauthd, services)
    directory = directory_users(fs)
    for path in paths:
        if path.problem:
            severe = "not enabled" not in path.problem
            report.issues.append(TrackedFinding(Finding(
                "MP307", Severity.CRITICAL if severe else Severity.WARNING, path.unit,
                f"{path.protocol} logins ({path.consumer}, {path.method}): {path.problem}",
                "install and enable the password service the configuration names, or change the configuration",
                path.evidence), _chain(path), path.problem_paths))
            if severe:
                report.broken.add(_chain(path))
    for name, service in services.items():
        users = [p for p in paths if p.pam_service == name]
        found = _service_issues(fs, name, service, users, paths, directory)
        report.issues.extend(found)
        if any(issue.finding.severity is Severity.CRITICAL for issue in found):
            report.broken.add(name)
    report.issues.extend(_leftovers(fs, services, paths))
    return report


def _service_issues(fs: RootFS, name: str, service: pam.PamService, users: list[AuthPath], paths: list[AuthPath],
                    directory: str | None) -> list[TrackedFinding]:
    unit = users[0].unit
    who = f"{_protocols(paths, name)} logins ({', '.join(dict.fromkeys(p.consumer for p in users))})"
    evidence = tuple(e for p in users for e in p.evidence)
    issues: list[TrackedFinding] = []
    searched = ", ".join(posixpath.dirname(c) for c in service.candidates)
    if not service.usable:
        issues.append(TrackedFinding(Finding(
            "MP302", Severity.CRITICAL, unit, f"{who} ask PAM for service {name!r}: there is neither a file for it "
            f"nor `other` ({searched}); libpam refuses every login",
            f"put /etc/pam.d/{name} back: `mailpreflight restore --baseline FILE /etc/pam.d/{name}` from a snapshot, "
            "or recreate it",
            evidence), f"pam:{name}", service.paths))
        return issues
    if service.fell_back:
        refuses = _refuses(service)
        installed = {line.module_name for line in service.stack("auth") if line.module_path}
        lost = directory is not None and not installed & pam.DIRECTORY_MODULES
        consequence = ("which refuses every login" if refuses else
                       "so directory users (sssd/LDAP) can no longer log in, only local accounts" if lost else
                       "which may not be the stack these logins need")
        leftover = _saved_copy(fs, f"/etc/pam.d/{name}")
        hint = (f"restore it: review {leftover} and `mv {leftover} /etc/pam.d/{name}`" if leftover else
                f"put /etc/pam.d/{name} back: `mailpreflight restore --baseline FILE /etc/pam.d/{name}` from a "
                "snapshot, or recreate it")
        issues.append(TrackedFinding(Finding(
            "MP301", Severity.CRITICAL if refuses or lost else Severity.WARNING, unit,
            f"{who} will fall back to `other`: no {name} in {searched}; {service.other_file} stacks auth: "
            f"{_modules(service, 'auth')}, {consequence}", hint,
            (*evidence, *((directory,) if lost and directory else ()))), f"pam:{name}", service.paths))
    elif login_types := [t for t in service.from_other if t in LOGIN_TYPES]:
        issues.append(TrackedFinding(Finding(
            "MP309", Severity.INFO, unit, f"PAM service {name} ({service.file}) takes its "
            f"{', '.join(login_types)} stack from `other` ({service.other_file})",
            _partial_hint(fs, service.file or "", login_types), evidence),
            f"pam-partial:{name}", service.paths))
    for shadow in service.shadowed:
        issues.append(TrackedFinding(Finding(
            "MP308", Severity.INFO, unit, f"{shadow} is not used: {service.file} wins for PAM service {name}",
            f"compare them (`diff -u {shadow} {service.file}`): vendor changes do not reach {service.file}",
            ()), f"shadowed:{shadow}", (shadow, service.file or "")))
    for problem in service.problems:
        where = f"PAM service {name}" + (f" ({problem.type})" if problem.type else "")
        fatal_here = problem.fatal and (problem.type is None or problem.type in LOGIN_TYPES)
        if problem.kind == "missing-module":
            module = posixpath.basename(problem.path or "")
            fatal_here = fatal_here or (module in pam.DIRECTORY_MODULES and problem.type in LOGIN_TYPES)
            issues.append(TrackedFinding(Finding(
                "MP304", Severity.CRITICAL if fatal_here else Severity.WARNING, unit,
                f"{who}: {where}: {problem.source}: {problem.detail}" + (
                    ", and directory users cannot log in" if module in pam.DIRECTORY_MODULES else ""),
                f"install the package that provides {module}, or remove the line" + (
                    f": {removal}" if (removal := _line_command(problem.source, "d")) else ""), evidence),
                f"module:{name}:{problem.source.rsplit(':', 1)[0]}:{module}", (problem.path or "", problem.source
                                                                              .rsplit(":", 1)[0])))
        elif problem.kind in ("missing-include", "include-loop"):
            issues.append(TrackedFinding(Finding(
                "MP303", Severity.CRITICAL if fatal_here else Severity.WARNING, unit,
                f"{who}: {where}: {problem.source}: {problem.detail}", _include_hint(fs, problem.path or ""),
                evidence), f"include:{name}:{problem.path}", (problem.path or "", problem.source.rsplit(":", 1)[0])))
        else:
            issues.append(TrackedFinding(Finding(
                "MP305", Severity.CRITICAL if fatal_here else Severity.WARNING, unit,
                f"{who}: {where}: {problem.source}: {problem.detail}",
                "fix the line (pam.conf(5))" + (
                    f"; {shown} shows it" if (shown := _line_command(problem.source, "p")) else ""), evidence),
                f"line:{problem.source.rsplit(':', 1)[0]}:{problem.detail}", (problem.source.rsplit(":", 1)[0],)))
    return issues


# Debian's common-* files are written by pam-auth-update (libpam-runtime's postinst runs it) from the profiles in
# /usr/share/pam-configs: missing, they are made again by running it as the postinst does.
PAM_AUTH_UPDATE = "/usr/sbin/pam-auth-update"
PAM_AUTH_UPDATE_WRITES = frozenset(f"/etc/pam.d/common-{name}" for name in (
    "auth", "account", "password", "session", "session-noninteractive"))


def _line_command(source: str, action: str) -> str:
    """`sed -i 'Nd' FILE` (remove the line) or `sed -n 'Np' FILE` (show it) for a line of an admin's file
    ("FILE:N"); nothing for a vendor's file (/usr/lib/pam.d: the admin overrides it in /etc instead)."""
    path, _, line = source.rpartition(":")
    if not line.isdigit() or (action == "d" and not path.startswith("/etc/")):
        return ""
    option = "-i" if action == "d" else "-n"
    return f"`sed {option} '{line}{action}' {shlex.quote(path)}`"


def _partial_hint(fs: RootFS, path: str, types: list[str]) -> str:
    """The service's file takes these types from `other`: on Debian, the common-* file of each is what every
    service file includes; else the types to write."""
    common = [f"/etc/pam.d/common-{t}" for t in types]
    if path.startswith("/etc/pam.d/") and all(fs.lstat(c) is not None for c in common):
        echo = " and ".join(f"`echo {shlex.quote('@include ' + posixpath.basename(c))} >> {path}`" for c in common)
        return f"if `other` is not meant for them, include the system's stacks: {echo}"
    return f"add {', '.join(types)} lines to {path} if `other` is not meant for them"


def _include_hint(fs: RootFS, path: str) -> str:
    if path in PAM_AUTH_UPDATE_WRITES and distribution(fs).debian and fs.lstat(PAM_AUTH_UPDATE) is not None:
        return f"pam-auth-update --package (writes {path} and the other common-* files from /usr/share/pam-configs)"
    return "restore the included file or fix the line"


def _saved_copy(fs: RootFS, path: str) -> str | None:
    return next((path + s for s in LEFTOVER_SAVED if fs.lstat(path + s) is not None), None)


def _relevant_pam_files(services: dict[str, pam.PamService], paths: list[AuthPath]) -> set[str]:
    names = {pam.DEFAULT_SERVICE, *(p.pam_service for p in paths if p.pam_service)}
    for service in services.values():
        names.update(posixpath.basename(line.source.rsplit(":", 1)[0]) for line in service.lines)
        names.update(posixpath.basename(v) for line in service.lines for v in line.via)
    return names


def _leftovers(fs: RootFS, services: dict[str, pam.PamService], paths: list[AuthPath]) -> list[TrackedFinding]:
    relevant_pam = _relevant_pam_files(services, paths)
    candidates: list[str] = [f"{d}/{entry}" for d in LEFTOVER_DIRS for entry in fs.listdir(d)]
    candidates += [f"{posixpath.dirname(f)}/{entry}" for f in LEFTOVER_FILES
                   for entry in fs.listdir(posixpath.dirname(f)) if entry.startswith(posixpath.basename(f) + ".")]
    issues: list[TrackedFinding] = []
    for leftover in sorted(set(candidates)):
        suffix = next((s for s in (*LEFTOVER_SAVED, *LEFTOVER_NEW) if leftover.endswith(s)), None)
        if suffix is None:
            continue
        base = leftover[: -len(suffix)]
        if base.startswith("/etc/pam.d/") and posixpath.basename(base) not in relevant_pam:
            continue
        exists = fs.lstat(base) is not None
        unit = next((p.unit for p in paths if base.startswith("/etc/pam.d/") and
                     p.pam_service == posixpath.basename(base)), "")
        if suffix in LEFTOVER_SAVED:
            message = (f"{base} is gone, and the package manager kept the previous version as {leftover}" if not
                       exists else f"{leftover}: the package manager set your previous {base} aside and "
                       "installed its own")
            hint = (f"review it and `mv {leftover} {base}`" if not exists else
                    f"`diff -u {leftover} {base}`: bring your changes back, then remove {leftover}")
        else:
            message = (f"{leftover}: a new vendor version of {base} was NOT installed because yours was changed"
                       + ("" if exists else f" (and {base} itself is missing)"))
            hint = f"`diff -u {base} {leftover}`: merge what matters, then remove {leftover}"
        issues.append(TrackedFinding(Finding("MP306", Severity.WARNING, unit, message, hint, (leftover,)),
                                f"leftover:{leftover}", (leftover, base)))
    return issues


def _chain(path: AuthPath) -> str:
    return f"chain:{path.unit}:{path.consumer}"


def path_ok(report: AuthReport, path: AuthPath) -> bool:
    """No critical finding on this login path (its chain or its PAM service)."""
    return _chain(path) not in report.broken and (path.pam_service or "") not in report.broken


def auth_view(report: AuthReport) -> tuple[AuthPathView, ...]:
    """Each login path with the PAM stack it gets, as check's renderers print it."""
    views = []
    for path in report.paths:
        service = report.services.get(path.pam_service or "")
        pam_view = None
        if service is not None:
            pam_view = PamView(
                file=service.file, searched=tuple(service.candidates), shadowed=tuple(service.shadowed),
                fallback_other=service.fell_back, other_file=service.other_file,
                types_from_other=tuple(service.from_other),
                stacks=tuple((t, tuple(PamLineView(line.control, line.module, tuple(line.args), line.source,
                                                   line.module_path, tuple(line.via))
                                       for line in service.stack(t))) for t in pam.TYPES),
                usable=service.usable, auth_modules=_modules(service, "auth"))
        views.append(AuthPathView(path.unit, path.consumer, path.protocol, path.method, path.pam_service,
                                  tuple(path.evidence), path.problem, pam_view, path_ok(report, path)))
    return tuple(views)
