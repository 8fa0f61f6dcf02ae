"""What a baseline must not give away, and must not let anyone change: redaction of the secret forms mail
configurations use, and content digests keyed with the host's key (not in the baseline), with a MAC per
entry that `restore` checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailpreflight.access.rootfs import RootFS
from mailpreflight.baseline.digestkey import (
    KEY_PATH_ENV,
    Digest,
    check_entry,
    for_baseline,
    load_or_create,
    read_key,
    recorded_digest,
)
from mailpreflight.baseline.document import load_baseline
from mailpreflight.baseline.snapshot import redact, take
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import EntryType, FileRecord
from mailroots import leap15, write

CLI = [sys.executable, "-m", "mailpreflight"]


def run(*args: str, key_env: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if key_env is not None:
        env[KEY_PATH_ENV] = str(key_env)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)


# --- redaction -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "recorded"), [
    # postfix map literals of a password parameter, main.cf and master.cf
    ("main.cf", "smtp_sasl_password_maps = static:relay@example.com:Hunter2-static\n",
     "smtp_sasl_password_maps = static:<redacted>\n"),
    ("main.cf", "smtp_sasl_password_maps = inline:{ [smtp.example.net]:587=relay:Hunter2-inline, [b]:25=x:y }\n"
                "relayhost = [smtp.example.net]:587\n",
     "smtp_sasl_password_maps = inline:{<redacted>}\nrelayhost = [smtp.example.net]:587\n"),
    ("main.cf", "smtp_sasl_password_maps = inline:{\n    { [smtp.example.net]:587 = relay:Hunter2-multi }\n    }\n"
                "relayhost = [smtp.example.net]:587\n",
     "smtp_sasl_password_maps = inline:{<redacted>}\nrelayhost = [smtp.example.net]:587\n"),
    ("main.cf", "smtp_sasl_password_maps =\n    static:relay:Hunter2-continued\nmyhostname = mail\n",
     "smtp_sasl_password_maps =\n    static:<redacted>\nmyhostname = mail\n"),
    ("main.cf", "#smtp_sasl_password_maps = static:old:Hunter2-commented\n",
     "#smtp_sasl_password_maps = static:<redacted>\n"),
    ("main.cf", "smtp_sasl_password_maps = pipemap:{inline:{x=y}, static:u:Hunter2-nested}\n",
     "smtp_sasl_password_maps = pipemap:{inline:{<redacted>}, static:<redacted>}\n"),
    ("master.cf", "submission inet n - n - - smtpd\n  -o smtpd_tls_security_level=encrypt\n"
                  "  -o smtp_sasl_password_maps=static:relay:Hunter2-master\n",
     "submission inet n - n - - smtpd\n  -o smtpd_tls_security_level=encrypt\n"
     "  -o smtp_sasl_password_maps=static:<redacted>\n"),
    # Dovecot key=value pairs anywhere on a line
    ("dovecot-sql.conf.ext", "connect = host=db.example.com dbname=mail user=dovecot password=Hunter2-connect\n",
     "connect = host=db.example.com dbname=mail user=dovecot password=<redacted>\n"),
    ("10-auth.conf", "  args = host=db dbname=mail password='Hunter2 quoted' user=mail\n",
     "  args = host=db dbname=mail password=<redacted> user=mail\n"),
    ("10-auth.conf", 'passdb {\n  args = "uri=ldap://ldap dnpass=Hunter2-dnpass"\n}\n',
     'passdb {\n  args = "uri=ldap://ldap dnpass=<redacted>\n}\n'),
    # URL userinfo anywhere
    ("freshclam.conf", "DatabaseMirror https://mirroruser:Hunter2-url@mirror.example.com/clamav\n",
     "DatabaseMirror https://mirroruser:<redacted>@mirror.example.com/clamav\n"),
    ("freshclam.conf", "PrivateMirror http://u:Hunter2@with-at@10.0.0.7:8080/db\n",
     "PrivateMirror http://u:<redacted>@10.0.0.7:8080/db\n"),
    ("fetchmail", 'FETCHMAIL_PROXY="http://proxy:Hunter2-proxy@proxy.example.com:3128"\n',
     'FETCHMAIL_PROXY="http://proxy:<redacted>@proxy.example.com:3128"\n'),
    # /etc/default and /etc/sysconfig assignments, `export` included
    ("spamd", "export SPAMD_PASS=Hunter2-export\nOPTIONS=\"-d -c -m5\"\n",
     "export SPAMD_PASS=<redacted>\nOPTIONS=\"-d -c -m5\"\n"),
    ("saslauthd", 'DB_PASSWORD="Hunter2 spaced"\nAPI_SECRET=Hunter2-s\n  export GITHUB_TOKEN=Hunter2-t\n',
     "DB_PASSWORD=<redacted>\nAPI_SECRET=<redacted>\n  export GITHUB_TOKEN=<redacted>\n"),
    ("amavis", "export MIRROR_API_KEY='Hunter2-api'\n", "export MIRROR_API_KEY=<redacted>\n"),
    # fetchmailrc: keyword and value in the middle of a poll statement
    ("fetchmailrc", 'poll mail.example.com protocol imap user "joe" password "Hunter2 \\"rc\\"" is joe here\n',
     'poll mail.example.com protocol imap user "joe" password <redacted> is joe here\n'),
    ("fetchmailrc", "poll pop.example.com proto pop3 user joe pass Hunter2-pass\n",
     "poll pop.example.com proto pop3 user joe pass <redacted>\n"),
])
def test_secret_forms_are_redacted(name: str, text: str, recorded: str) -> None:
    assert redact(text, name) == recorded
    assert "Hunter2" not in redact(text, name)


@pytest.mark.parametrize("text", [
    "transport_maps = static:smtp:[relay.example.com]:25\n",  # not about secrets: kept, so restorable
    "virtual_alias_maps = inline:{ postmaster@example.com=admin@example.com }\n",
    "password_query = SELECT username AS user, password FROM users WHERE username = '%u'\n",
    "DatabaseMirror database.clamav.net\nPrivateMirror https://mirror@mirror.example.com/db\n",
    "smtp_sasl_password_maps = lmdb:/etc/postfix/sasl_passwd\nsmtpd_sasl_auth_enable = yes\n",
    "# see http://www.postfix.org/SASL_README.html for user@host\n",
])
def test_what_is_not_secret_stays(text: str) -> None:
    assert redact(text, "main.cf") == text


@pytest.mark.parametrize("hostile", [
    "a." * 131072,  # scheme-like runs
    "x://a:" * 43690 + "@",
    "password=" * 29127,
    "smtp_sasl_password_maps = " + "inline:{" * 32768,
    "smtp_sasl_password_maps = " + "static:" * 37449,
    " k=v" * 65536 + " password=x",
    "\n pass " * 43690,
])
def test_redaction_is_linear_on_hostile_text(hostile: str) -> None:
    """256 KiB (the most a baseline records of one file) of the worst shapes for each pattern."""
    started = time.monotonic()
    redact(hostile, "fetchmailrc")
    assert time.monotonic() - started < 1.0


def test_redacted_world_readable_configs_in_a_baseline(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    write(root, "/etc/postfix/main.cf", "relayhost = [smtp.example.net]:587\n"
          "smtp_sasl_password_maps = static:relay@example.com:Hunter2-main\n")
    write(root, "/etc/dovecot/dovecot-sql.conf.ext", "connect = host=db user=dovecot password=Hunter2-sql\n")
    write(root, "/etc/freshclam.conf", "DatabaseMirror https://u:Hunter2-mirror@mirror.example.com\n")
    write(root, "/etc/sysconfig/spamd", "export SPAMD_PASS=Hunter2-sysconfig\n")
    document = take(RootFS(str(root)), str(root), Digest(b"k" * 32))
    assert "Hunter2" not in json.dumps(document)
    assert document["files"]["/etc/postfix/main.cf"]["text"] == ("relayhost = [smtp.example.net]:587\n"
                                                                 "smtp_sasl_password_maps = static:<redacted>\n")


# --- the host's digest key -------------------------------------------------------------------------------------

def test_key_is_made_once_private_and_never_written_out(tmp_path: Path) -> None:
    path = tmp_path / "var/lib/mailpreflight/baseline.key"
    digest = load_or_create(str(path))
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert digest.key is not None and len(digest.key) == 64 and digest.key == path.read_bytes().strip()
    assert load_or_create(str(path)).key == digest.key  # the second use reads it
    assert digest.key_id == hmac.new(digest.key, b"mailpreflight-key-id", hashlib.sha256).hexdigest()[:16]
    assert [p.name for p in path.parent.iterdir()] == ["baseline.key"]  # no temp file left
    assert digest.hexdigest(b"Hunter2") == hmac.new(digest.key, b"Hunter2", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("setup", "error"), [
    ("symlink", "digest key {path}: a symlink (pass --digest-key FILE, a regular file (not a symlink) holding the "
                "key)"),
    ("readable", "digest key {path}: others may read or change it (mode 0640) (chmod 600 {path})"),
    ("short", "digest key {path}: 5 bytes, not a key (at least 16) (move it away; `mailpreflight snapshot` makes "
              "a new one)"),
    ("directory", "digest key {path}: not a regular file (pass --digest-key FILE)"),
])
def test_a_doubtful_key_file_is_refused(tmp_path: Path, setup: str, error: str) -> None:
    path = tmp_path / "baseline.key"
    if setup == "symlink":
        (tmp_path / "real").write_text("x" * 64)
        os.chmod(tmp_path / "real", 0o600)
        path.symlink_to(tmp_path / "real")
    elif setup == "directory":
        path.mkdir(mode=0o700)
    else:
        path.write_text("x" * 64 if setup == "readable" else "short")
        os.chmod(path, 0o640 if setup == "readable" else 0o600)
    with pytest.raises(MailpreflightError) as raised:
        read_key(str(path))
    assert str(raised.value) == error.format(path=path)


def test_drift_and_restore_need_the_key_that_made_the_baseline(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    first, other, missing = tmp_path / "k1/baseline.key", tmp_path / "k2/baseline.key", tmp_path / "none.key"
    baseline = tmp_path / "b.json"
    made = run("snapshot", "--root", str(root), "--output", str(baseline), "--digest-key", str(first))
    assert made.returncode == 0, made.stderr
    key_id = json.loads(baseline.read_text())["digest"]["key_id"]
    load_or_create(str(other))
    other_id = Digest(read_key(str(other))).key_id
    absent = run("drift", "--baseline", str(baseline), "--root", str(root), key_env=missing)
    assert (absent.returncode, absent.stdout) == (3, "")
    assert absent.stderr == (f"mailpreflight: {baseline}: made with digest key {key_id}, and there is no key file "
                             f"{missing} on this host: pass --digest-key FILE, a copy of /var/lib/mailpreflight/"
                             "baseline.key from the host that took it\n")
    wrong = run("restore", "--baseline", str(baseline), "--root", str(root), "--digest-key", str(other),
                "/etc/pam.d/imap")
    assert wrong.returncode == 3 and wrong.stderr == (
        f"mailpreflight: {baseline}: made with digest key {key_id}, but {other} is key {other_id}: pass "
        "--digest-key FILE, a copy of /var/lib/mailpreflight/baseline.key from the host that took it\n")
    assert not missing.exists()  # drift and restore never make a key
    right = run("drift", "--baseline", str(baseline), "--root", str(root), "--digest-key", str(first),
                key_env=missing)
    assert right.returncode == 0 and right.stdout.splitlines()[1] == "No drift.", right.stderr


@pytest.mark.parametrize(("field", "value"), [
    ("uid", 1000),  # an unprivileged owner of a PAM file
    ("mode", "0666"),
    ("text", "auth sufficient pam_permit.so\naccount sufficient pam_permit.so\n"),
    ("sha256", "0" * 64),
])
def test_restore_refuses_an_entry_changed_after_the_snapshot(tmp_path: Path, field: str, value: object) -> None:
    root = leap15(tmp_path / "guest")
    baseline = tmp_path / "b.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    document = json.loads(baseline.read_text())
    document["files"]["/etc/pam.d/imap"][field] = value
    baseline.write_text(json.dumps(document))
    (root / "etc/pam.d/imap").unlink()
    done = run("restore", "--baseline", str(baseline), "--root", str(root), "/etc/pam.d/imap")
    assert done.returncode == 3 and not (root / "etc/pam.d/imap").exists()
    assert done.stderr == (f"mailpreflight: {baseline}: the entry of /etc/pam.d/imap was changed after the snapshot "
                           "(its MAC does not match): restore it from a backup or from an untouched baseline\n")


def test_text_that_does_not_match_its_digest_is_refused() -> None:
    digest = Digest(b"k" * 32)
    entry = FileRecord(EntryType.FILE, "0644", 0, 0, "root", "root", size=2, sha256=digest.hexdigest(b"a\n"),
                       text="b\n")
    entry = replace(entry, mac=digest.mac("/etc/x", entry.fields()))
    with pytest.raises(MailpreflightError, match="the text recorded for /etc/x is not the content it was hashed"):
        check_entry("b.json", "/etc/x", entry, digest)
    entry = replace(entry, text="a\n")
    entry = replace(entry, mac=digest.mac("/etc/x", entry.fields()))
    check_entry("b.json", "/etc/x", entry, digest)


def test_the_key_is_the_hosts_never_the_guests(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    write(root, "/var/lib/mailpreflight/baseline.key", "g" * 64 + "\n", 0o600)
    document = json.loads(run("snapshot", "--root", str(root)).stdout)
    host_key = read_key(os.environ[KEY_PATH_ENV])
    assert document["digest"]["key_id"] == Digest(host_key).key_id != Digest(b"g" * 64).key_id


def test_a_baseline_from_before_the_key_is_still_read(tmp_path: Path) -> None:
    """Salted baselines (schema 1 before digest keys) compare as before; restore says it cannot check them."""
    root = leap15(tmp_path / "guest")
    document = take(RootFS(str(root)), str(root), Digest(None, b"0123abcd"))
    del document["digest"]
    document["salt"] = "0123abcd"
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(document))
    assert for_baseline(str(baseline), load_baseline(str(baseline)), None).key is None
    write(root, "/etc/imapd.conf", "configdirectory: /var/lib/imap\n")
    drift = run("drift", "--baseline", str(baseline), "--root", str(root), "--format", "json")
    assert drift.returncode == 1, drift.stderr
    assert [(c["path"], c["details"]) for c in json.loads(drift.stdout)["changes"]] == [
        ("/etc/imapd.conf", ["content"])]
    dry = run("restore", "--baseline", str(baseline), "--root", str(root), "--dry-run", "/etc/imapd.conf")
    assert dry.returncode == 0 and dry.stderr.startswith(
        f"mailpreflight: {baseline}: taken before digest keys: its entries cannot be checked for changes made since\n")


@pytest.mark.parametrize("digest", [{"algorithm": "md5", "key_id": "x"}, "hmac", None])
def test_a_baseline_with_an_unknown_digest_is_refused(digest: object) -> None:
    document: dict[str, object] = {"files": {}} if digest is None else {"files": {}, "digest": digest}
    with pytest.raises(MailpreflightError, match=r"^b\.json:1: (unknown digest|neither a digest key id nor a salt)"):
        recorded_digest("b.json", document)
