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


def test_render_is_a_function_of_the_view_alone() -> None:
    """A view made by hand, nothing on disk: the fix of a drift of "/" names no --root; an info finding tied to
    no change is listed apart; the counts and the status line come from the view."""
    import jsonschema

    from mailpreflight.model import (
        ChangeKind,
        ChangeView,
        DriftView,
        EntryType,
        FileRecord,
        Finding,
        HostRecord,
        Severity,
        Status,
        TrackedFindingView,
    )
    from mailpreflight.render.drift import render_text, to_json

    restore = TrackedFindingView(Finding("MP301", Severity.CRITICAL, "dovecot.service", "IMAP falls back to other",
                                         "`mailpreflight restore --baseline FILE /etc/pam.d/dovecot`"),
                                 "pam:dovecot", ("/etc/pam.d/dovecot",))
    loose = TrackedFindingView(Finding("MP309", Severity.INFO, "dovecot.service", "note", "nothing to do"), "x", ())
    before = FileRecord(EntryType.FILE, "0644", 0, 0, "root", None, size=3, sha256="0" * 64, text="a\n")
    deleted = ChangeView("/etc/pam.d/dovecot", ChangeKind.DELETED, ("file root:0 0644, 3 bytes",),
                         "--- baseline/etc/pam.d/dovecot\n+++ now/etc/pam.d/dovecot\n@@ -1 +0,0 @@\n-a\n", before,
                         None, (restore,))
    view = DriftView(status=Status.CRITICAL, baseline_file="/var/b.json", baseline_created=CREATED,
                     baseline_host=HostRecord(None, "mx1", "Debian 12"), baseline_root="/",
                     host=HostRecord(None, None, None), root="/", changes=(deleted,), new=(restore, loose),
                     loose=(loose,), resolved=(), persisting=())
    assert render_text(view) == (
        "Baseline /var/b.json: taken 2026-01-02T03:04:05Z on mx1 (Debian 12); now: unknown OS\n"
        "1 deleted, 0 added, 0 changed\n"
        "\n"
        "DELETED  /etc/pam.d/dovecot  (file root:0 0644, 3 bytes)\n"
        "         -> MP301 critical: IMAP falls back to other\n"
        "            fix: `mailpreflight restore --baseline /var/b.json /etc/pam.d/dovecot`\n"
        "         --- baseline/etc/pam.d/dovecot\n"
        "         +++ now/etc/pam.d/dovecot\n"
        "         @@ -1 +0,0 @@\n"
        "         -a\n"
        "\n"
        "New findings not tied to a recorded file:\n"
        "  MP309 info: note\n"
        "\n"
        "CRITICAL: 1 change(s), 2 new finding(s)")
    document = to_json(view)
    jsonschema.validate(document, json.loads((GOLDEN.parents[2] / "docs/schemas/drift.schema.json").read_text()))
    [change] = document["changes"]  # type: ignore[misc]
    assert change["before"] == {"type": "file", "mode": "0644", "uid": 0, "gid": 0, "owner": "root", "group": None,
                                "size": 3, "sha256": "0" * 64, "text_omitted": None}  # no text, no MAC
    assert change["after"] is None
    # the same command as the text's, the baseline filled in (the finding's own hint says FILE)
    assert change["causes"][0]["hint"] == document["new_findings"][0]["hint"] == (  # type: ignore[index]
        "`mailpreflight restore --baseline /var/b.json /etc/pam.d/dovecot`")


def test_no_any_crosses_into_the_renderer() -> None:
    """Every field of the view, down to the file records and findings, has a type; none is Any."""
    import dataclasses
    import typing

    from mailpreflight import model

    seen: set[type] = set()
    untyped: list[str] = []

    def walk(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, hint in typing.get_type_hints(cls, vars(model)).items():
            stack = [hint]
            while stack:
                part = stack.pop()
                if part is typing.Any:
                    untyped.append(f"{cls.__name__}.{name}")
                stack.extend(typing.get_args(part))
                if dataclasses.is_dataclass(part) and isinstance(part, type):
                    walk(part)

    walk(model.DriftView)
    assert {model.ChangeView, model.FileRecord, model.TrackedFindingView, model.Finding, model.HostRecord} <= seen
    assert untyped == []


def test_drift_names_no_restore_the_baseline_cannot_do() -> None:
    """A restore hint for a path the baseline holds stays (drift fills in the file); for one it does not hold,
    `restore` would refuse ("not in the baseline"): the hint says so instead."""
    from mailpreflight.auth.check import TrackedFinding
    from mailpreflight.baseline.drift import _view
    from mailpreflight.model import Finding, Severity

    hint = "put /etc/pam.d/pop back: `mailpreflight restore --baseline FILE /etc/pam.d/pop` from a snapshot"
    issue = TrackedFinding(Finding("MP301", Severity.WARNING, "cyrus-imapd.service", "falls back", hint), "pam:pop",
                           ("/etc/pam.d/pop",))
    held = {"/etc/pam.d/pop": None}
    assert _view(issue, held).finding.hint == hint  # type: ignore[arg-type]
    assert _view(issue, {}).finding.hint == ("recreate /etc/pam.d/pop: this baseline does not hold it (it was not "
                                             "recorded when the snapshot was taken)")
