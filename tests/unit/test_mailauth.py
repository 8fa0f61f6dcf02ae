"""Mail-authentication preflight on realistic roots: which SASL/PAM path each service uses, which PAM file
wins, and the findings MP301-MP309."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth import pam
from mailpreflight.auth.check import analyze_auth
from mailroots import debian12, leap15, link, write

CLI = [sys.executable, "-m", "mailpreflight"]


def issues(root: Path) -> dict[str, list[tuple[str, str]]]:
    """code -> [(severity, message)]"""
    found: dict[str, list[tuple[str, str]]] = {}
    for issue in analyze_auth(RootFS(str(root))).issues:
        found.setdefault(issue.finding.code, []).append((issue.finding.severity.value, issue.finding.message))
    return found


def test_leap15_paths(tmp_path: Path) -> None:
    report = analyze_auth(RootFS(str(leap15(tmp_path))))
    paths = {(p.unit, p.protocol): p for p in report.paths}
    smtp = paths[("postfix.service", "SMTP")]
    assert smtp.consumer == "postfix smtpd (smtp, submission)"
    assert smtp.method == "Cyrus SASL -> saslauthd -a pam" and smtp.pam_service == "smtp"
    assert "/etc/sasl2/smtpd.conf:1: pwcheck_method: saslauthd" in smtp.evidence
    # the mechanism comes from the unit's ExecStart with $SASLAUTHD_AUTHMECH expanded from the sysconfig file
    assert any(e.startswith("/usr/lib/systemd/system/saslauthd.service:9") and "(-a pam)" in e
               for e in smtp.evidence)
    imap = paths[("cyrus-imapd.service", "IMAP")]
    assert imap.pam_service == "imap" and ("cyrus-imapd.service", "POP3") not in paths  # pop3d is commented out
    assert report.services["imap"].file == "/etc/pam.d/imap"
    assert report.services["imap"].modules("auth") == ("pam_sss.so", "pam_unix.so")
    assert all(line.module_path and line.module_path.startswith("/lib64/security/")
               for line in report.services["smtp"].lines)
    assert report.issues == []  # a healthy server has nothing to say


def test_debian12_paths(tmp_path: Path) -> None:
    report = analyze_auth(RootFS(str(debian12(tmp_path))))
    [postfix] = [p for p in report.paths if p.unit == "postfix.service"]
    assert postfix.method == "dovecot auth (private/auth)" and postfix.problem is None
    [dovecot] = [p for p in report.paths if p.unit == "dovecot.service"]
    assert dovecot.pam_service == "dovecot"  # passdb pam without args: the default service name
    assert dovecot.protocol == "IMAP/POP3/SMTP"  # protocols from /usr/share/dovecot/protocols.d, and postfix
    service = report.services["dovecot"]
    assert service.file == "/etc/pam.d/dovecot" and not service.fell_back
    assert service.modules("auth") == ("pam_unix.so", "pam_sss.so", "pam_deny.so", "pam_permit.so")
    assert all(line.via == ("/etc/pam.d/dovecot",) for line in service.lines if line.type != "password")
    assert all(line.module_path and line.module_path.startswith("/lib/x86_64-linux-gnu/security/")
               for line in service.stack("auth"))
    # dovecot's file has no password stack: `other` gives it (dovecot never asks for it: no finding)
    assert service.from_other == ("password",)
    assert report.issues == []


def test_the_incident_imap_and_smtp_fall_back_to_other(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)  # the upgrade deleted the admin's files
    found = issues(root)
    messages = [m for severity, m in found["MP301"] if severity == "critical"]
    assert len(messages) == 2
    imap = next(m for m in messages if m.startswith("IMAP logins"))
    assert "will fall back to `other`" in imap and "no imap in /etc/pam.d, /usr/lib/pam.d, /usr/etc/pam.d" in imap
    assert "pam_unix (common-auth)" in imap and "directory users (sssd/LDAP) can no longer log in" in imap
    assert any(m.startswith("SMTP logins (postfix smtpd (smtp, submission))") for m in messages)
    completed = subprocess.run([*CLI, "check", "--root", str(root), "--deadline", "5", "--timeout", "1",
                                "--format", "json", "cyrus-imapd.service"], capture_output=True, text=True)
    document = json.loads(completed.stdout)
    jsonschema.validate(document, json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/check.schema.json")
                                             .read_text()))
    assert completed.returncode == 2 and document["status"] == "critical"
    [imap_path] = document["auth"]
    assert imap_path["pam"]["fallback_other"] is True and imap_path["pam"]["other_file"] == "/etc/pam.d/other"
    assert [f["code"] for f in document["findings"] if f["code"].startswith("MP3")] == ["MP301"]


def test_fallback_without_directory_users_is_a_warning(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    write(root, "/etc/nsswitch.conf", "passwd: compat\ngroup: compat\n")
    assert {severity for severity, _ in issues(root)["MP301"]} == {"warning"}


def test_other_that_denies(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    write(root, "/etc/pam.d/other", "#%PAM-1.0\nauth     required       pam_warn.so\nauth     required       "
          "pam_deny.so\naccount  required       pam_deny.so\n")
    [(severity, message), _] = issues(root)["MP301"]
    assert severity == "critical" and "which refuses every login" in message


def test_no_file_and_no_other(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    (root / "etc/pam.d/other").unlink()
    found = issues(root)
    assert "MP301" not in found
    assert all(severity == "critical" and "libpam refuses every login" in m for severity, m in found["MP302"])


def test_missing_directory_module(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    (root / "lib64/security/pam_sss.so").unlink()  # sssd-client uninstalled by the upgrade
    found = issues(root)["MP304"]
    # `sufficient`: libpam ignores the result, but directory users can no longer log in
    assert {s for s, _ in found} == {"critical"}
    assert any("/etc/pam.d/imap:4: pam_sss.so is not installed (sufficient: its result is ignored), and directory"
               in m for _, m in found)


def test_missing_required_module_and_include(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "auth required pam_ldap.so\naccount include common-account-old\n")
    found = issues(root)
    assert [s for s, _ in found["MP304"]] == ["critical"]
    assert "required: the stack fails" in found["MP304"][0][1]
    [(severity, message)] = found["MP303"]
    assert severity == "critical" and "includes 'common-account-old', which is not there" in message


def test_missing_common_file_on_debian_names_pam_auth_update(tmp_path: Path) -> None:
    """Debian's common-* files are pam-auth-update's (libpam-runtime's postinst): missing, it writes them again."""
    root = leap15(tmp_path)
    write(root, "/etc/os-release", "ID=debian\n")
    write(root, "/etc/pam.d/imap", "auth include common-auth\naccount include common-account-old\n")
    (root / "etc/pam.d/common-auth").unlink()
    hints = {i.finding.message.split("includes ")[1][:22]: i.finding.hint
             for i in analyze_auth(RootFS(str(root))).issues if i.finding.code == "MP303"}
    assert hints == {"'common-account-old', ": "restore the included file or fix the line",  # not pam-auth-update's
                     "'common-auth', which i": "restore the included file or fix the line"}  # no pam-auth-update
    write(root, "/usr/sbin/pam-auth-update", "#!/usr/bin/perl\n")
    hints = {i.finding.message.split("includes ")[1][:22]: i.finding.hint
             for i in analyze_auth(RootFS(str(root))).issues if i.finding.code == "MP303"}
    assert hints["'common-auth', which i"] == ("pam-auth-update --package (writes /etc/pam.d/common-auth and the other "
                                               "common-* files from /usr/share/pam-configs)")


def test_rpmsave_leftover_names_the_restore(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    write(root, "/etc/pam.d/imap.rpmsave", "auth sufficient pam_sss.so\n")
    write(root, "/etc/pam.d/smtp.rpmnew", "auth include common-auth\n")
    write(root, "/etc/pam.d/sshd.rpmnew", "auth include common-auth\n")  # not a mail file: not reported
    write(root, "/etc/postfix/main.cf.rpmnew", "# new defaults\n")
    found = issues(root)
    leftovers = " | ".join(m for _, m in found["MP306"])
    assert len(found["MP306"]) == 3
    assert "/etc/pam.d/imap is gone, and the package manager kept the previous version as " \
           "/etc/pam.d/imap.rpmsave" in leftovers
    assert "a new vendor version of /etc/postfix/main.cf was NOT installed" in leftovers
    assert "(and /etc/pam.d/smtp itself is missing)" in leftovers
    hints = [i.finding.hint for i in analyze_auth(RootFS(str(root))).issues if i.finding.code == "MP301"]
    assert "`mv /etc/pam.d/imap.rpmsave /etc/pam.d/imap`" in " ".join(hints)


def test_dpkg_leftovers(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/pam.d/common-auth.dpkg-dist", DEBIAN_NEW := "auth required pam_unix.so\n")
    write(root, "/etc/dovecot/conf.d/10-auth.conf.dpkg-old", DEBIAN_NEW)
    assert len(issues(root)["MP306"]) == 2


def test_saslauthd_missing_masked_disabled(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    (root / "etc/systemd/system/multi-user.target.wants/saslauthd.service").unlink()
    found = issues(root)["MP307"]
    assert {s for s, _ in found} == {"warning"} and all("is not enabled" in m for _, m in found)
    # pulled in by an enabled postfix: started whenever postfix is
    write(root, "/etc/systemd/system/postfix.service.d/sasl.conf", "[Unit]\nWants=saslauthd.service\n")
    assert "MP307" not in issues(root)
    (root / "etc/systemd/system/postfix.service.d/sasl.conf").unlink()
    link(root, "/etc/systemd/system/saslauthd.service", "/dev/null")
    found = issues(root)["MP307"]
    assert {s for s, _ in found} == {"critical"} and all("masked" in m for _, m in found)
    (root / "etc/systemd/system/saslauthd.service").unlink()
    (root / "usr/lib/systemd/system/saslauthd.service").unlink()
    (root / "usr/sbin/saslauthd").unlink()
    (root / "etc/sysconfig/saslauthd").unlink()
    assert all("saslauthd is not installed" in m for _, m in issues(root)["MP307"])


def test_saslauthd_other_mechanism_means_no_pam(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    write(root, "/etc/sysconfig/saslauthd", "SASLAUTHD_AUTHMECH=ldap\nSASLAUTHD_THREADS=5\n")
    report = analyze_auth(RootFS(str(root)))
    assert {p.method for p in report.paths} == {"Cyrus SASL -> saslauthd -a ldap"}
    assert report.services == {} and report.issues == []


def test_postfix_dovecot_without_dovecot(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    (root / "etc/dovecot/dovecot.conf").unlink()
    [(severity, message)] = issues(root)["MP307"]
    assert severity == "critical" and "smtpd_sasl_type = dovecot, but Dovecot is not installed" in message


def test_master_cf_override_only(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/postfix/main.cf", "myhostname = mail.example.com\n")  # SASL only on submission (-o)
    [smtp] = [p for p in analyze_auth(RootFS(str(root))).paths if p.unit == "postfix.service"]
    assert smtp.consumer == "postfix smtpd (submission)"
    assert smtp.evidence[0].startswith("/etc/postfix/master.cf:4: submission runs smtpd")


def test_debian_postfix_reads_etc_postfix_sasl(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/postfix/main.cf", "smtpd_sasl_auth_enable = yes\ncyrus_sasl_config_path = /etc/sasl2\n")
    write(root, "/etc/sasl2/smtpd.conf", "pwcheck_method: auxprop\n")  # ignored by Debian's postfix
    write(root, "/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\n")
    write(root, "/etc/default/saslauthd", 'START=yes\nDESC="SASL Authentication Daemon"\nMECHANISMS="pam"\n'
          'OPTIONS="-c -m /var/spool/postfix/var/run/saslauthd"\n')
    write(root, "/etc/init.d/saslauthd", "#!/bin/sh\n", 0o755)
    link(root, "/etc/rc2.d/S01saslauthd", "../init.d/saslauthd")
    [smtp] = [p for p in analyze_auth(RootFS(str(root))).paths if p.unit == "postfix.service"]
    assert "/etc/postfix/sasl/smtpd.conf:1: pwcheck_method: saslauthd" in smtp.evidence
    assert smtp.pam_service == "smtp" and smtp.problem is None
    assert any(e.startswith("/etc/default/saslauthd:3 (MECHANISMS=pam)") for e in smtp.evidence)
    (root / "etc/rc2.d/S01saslauthd").unlink()  # update-rc.d defaults-disabled: Debian's own default
    [smtp] = [p for p in analyze_auth(RootFS(str(root))).paths if p.unit == "postfix.service"]
    assert smtp.problem and "is not enabled" in smtp.problem


def test_dovecot_service_per_protocol(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/dovecot/conf.d/auth-system.conf.ext", "passdb {\n  driver = pam\n  args = session=yes "
          "%s\n}\n")
    report = analyze_auth(RootFS(str(root)))
    services = sorted((p.unit, p.pam_service) for p in report.paths if p.pam_service)
    assert services == [("dovecot.service", "imap"), ("dovecot.service", "pop3"), ("postfix.service", "smtp")]
    assert {i.finding.code for i in report.issues} == {"MP301"}  # imap, pop3, smtp: Debian has none of them
    assert all(i.finding.severity.value == "warning" for i in report.issues)  # other still stacks pam_sss


def test_dovecot_24_syntax(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/dovecot/conf.d/auth-system.conf.ext", "passdb pam {\n  service_name = %{protocol}\n}\n")
    assert sorted(p.pam_service or "" for p in analyze_auth(RootFS(str(root))).paths if p.pam_service) == [
        "imap", "pop3", "smtp"]


def test_shadowed_vendor_file(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/usr/lib/pam.d/smtp", "auth include common-auth\n")
    service = pam.resolve(RootFS(str(root)), "smtp")
    assert service.file == "/etc/pam.d/smtp" and service.shadowed == ("/usr/lib/pam.d/smtp",)
    [(severity, message)] = issues(root)["MP308"]
    assert severity == "info" and message.startswith("/usr/lib/pam.d/smtp is not used")


def test_vendor_dir_used_when_etc_has_none(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    write(root, "/usr/etc/pam.d/imap", "auth required pam_unix.so\naccount required pam_unix.so\n")
    write(root, "/usr/lib/pam.d/smtp", "auth required pam_unix.so\naccount required pam_unix.so\n")
    fs = RootFS(str(root))
    assert pam.resolve(fs, "imap").file == "/usr/etc/pam.d/imap"
    assert pam.resolve(fs, "smtp").file == "/usr/lib/pam.d/smtp"
    assert "MP301" not in issues(root)


@pytest.mark.parametrize("text, expected", [
    ("auth required pam_unix.so # comment \\\naccount required pam_unix.so\n",
     [(1, ["auth", "required", "pam_unix.so"]), (2, ["account", "required", "pam_unix.so"])]),
    ("auth required \\\n   pam_unix.so nullok\n", [(1, ["auth", "required", "pam_unix.so", "nullok"])]),
    ("auth [success=2 default=ignore] pam_unix.so [query=select x from y]\n",
     [(1, ["auth", "[success=2 default=ignore]", "pam_unix.so", "[query=select x from y]"])]),
    ("auth required pam_x.so [a\\]b c]\n", [(1, ["auth", "required", "pam_x.so", "[a]b c]"])]),
    ("   # only a comment\n\n", []),
])
def test_logical_lines(text: str, expected: list[tuple[int, list[str]]]) -> None:
    assert pam.logical_lines(text) == (expected, None, [])


def test_continuation_through_comments_and_at_the_end() -> None:
    assert pam.logical_lines("auth required \\\n# note\n\n  pam_unix.so\n") == (
        [(1, ["auth", "required", "pam_unix.so"])], None, [2, 3])
    assert pam.logical_lines("auth required pam_unix.so\\") == ([], 1, [])


def test_dangling_continuation_refuses_everything(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "auth required pam_unix.so\naccount required pam_unix.so \\\n")
    [problem] = pam.resolve(RootFS(str(root)), "imap").problems
    assert (problem.kind, problem.type, problem.fatal) == ("bad-line", None, True)
    assert "[critical]" not in str(issues(root)["MP305"]) and issues(root)["MP305"][0][0] == "critical"


def test_debian_includes_only_from_etc(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/usr/lib/pam.d/common-vendor", "auth required pam_unix.so\n")
    write(root, "/etc/pam.d/dovecot", "auth include common-vendor\naccount required pam_unix.so\n")
    [problem] = pam.resolve(RootFS(str(root)), "dovecot").problems
    assert problem.kind == "missing-include" and problem.detail.endswith("(/etc/pam.d/common-vendor): the auth "
                                                                          "stack fails")
    (root / "etc/debian_version").unlink()  # os-release decides (units/distro.py): still Debian's libpam
    assert [p.kind for p in pam.resolve(RootFS(str(root)), "dovecot").problems] == ["missing-include"]
    write(root, "/etc/os-release", 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n')
    write(root, "/etc/debian_version", "12.8\n")  # a stray file does not outvote os-release
    # upstream libpam (openSUSE, Fedora): the include is looked up like a service
    assert pam.resolve(RootFS(str(root)), "dovecot").problems == ()


def test_keywords_case_and_service_name(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "AUTH Required pam_unix.so\nAccount SUFFICIENT pam_unix.so\n")
    service = pam.resolve(RootFS(str(root)), "/some/path/IMAP")
    assert service.name == "imap" and service.modules("auth") == ("pam_unix.so",) and service.problems == ()


def test_unknown_type_and_control(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "auht required pam_unix.so\nauth requried pam_unix.so\naccount required "
          "pam_unix.so\n")
    problems = pam.resolve(RootFS(str(root)), "imap").problems
    assert [(p.kind, p.type, p.fatal) for p in problems] == [("bad-line", "auth", True), ("bad-line", "auth", True)]
    found = issues(root)["MP305"]
    assert [s for s, _ in found] == ["critical", "critical"]
    assert "/etc/pam.d/imap:1: unknown type 'auht'" in found[0][1]


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "auth include imap-a\naccount required pam_unix.so\n")
    write(root, "/etc/pam.d/imap-a", "auth include imap-b\n")
    write(root, "/etc/pam.d/imap-b", "auth include imap-a\n")
    [problem] = pam.resolve(RootFS(str(root)), "imap").problems
    assert problem.kind == "include-loop"


def test_legacy_pam_conf(tmp_path: Path) -> None:
    root = tmp_path
    write(root, "/etc/pam.conf", "IMAP auth required pam_unix.so\nother auth required pam_deny.so\n"
          "other account required pam_deny.so\n")
    write(root, "/lib/security/pam_unix.so", "")
    imap = pam.resolve(RootFS(str(root)), "imap")
    assert imap.legacy and imap.file == "/etc/pam.conf" and imap.modules("auth") == ("pam_unix.so",)
    assert imap.from_other == ("account",) and imap.modules("account") == ("pam_deny.so",)
    smtp = pam.resolve(RootFS(str(root)), "smtp")
    assert smtp.fell_back and smtp.modules("auth") == ("pam_deny.so",)
    assert smtp.stack("auth")[0].source == "/etc/pam.conf:2"


def test_pam_d_wins_over_pam_conf(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.conf", "imap auth required pam_deny.so\n")
    assert not pam.resolve(RootFS(str(root)), "imap").legacy


def test_check_text_shows_the_paths(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    completed = subprocess.run([*CLI, "check", "--root", str(root), "--deadline", "5", "--timeout", "1",
                                "postfix.service", "cyrus-imapd.service"], capture_output=True, text=True)
    assert completed.returncode == 2, completed.stderr
    assert "mail authentication:" in completed.stdout
    assert ("postfix.service SMTP [postfix smtpd (smtp, submission)]: Cyrus SASL -> saslauthd -a pam -> PAM smtp: "
            "FALLS BACK to /etc/pam.d/other (auth: pam_env (common-auth), pam_unix (common-auth))") in completed.stdout
    assert completed.stdout.count("critical MP301") == 2
    skipped = subprocess.run([*CLI, "check", "--root", str(root), "--no-auth", "--format", "json",
                              "--deadline", "5", "--timeout", "1", "postfix.service"], capture_output=True, text=True)
    assert json.loads(skipped.stdout)["auth"] == []


def test_monitoring_formats_carry_logins(tmp_path: Path) -> None:
    root = leap15(tmp_path, imap_smtp=False)
    nagios = subprocess.run([*CLI, "check", "--root", str(root), "--format", "nagios", "--deadline", "5",
                             "--timeout", "1", "cyrus-imapd.service"], capture_output=True, text=True)
    assert nagios.returncode == 2
    assert nagios.stdout.startswith("MAILPREFLIGHT CRITICAL: 1 mail login problem(s): IMAP logins")
    prometheus = subprocess.run([*CLI, "check", "--root", str(root), "--format", "prometheus", "--deadline", "5",
                                 "--timeout", "1", "cyrus-imapd.service"], capture_output=True, text=True)
    assert ('mailpreflight_auth_path_ok{unit="cyrus-imapd.service",protocol="IMAP",consumer="cyrus IMAP",'
            'pam_service="imap"} 0') in prometheus.stdout


def test_master_cf_brace_and_reference_forms(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/postfix/main.cf", "myhostname = mail.example.com\nmua_sasl = yes\n")
    write(root, "/etc/postfix/master.cf", "smtp inet n - n - - smtpd\nsubmission inet n - n - - smtpd\n"
          "  -o { smtpd_sasl_auth_enable = $mua_sasl }\n  -o { smtpd_sasl_service = submit }\n"
          "smtps inet n - n - - smtpd -o smtpd_sasl_auth_enable=$mua_sasl -o smtpd_tls_wrappermode=yes\n")
    paths = sorted((p.consumer, p.pam_service) for p in analyze_auth(RootFS(str(root))).paths
                   if p.unit == "postfix.service")
    assert paths == [("postfix smtpd (smtps)", "smtp"), ("postfix smtpd (submission)", "submit")]


# --- found in review: odd input a real server has ---------------------------------------------------------

def test_crlf_and_nbsp_are_not_blanks(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", (root / "etc/pam.d/imap").read_text().replace("\n", "\r\n"))
    write(root, "/etc/pam.d/smtp", "auth sufficient pam_sss.so\nauth required\u00a0pam_unix.so\n"
          "account required pam_unix.so\n")
    found = issues(root)
    messages = " | ".join(m for _, m in found["MP305"])
    assert "'pam_unix.so\\r' contains a carriage return (a file with CRLF line ends?): libpam does not treat it " \
           "as a blank" in messages
    assert "contains NO-BREAK SPACE" in messages
    assert "critical" in {s for s, _ in found["MP305"]}  # required lines fail; sufficient ones are ignored
    assert any("'pam_unix.so\\r' is not installed (required: the stack fails)" in m for _, m in found["MP304"])


def test_at_include_outside_debian_is_a_failing_line(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/smtp", "@include common-auth\naccount required pam_unix.so\n")
    [(severity, message)] = issues(root)["MP305"]
    assert severity == "critical" and "unknown type '@include'" in message
    write(root, "/etc/debian_version", "12\n")  # os-release (openSUSE) decides, not a stray debian_version
    assert "MP305" in issues(root)
    write(root, "/etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    assert "MP305" not in issues(root)


def test_removed_dovecot_keeps_its_config(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    (root / "lib/systemd/system/dovecot.service").unlink()  # apt remove: conffiles stay
    found = issues(root)
    assert [m for _, m in found["MP307"]] == [
        "SMTP logins (postfix smtpd (smtp), dovecot auth (private/auth)): smtpd_sasl_type = dovecot, but Dovecot is "
        "not installed"]
    assert all(p.unit != "dovecot.service" for p in analyze_auth(RootFS(str(root))).paths)


def test_dovecot_args_with_an_odd_quote(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/dovecot/conf.d/auth-system.conf.ext", 'passdb {\n  driver = pam\n  args = "dovecot\n}\n')
    completed = subprocess.run([*CLI, "snapshot", "--root", str(root)], capture_output=True, text=True)
    assert completed.returncode == 0 and "Traceback" not in completed.stderr


def test_postscreen_pass_service(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/postfix/master.cf", "smtp inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n"
          "dnsblog unix - - n - 0 dnsblog\n")
    [smtp] = [p for p in analyze_auth(RootFS(str(root))).paths if p.unit == "postfix.service"]
    assert smtp.consumer == "postfix smtpd (smtpd)" and smtp.pam_service == "smtp"


def test_dovecot_sieve_and_default_protocols(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    write(root, "/etc/dovecot/dovecot.conf", "!include conf.d/*.conf\n")  # no protocols.d: the default set
    write(root, "/etc/dovecot/conf.d/20-managesieve.conf", "protocols = $protocols sieve\n")
    write(root, "/etc/dovecot/conf.d/auth-system.conf.ext", "passdb {\n  driver = pam\n  args = *\n}\n")
    services = sorted(p.pam_service or "" for p in analyze_auth(RootFS(str(root))).paths if p.pam_service)
    assert services == ["imap", "pop3", "sieve", "smtp"]


def test_dovecot_include_through_an_absolute_link(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    conf_d = root / "etc/dovecot/conf.d"
    (root / "usr/share/dovecot").mkdir(parents=True, exist_ok=True)
    conf_d.rename(root / "usr/share/dovecot/conf.d")
    link(root, "/etc/dovecot/conf.d", "/usr/share/dovecot/conf.d")  # absolute: must resolve inside the root
    assert [p.pam_service for p in analyze_auth(RootFS(str(root))).paths if p.unit == "dovecot.service"] == [
        "dovecot"]


def test_bracket_control_that_ignores_a_missing_module(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "auth [success=ok module_unknown=ignore default=bad] pam_tally2.so\n"
          "auth [default=die] pam_faildelay.so\nauth required pam_unix.so\naccount required pam_unix.so\n")
    found = sorted(issues(root)["MP304"])
    assert [s for s, _ in found] == ["critical", "warning"]
    assert "pam_faildelay.so is not installed ([default=die]: the stack fails)" in found[0][1]
    assert "pam_tally2.so is not installed ([success=ok module_unknown=ignore default=bad]: its result is " \
           "ignored)" in found[1][1]


def test_unreadable_pam_file_is_not_treated_as_empty(tmp_path: Path) -> None:
    root = leap15(tmp_path)
    write(root, "/etc/pam.d/imap", "# padding\n" * 120_000)  # over the 1 MiB read limit
    service = pam.resolve(RootFS(str(root)), "imap")
    assert service.file == "/etc/pam.d/imap" and service.from_other == ()
    [(severity, message)] = issues(root)["MP305"]
    assert severity == "warning" and "cannot be read here" in message and "MP309" not in issues(root)
