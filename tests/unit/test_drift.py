"""snapshot + drift on realistic roots, the deleted /etc/pam.d/imap and /etc/pam.d/smtp incident first."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mailpreflight.baseline.digestkey import KEY_PATH_ENV
from mailroots import debian12, leap15, link, write

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mailpreflight"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((REPO / "docs/schemas" / name).read_text())
    return loaded


@pytest.fixture()
def leap(tmp_path: Path) -> tuple[Path, Path]:
    root = leap15(tmp_path / "guest")
    baseline = tmp_path / "baseline.json"
    completed = run("snapshot", "--root", str(root), "--output", str(baseline))
    assert completed.returncode == 0, completed.stderr
    return root, baseline


def drift_json(root: Path, baseline: Path, *extra: str) -> tuple[int, dict[str, object]]:
    completed = run("drift", "--baseline", str(baseline), "--root", str(root), "--format", "json", *extra)
    assert completed.stderr == ""
    document = json.loads(completed.stdout)
    jsonschema.validate(document, schema("drift.schema.json"))
    return completed.returncode, document


def test_the_incident(leap: tuple[Path, Path]) -> None:
    """An upgrade deletes the admin's /etc/pam.d/imap and /etc/pam.d/smtp (both stacking pam_sss)."""
    root, baseline = leap
    (root / "etc/pam.d/imap").unlink()
    (root / "etc/pam.d/smtp").unlink()
    status, document = drift_json(root, baseline)
    assert status == 2 and document["status"] == "critical"
    changes = document["changes"]
    assert isinstance(changes, list)
    assert [(c["change"], c["path"]) for c in changes] == [("deleted", "/etc/pam.d/imap"),
                                                            ("deleted", "/etc/pam.d/smtp")]
    imap, smtp = changes
    assert [f["code"] for f in imap["causes"]] == ["MP301"] and [f["code"] for f in smtp["causes"]] == ["MP301"]
    assert imap["causes"][0]["message"].startswith("IMAP logins (cyrus IMAP) will fall back to `other`")
    assert smtp["causes"][0]["message"].startswith("SMTP logins (postfix smtpd (smtp, submission)) will fall back")
    assert "+auth     sufficient  pam_sss.so" not in imap["diff"] and "-auth     sufficient  pam_sss.so" in imap["diff"]
    text = run("drift", "--baseline", str(baseline), "--root", str(root))
    assert text.returncode == 2
    assert "DELETED  /etc/pam.d/imap" in text.stdout and "DELETED  /etc/pam.d/smtp" in text.stdout
    assert "-> MP301 critical: IMAP logins (cyrus IMAP) will fall back to `other`" in text.stdout
    assert f"fix: put /etc/pam.d/imap back: `mailpreflight restore --baseline {baseline} --root {root} " \
           "/etc/pam.d/imap`" in text.stdout
    check = run("check", "--root", str(root), "--deadline", "5", "--timeout", "1", "postfix.service",
                "cyrus-imapd.service")
    assert check.returncode == 2
    assert "critical MP301 cyrus-imapd.service: IMAP logins (cyrus IMAP) will fall back to `other`" in check.stdout
    assert "critical MP301 postfix.service: SMTP logins (postfix smtpd (smtp, submission)) will fall back to " \
           "`other`" in check.stdout


