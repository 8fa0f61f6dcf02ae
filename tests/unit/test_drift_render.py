"""drift's output byte for byte: the text and the JSON of one upgrade on a realistic root (every kind of
change, findings tied to changes, resolved and persisting ones) against golden files, and the text of the rarer
shapes (findings tied to no change, a host without a name or OS, info findings) against literal strings. The
golden files were written by the code before the presentation moved to render/drift.py; regenerate them only
for an intended change of the output (MAILPREFLIGHT_WRITE_GOLDEN=1)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from mailpreflight import cli
from mailroots import leap15, link, write

GOLDEN = Path(__file__).resolve().parent / "golden"
CREATED = "2026-01-02T03:04:05Z"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), cli.Environment(stdout=out, stderr=err, stdout_isatty=False, environ={}))
    return code, out.getvalue(), err.getvalue()


def digest_key(tmp_path: Path) -> str:
    """A key of fixed content: the digests in the JSON are the same in every run."""
    key = tmp_path / "baseline.key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    key.chmod(0o600)
    return str(key)


def upgraded(tmp_path: Path) -> tuple[Path, Path]:
    """A Leap 15 root with a misspelt line in /etc/pam.d/imap, smtp and other when the baseline is taken, then an
    "upgrade": imap rewritten (its bad line kept), smtp deleted (other's bad line now counts), pam_sss.so
    removed, a mode, owners, a link and a config changed."""
    root = leap15(tmp_path / "guest")
    for name in ("imap", "smtp", "other"):
        with open(root / "etc/pam.d" / name, "a") as handle:
            handle.write("auth requried pam_warn.so\n")
    for directory, names, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in (*names, *files))):
            os.lchown(name, 0, 0)  # the owners the output names, whoever runs the tests
    baseline = tmp_path / "baseline.json"
    code, _, err = run("snapshot", "--root", str(root), "--output", str(baseline), "--digest-key", digest_key(tmp_path))
    assert code == 0, err
    document = json.loads(baseline.read_text())
    document["created"] = CREATED  # not under any MAC
    baseline.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    write(root, "/etc/pam.d/imap", "#%PAM-1.0\nauth     sufficient  pam_sss.so\nauth     required    pam_unix.so\n"
          "auth requried pam_warn.so\naccount  required    pam_unix.so")  # no newline at the end
    (root / "etc/pam.d/smtp").unlink()
    (root / "lib64/security/pam_sss.so").unlink()
    os.chmod(root / "etc/imapd.conf", 0o600)
    write(root, "/etc/sasl2/smtpd.conf", "pwcheck_method: saslauthd\nmech_list: plain login cram-md5\n")
    os.chown(root / "etc/sasl2/smtpd.conf", 51, 12)
    link(root, "/etc/pam.d/common-auth", "common-auth-local")
    write(root, "/etc/pam.d/common-auth-local", "auth required pam_unix.so\n")
    return root, baseline


def normalised(text: str, tmp_path: Path) -> str:
    return text.replace(str(tmp_path), "TMP")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MAILPREFLIGHT_WRITE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_text_and_json_of_an_upgrade(tmp_path: Path) -> None:
    root, baseline = upgraded(tmp_path)
    key = digest_key(tmp_path)
    code, text, err = run("drift", "--baseline", str(baseline), "--root", str(root), "--digest-key", key)
    assert (code, err) == (2, "")
    check_golden("drift-upgrade.txt", normalised(text, tmp_path))
    code, out, err = run("drift", "--baseline", str(baseline), "--root", str(root), "--digest-key", key,
                         "--format", "json")
    assert (code, err) == (2, "")
    check_golden("drift-upgrade.json", normalised(out, tmp_path))


def test_text_of_no_drift_from_a_baseline_without_host_names(tmp_path: Path) -> None:
    root = leap15(tmp_path / "guest")
    baseline = tmp_path / "baseline.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline))[0] == 0
    document = json.loads(baseline.read_text())
    document["created"] = CREATED
    document["host"] = {"machine_id": None, "hostname": None, "os": None}  # not under any MAC
    baseline.write_text(json.dumps(document))
    code, text, err = run("drift", "--baseline", str(baseline), "--root", str(root))
    assert (code, err) == (0, "")
    assert normalised(text, tmp_path) == (f"Baseline TMP/baseline.json: taken {CREATED} on ? (unknown OS); now: "
                                          "openSUSE Leap 15.5\nNo drift.\n\nOK: 0 change(s), 0 new finding(s)\n")