def test_no_drift(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    status, document = drift_json(root, baseline)
    assert status == 0 and document["changes"] == [] and document["new_findings"] == []
    assert run("drift", "--baseline", str(baseline), "--root", str(root)).stdout.splitlines()[1] == "No drift."


def test_snapshot_document(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    assert os.stat(baseline).st_mode & 0o777 == 0o600  # configs inside: root only
    assert [p.name for p in baseline.parent.iterdir() if p.name.startswith(".mailpreflight-")] == []
    document = json.loads(baseline.read_text())
    jsonschema.validate(document, schema("snapshot.schema.json"))
    files = document["files"]
    assert document["host"] == {"machine_id": "5b1a9e8c2f3d4e6a8b0c1d2e3f405162", "hostname": "mail.example.com",
                                "os": "openSUSE Leap 15.5"}
    assert files["/etc/pam.d/imap"]["text"].startswith("#%PAM-1.0") and files["/etc/pam.d/imap"]["owner"] == "root"
    link_entry = dict(files["/etc/pam.d/common-auth"])
    assert len(link_entry.pop("mac")) == 64
    assert link_entry == {"type": "symlink", "mode": "0777", "uid": os.getuid(), "gid": os.getgid(),
                          "owner": "root", "group": "root", "target": "common-auth-pc"}
    # secrets: digested with the host's key (not in the baseline), never written out
    key = Path(os.environ[KEY_PATH_ENV]).read_bytes().strip()
    assert document["digest"] == {"algorithm": "hmac-sha256",
                                  "key_id": hmac.new(key, b"mailpreflight-key-id", "sha256").hexdigest()[:16]}
    assert "salt" not in document and key.decode() not in baseline.read_text()
    for secret in ("/etc/sssd/sssd.conf", "/etc/postfix/sasl_passwd"):
        assert files[secret]["text"] is None and files[secret]["text_omitted"] == "not world-readable (mode 0600)"
        content = (root / secret.lstrip("/")).read_bytes()
        assert files[secret]["sha256"] == hmac.new(key, content, "sha256").hexdigest()
        assert files[secret]["sha256"] != hashlib.sha256(content).hexdigest()
    assert "s3cret" not in baseline.read_text()
    # units with their vendor fragments, enablement links, PAM modules
    for path in ("/usr/lib/systemd/system/saslauthd.service", "/etc/systemd/system/multi-user.target.wants/"
                 "postfix.service", "/lib64/security/pam_sss.so", "/etc/sasl2/smtpd.conf", "/etc/imapd.conf"):
        assert path in files, path
    again = json.loads(run("snapshot", "--root", str(root)).stdout)
    assert again["digest"] == document["digest"] and again["files"] == files  # one key per host: same digests


def test_changed_owner_mode_link_and_content(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    os.chmod(root / "etc/imapd.conf", 0o600)
    os.chown(root / "etc/sasl2/smtpd.conf", 1001, 1001)
    link(root, "/etc/pam.d/common-auth", "common-auth-local")
    write(root, "/etc/pam.d/common-auth-local", "auth required pam_unix.so\n")
    write(root, "/etc/sasl2/smtpd.conf", "pwcheck_method: auxprop\nmech_list: plain login\n")
    os.chown(root / "etc/sasl2/smtpd.conf", 1001, 1001)
    status, document = drift_json(root, baseline)
    by_path = {c["path"]: c for c in document["changes"]}  # type: ignore[union-attr]
    assert by_path["/etc/imapd.conf"]["details"] == ["mode 0644 -> 0600"]
    assert by_path["/etc/sasl2/smtpd.conf"]["details"] == ["owner root -> 1001", "group root -> 1001", "content"]
    assert "-pwcheck_method: saslauthd\n+pwcheck_method: auxprop" in by_path["/etc/sasl2/smtpd.conf"]["diff"]
    assert by_path["/etc/pam.d/common-auth"]["details"] == ["target common-auth-pc -> common-auth-local"]
    assert by_path["/etc/pam.d/common-auth-local"]["change"] == "added"
    assert status == 1  # smtpd.conf now uses auxprop: SMTP no longer goes through PAM, nothing critical


def test_secret_change_has_no_diff(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    write(root, "/etc/sssd/sssd.conf", "[sssd]\nldap_default_authtok = n3w\n", 0o600)
    _, document = drift_json(root, baseline)
    [change] = document["changes"]  # type: ignore[misc]
    assert change["details"] == ["content"] and change["diff"] is None


def test_removed_module_and_new_unit_dropin(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    (root / "lib64/security/pam_sss.so").unlink()
    write(root, "/etc/systemd/system/saslauthd.service.d/override.conf", "[Service]\nEnvironment=X=1\n")
    status, document = drift_json(root, baseline)
    by_path = {c["path"]: c for c in document["changes"]}  # type: ignore[union-attr]
    assert by_path["/lib64/security/pam_sss.so"]["change"] == "deleted"
    assert {f["code"] for f in by_path["/lib64/security/pam_sss.so"]["causes"]} == {"MP304"}
    assert by_path["/etc/systemd/system/saslauthd.service.d"]["change"] == "added"
    assert by_path["/etc/systemd/system/saslauthd.service.d/override.conf"]["change"] == "added"
    assert status == 2


def test_resolved_and_persisting(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest", imap_smtp=False)  # broken already when the baseline is taken
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    assert {f["code"] for f in json.loads(baseline.read_text())["findings"]} == {"MP301"}
    write(root, "/etc/pam.d/imap", "auth sufficient pam_sss.so\nauth required pam_unix.so\naccount required "
          "pam_unix.so\n")
    status, document = drift_json(root, baseline)
    assert [f["subject"] for f in document["resolved_findings"]] == ["pam:imap"]  # type: ignore[index]
    assert [f["subject"] for f in document["persisting_findings"]] == ["pam:smtp"]  # type: ignore[index]
    assert status == 1


def test_other_host_is_refused(leap: tuple[Path, Path], tmp_path: Path) -> None:
    _, baseline = leap
    other = debian12(tmp_path / "other")
    completed = run("drift", "--baseline", str(baseline), "--root", str(other))
    assert completed.returncode == 3 and completed.stdout == ""
    assert completed.stderr == (f"mailpreflight: {baseline}: the baseline is from another host: machine-id "
                                "5b1a9e8c2f3d4e6a8b0c1d2e3f405162 (baseline) is not 0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a "
                                "(this root); pass --other-host to use it anyway\n")
    assert run("drift", "--baseline", str(baseline), "--root", str(other), "--other-host").returncode == 1


@pytest.mark.parametrize("content, error", [
    ("{\n  \"kind\": \n", ":3: not a mailpreflight snapshot (invalid JSON)"),
    ('{"kind": "something-else", "files": {}}', ":1: not a mailpreflight snapshot"),
    ('{"kind": "mailpreflight-snapshot", "schema_version": 9, "files": {}}', ":1: snapshot schema_version 9 is not"),
    (b"\xff\xfe", ":1: not a mailpreflight snapshot (invalid JSON)"),
])
def test_bad_baseline(tmp_path: Path, content: str | bytes, error: str) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_bytes(content if isinstance(content, bytes) else content.encode())
    completed = run("drift", "--baseline", str(baseline), "--root", str(leap15(tmp_path / "r")))
    assert completed.returncode == 3 and "Traceback" not in completed.stderr
    assert completed.stderr.startswith(f"mailpreflight: {baseline}{error}") and completed.stderr.count("\n") == 1


def test_missing_baseline_and_unwritable_output(tmp_path: Path) -> None:
    completed = run("drift", "--baseline", str(tmp_path / "nope.json"))
    assert completed.returncode == 3 and "cannot read baseline" in completed.stderr
    completed = run("snapshot", "--root", str(leap15(tmp_path / "r")), "--output", str(tmp_path / "no/such/dir/b"))
    assert completed.returncode == 3 and completed.stderr.startswith("mailpreflight: cannot write")


def test_debian_upgrade_drift(tmp_path: Path) -> None:
    """Debian: dovecot.dpkg-dist beside a changed config, and a pam-auth-update that dropped pam_sss."""
    root = debian12(tmp_path / "guest")
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    write(root, "/etc/pam.d/common-auth", "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite"
          "\tpam_deny.so\nauth\trequired\tpam_permit.so\n")
    write(root, "/etc/dovecot/conf.d/10-auth.conf.dpkg-dist", "auth_mechanisms = plain\n")
    status, document = drift_json(root, baseline)
    by_path = {c["path"]: c for c in document["changes"]}  # type: ignore[union-attr]
    assert "-auth\t[success=1 default=ignore]\tpam_sss.so use_first_pass" in by_path["/etc/pam.d/common-auth"]["diff"]
    assert [f["code"] for f in by_path["/etc/dovecot/conf.d/10-auth.conf.dpkg-dist"]["causes"]] == ["MP306"]
    assert status == 1


def test_vendor_unit_change_causes_start_findings(tmp_path: Path) -> None:
    """An upgrade ships a spamd.service with a bare `sa-update` in ExecStartPre: MP101 and MP102 are new."""
    root = tmp_path / "guest"
    subprocess.run(["cp", "-a", str(REPO / "units/examples/opensuse-leap15-mail"), str(root)], check=True)
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    unit = root / "usr/lib/systemd/system/spamd.service"
    unit.write_text(unit.read_text().replace('ExecStartPre=/bin/bash -c "sa-update || true"',
                                             "ExecStartPre=/usr/bin/sa-update"))
    status, document = drift_json(root, baseline)
    [change] = document["changes"]  # type: ignore[misc]
    assert change["path"] == "/usr/lib/systemd/system/spamd.service"
    assert sorted(f["code"] for f in change["causes"]) == ["MP101", "MP102"]
    assert {f["code"] for f in document["persisting_findings"]} == {"MP103", "MP112"}  # type: ignore[union-attr]
    assert status == 2


@pytest.mark.parametrize("text, recorded", [
    ("binddn cn=mail,dc=example,dc=com\nbindpw Hunter2-ldap\n",
     "binddn cn=mail,dc=example,dc=com\nbindpw <redacted>\n"),
    ("user = postfix\npassword = s3cret\nhosts = db\n", "user = postfix\npassword = <redacted>\nhosts = db\n"),
    ("ldap_default_authtok: x\n#rootpw old\n", "ldap_default_authtok: <redacted>\n#rootpw <redacted>\n"),
    ("pwcheck_method: saslauthd\nsmtp_sasl_password_maps = lmdb:/etc/postfix/sasl_passwd\npassdb {\n",
     "pwcheck_method: saslauthd\nsmtp_sasl_password_maps = lmdb:/etc/postfix/sasl_passwd\npassdb {\n"),
])
def test_world_readable_secrets_are_redacted(text: str, recorded: str) -> None:
    from mailpreflight.baseline.snapshot import redact

    assert redact(text) == recorded


def test_secret_named_world_readable_file(leap: tuple[Path, Path]) -> None:
    root, _ = leap
    write(root, "/etc/postfix/sasl_passwd", "[smtp.example.net]:587 user:Hunter2\n", 0o644)
    write(root, "/etc/ldap.conf", "uri ldaps://ldap.example.com\nbindpw Hunter2\n", 0o644)
    document = json.loads(run("snapshot", "--root", str(root)).stdout)
    assert "Hunter2" not in json.dumps(document)
    assert document["files"]["/etc/postfix/sasl_passwd"]["text_omitted"] == "its name says it holds secrets"
    assert document["files"]["/etc/ldap.conf"]["text"] == "uri ldaps://ldap.example.com\nbindpw <redacted>\n"


def test_a_shifted_bad_line_is_not_new(leap: tuple[Path, Path], tmp_path: Path) -> None:
    root = leap15(tmp_path / "broken")
    write(root, "/etc/pam.d/imap", "auth requried pam_unix.so\naccount required pam_unix.so\n")
    baseline = tmp_path / "b2.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    write(root, "/etc/pam.d/imap", "# vendor comment\nauth requried pam_unix.so\naccount required pam_unix.so\n")
    status, document = drift_json(root, baseline)
    assert document["new_findings"] == [] and document["resolved_findings"] == [] and status == 1


def test_vendor_dropin_in_a_new_directory(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    write(root, "/usr/lib/systemd/system/postfix.service.d/50-vendor.conf", "[Service]\nPrivateTmp=yes\n")
    _, document = drift_json(root, baseline)
    assert [(c["change"], c["path"]) for c in document["changes"]] == [  # type: ignore[union-attr]
        ("added", "/usr/lib/systemd/system/postfix.service.d/50-vendor.conf")]


def test_change_behind_a_symlink(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    write(root, "/srv/pam/imap", (root / "etc/pam.d/imap").read_text())
    link(root, "/etc/pam.d/imap", "/srv/pam/imap")
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    assert "/srv/pam/imap" in json.loads(baseline.read_text())["files"]
    write(root, "/srv/pam/imap", "auth required pam_deny.so\naccount required pam_deny.so\n")
    _, document = drift_json(root, baseline)
    assert [(c["change"], c["path"]) for c in document["changes"]] == [  # type: ignore[union-attr]
        ("changed", "/srv/pam/imap")]


# --- restore: the fix step of the workflow ----------------------------------------------------------------

def test_restore_the_incident(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    before = {name: (root / "etc/pam.d" / name).stat() for name in ("imap", "smtp")}
    texts = {name: (root / "etc/pam.d" / name).read_text() for name in ("imap", "smtp")}
    (root / "etc/pam.d/imap").unlink()
    (root / "etc/pam.d/smtp").unlink()
    dry = run("restore", "--baseline", str(baseline), "--root", str(root), "--dry-run", "/etc/pam.d/imap")
    assert dry.returncode == 0 and "+auth     sufficient  pam_sss.so" in dry.stdout
    assert not (root / "etc/pam.d/imap").exists()  # a dry run writes nothing
    done = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/pam.d/imap", "/etc/pam.d/smtp")
    assert done.returncode == 0, done.stderr
    assert "restored /etc/pam.d/imap (undo: rm /etc/pam.d/imap)" in done.stderr
    for name in ("imap", "smtp"):
        now = (root / "etc/pam.d" / name).stat()
        assert (root / "etc/pam.d" / name).read_text() == texts[name]
        assert (now.st_mode, now.st_uid, now.st_gid) == (before[name].st_mode, before[name].st_uid,
                                                         before[name].st_gid)
    assert [p.name for p in (root / "etc/pam.d").iterdir() if ".tmp-" in p.name] == []
    status, document = drift_json(root, baseline)
    assert status == 0 and document["changes"] == []
    again = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/pam.d/imap")
    assert again.returncode == 0 and "already as in the baseline" in again.stderr  # idempotent


def test_restore_keeps_the_current_file_and_links(leap: tuple[Path, Path]) -> None:
    root, baseline = leap
    write(root, "/etc/pam.d/imap", "auth include common-auth\n")
    link(root, "/etc/pam.d/common-auth", "common-auth-local")
    done = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/pam.d/imap",
               "/etc/pam.d/common-auth")
    assert done.returncode == 0, done.stderr
    assert (root / "etc/pam.d/imap.mailpreflight-backup").read_text() == "auth include common-auth\n"
    assert os.readlink(root / "etc/pam.d/common-auth") == "common-auth-pc"
    assert os.readlink(root / "etc/pam.d/common-auth.mailpreflight-backup") == "common-auth-local"
    # a second differing file cannot overwrite the backup
    write(root, "/etc/pam.d/imap", "auth required pam_deny.so\n")
    refused = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/pam.d/imap")
    assert refused.returncode == 3 and "already exists" in refused.stderr


@pytest.mark.parametrize("path, error", [
    ("/etc/sssd/sssd.conf", "no text of /etc/sssd/sssd.conf (not world-readable (mode 0600))"),
    ("/usr/lib/systemd/system/postfix.service", "only /etc is restored, never /usr"),
    ("/etc/pam.d/nonesuch", "/etc/pam.d/nonesuch is not in the baseline"),
    ("/etc/pam.d", "/etc/pam.d was a dir: only files and symlinks are restored"),
])
def test_restore_refuses(leap: tuple[Path, Path], path: str, error: str) -> None:
    root, baseline = leap
    done = run("restore", "--baseline", str(baseline), "--root", str(root), path)
    assert done.returncode == 3 and error in done.stderr and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"mailpreflight: {baseline}: ") or "/usr" in path  # names the baseline


def test_restore_refuses_redacted_text(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    write(root, "/etc/ldap.conf", "uri ldaps://ldap.example.com\nbindpw Hunter2\n")
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    (root / "etc/ldap.conf").unlink()
    done = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/ldap.conf")
    assert done.returncode == 3 and "redacted secrets" in done.stderr and not (root / "etc/ldap.conf").exists()
