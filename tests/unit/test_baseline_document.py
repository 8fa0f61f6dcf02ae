"""A baseline is parsed once into typed records, every field checked: whatever is not as `snapshot` writes it is
one MailpreflightError naming the file, the line and the entry (never a KeyError/TypeError traceback), for
`drift` and `restore` alike; what `snapshot` writes reads back without loss (the MACs still match)."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailpreflight import cli
from mailpreflight.access.rootfs import RootFS
from mailpreflight.baseline.digestkey import Digest, check_entry
from mailpreflight.baseline.document import load_baseline
from mailpreflight.baseline.snapshot import MAX_ENTRIES, stored, take
from mailpreflight.errors import MailpreflightError
from mailpreflight.model import EntryType, Severity
from mailroots import leap15

KEY = b"0123456789abcdef" * 4
IMAP = "/etc/pam.d/imap"
LINK = "/etc/pam.d/common-auth"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = leap15(tmp_path_factory.mktemp("guest"), imap_smtp=False)
    (root / "etc/pam.d/imap").write_text("auth required pam_unix.so\naccount required pam_unix.so\n")
    taken: dict[str, Any] = take(RootFS(str(root)), str(root), Digest(KEY))
    assert taken["findings"], "the root must give the baseline findings to check"
    return taken


def written(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "baseline.json"
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"  # as `snapshot --output` writes it
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:  # a lone surrogate can only be written as an escape
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def test_what_snapshot_writes_reads_back_without_loss(tmp_path: Path, document: dict[str, Any]) -> None:
    baseline = load_baseline(str(written(tmp_path, document)))
    assert {path: stored(entry) for path, entry in baseline.files.items()} == document["files"]
    assert [t.kind for t in (baseline.files[IMAP], baseline.files[LINK])] == [EntryType.FILE, EntryType.SYMLINK]
    assert baseline.files[LINK].target == "common-auth-pc" and baseline.files[IMAP].text is not None
    digest = Digest(KEY)
    for path, entry in baseline.files.items():
        check_entry("b.json", path, entry, digest)  # every MAC matches the typed record
    assert baseline.key_id == digest.key_id and baseline.salt is None
    assert [(f.finding.code, f.finding.severity, f.subject) for f in baseline.findings] == [
        (f["code"], Severity(f["severity"]), f["subject"]) for f in document["findings"]]
    assert (baseline.host.hostname, baseline.host.os_name) == ("mail.example.com", "openSUSE Leap 15.5")
    assert (baseline.created, baseline.truncated) == (document["created"], False)


def entry(path: str) -> Callable[[dict[str, Any], Any], None]:
    def change(document: dict[str, Any], edit: Any) -> None:
        edit(document["files"][path])
    return change


def setter(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.__setitem__(key, value)


# (what is done to the document, what the error says, the key on the line it names)
TAMPERED: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("mode not octal", lambda d: d["files"][IMAP].__setitem__("mode", "0999"),
     'files["/etc/pam.d/imap"]["mode"]: "0999", not four octal digits', '"mode"'),
    ("mode a number", lambda d: d["files"][IMAP].__setitem__("mode", 420),
     'files["/etc/pam.d/imap"]["mode"]: 420, not four octal digits', '"mode"'),
    ("uid negative", lambda d: d["files"][IMAP].__setitem__("uid", -1),
     'files["/etc/pam.d/imap"]["uid"]: -1, not a user or group id', '"uid"'),
    ("gid (gid_t)-1", lambda d: d["files"][IMAP].__setitem__("gid", 2**32 - 1),
     'files["/etc/pam.d/imap"]["gid"]: 4294967295, not a user or group id', '"gid"'),
    ("uid a boolean", lambda d: d["files"][IMAP].__setitem__("uid", True),
     'files["/etc/pam.d/imap"]["uid"]: true, not a user or group id', '"uid"'),
    ("uid a string", lambda d: d["files"][IMAP].__setitem__("uid", "0"),
     'files["/etc/pam.d/imap"]["uid"]: "0", not a user or group id', '"uid"'),
    ("size a float", lambda d: d["files"][IMAP].__setitem__("size", 1.5),
     'files["/etc/pam.d/imap"]["size"]: 1.5, not a size', '"size"'),
    ("unknown type", lambda d: d["files"][IMAP].__setitem__("type", "fifo"),
     'files["/etc/pam.d/imap"]["type"]: "fifo", not one of file, dir, symlink, other', '"type"'),
    ("text a number", lambda d: d["files"][IMAP].__setitem__("text", 5),
     'files["/etc/pam.d/imap"]["text"]: 5, not a string', '"text"'),
    ("text with a lone surrogate", lambda d: d["files"][IMAP].__setitem__("text", "auth \ud800\n"),
     'files["/etc/pam.d/imap"]["text"]: not UTF-8 text', '"text"'),
    ("sha256 not hex", lambda d: d["files"][IMAP].__setitem__("sha256", "zz"),
     'files["/etc/pam.d/imap"]["sha256"]: "zz", not a hex digest', '"sha256"'),
    ("mac not ASCII", lambda d: d["files"][IMAP].__setitem__("mac", "\u00e9" * 64),
     'files["/etc/pam.d/imap"]["mac"]: "\\u00e9\\u00e9', '"mac"'),
    ("owner a list", lambda d: d["files"][IMAP].__setitem__("owner", ["root"]),
     'files["/etc/pam.d/imap"]["owner"]: ["root"], not a string', '"owner"'),
    ("empty link target", lambda d: d["files"][LINK].__setitem__("target", ""),
     'files["/etc/pam.d/common-auth"]["target"]: "", not a symlink\'s target', '"target"'),
    ("NUL in a link target", lambda d: d["files"][LINK].__setitem__("target", "a\0b"),
     'files["/etc/pam.d/common-auth"]["target"]: "a\\u0000b", not a symlink\'s target', '"target"'),
    ("link target over PATH_MAX", lambda d: d["files"][LINK].__setitem__("target", "x" * 4096),
     'files["/etc/pam.d/common-auth"]["target"]: "xxxxxxxx', '"target"'),
    ("an extra field", lambda d: d["files"][IMAP].__setitem__("setuid", True),
     'files["/etc/pam.d/imap"]: a file record with setuid', '"/etc/pam.d/imap"'),
    ("a missing field", lambda d: d["files"][IMAP].pop("owner"),
     'files["/etc/pam.d/imap"]: a file record without owner', '"/etc/pam.d/imap"'),
    ("a missing MAC", lambda d: d["files"][IMAP].pop("mac"),
     'files["/etc/pam.d/imap"]: a file record without mac', '"/etc/pam.d/imap"'),
    ("text on a directory", lambda d: d["files"]["/etc/pam.d"].__setitem__("text", "x"),
     'files["/etc/pam.d"]: a dir record with text', '"/etc/pam.d"'),
    ("a record that is no object", lambda d: d["files"].__setitem__(IMAP, "file"),
     'files["/etc/pam.d/imap"]: "file", not an object', '"/etc/pam.d/imap"'),
    ("a relative path", lambda d: d["files"].__setitem__("etc/x", d["files"][IMAP]),
     'files["etc/x"]: not an absolute, normalized path', '"etc/x"'),
    ("a path with ..", lambda d: d["files"].__setitem__("/etc/pam.d/../../tmp/x", d["files"][IMAP]),
     'files["/etc/pam.d/../../tmp/x"]: not an absolute, normalized path', '"/etc/pam.d/../../tmp/x"'),
    ("unknown severity", lambda d: d["findings"][0].__setitem__("severity", "fatal"),
     'findings[0]["severity"]: "fatal", not one of info, warning, critical', '"severity"'),
    ("bad code", lambda d: d["findings"][-1].__setitem__("code", "XX1"),
     '"code"]: "XX1", not a finding code (MPnnn)', '"code"'),
    ("evidence not a list", lambda d: d["findings"][0].__setitem__("evidence", "x"),
     'findings[0]["evidence"]: "x", not a list of strings', '"evidence"'),
    ("a path of a finding not a string", lambda d: d["findings"][0]["paths"].append(7),
     ': 7, not a string', "7"),  # findings[0]["paths"][n], on the line of the 7
    ("a finding that is no object", lambda d: d["findings"].append(3),
     'not an object of code, severity, unit, subject, message, hint, evidence, paths', "3"),
    ("findings not a list", lambda d: d.__setitem__("findings", {}),
     "findings: {}, not a list", '"findings"'),
    ("host not an object", lambda d: d.__setitem__("host", "me"),
     "host: not an object of machine_id, hostname and os", '"host"'),
    ("host os a number", lambda d: d["host"].__setitem__("os", 5),
     'host["os"]: 5, not a string', '"os"'),
    ("truncated a string", lambda d: d.__setitem__("truncated", "no"),
     'truncated: "no", not true or false', '"truncated"'),
    ("created a number", lambda d: d.__setitem__("created", 5),
     "created: 5, not a string", '"created"'),
    ("an unknown key", lambda d: d.__setitem__("comment", "mine"),
     "comment: unknown key", '"comment"'),
]


@pytest.mark.parametrize(("change", "error", "on_line"), [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_a_tampered_baseline_is_one_error_naming_the_entry_and_its_line(
        tmp_path: Path, document: dict[str, Any], change: Callable[[dict[str, Any]], None], error: str,
        on_line: str) -> None:
    tampered = copy.deepcopy(document)
    change(tampered)
    path = written(tmp_path, tampered)
    with pytest.raises(MailpreflightError) as caught:
        load_baseline(str(path))
    text = str(caught.value)
    assert "\n" not in text and error in text, text
    assert text.startswith(f"{path}:{caught.value.line}: ") and text.endswith(
        ": not as `snapshot` writes it (use an untouched copy of the baseline, or take a new one with `mailpreflight "
        "snapshot`)"), text
    assert caught.value.line is not None and on_line in path.read_text().splitlines()[caught.value.line - 1]


@pytest.mark.parametrize(("content", "error"), [
    ('{"kind": "mailpreflight-snapshot", "schema_version": 1, "files": {}, "n": NaN}', ":1: not a mailpreflight "
     "snapshot (invalid JSON)"),
    ("[" * 100_000, ":1: not a mailpreflight snapshot (invalid JSON)"),
    ('{"kind": "mailpreflight-snapshot", "schema_version": 1, "files": {}, "n": ' + "9" * 5000 + "}",
     ":1: not a mailpreflight snapshot (invalid JSON)"),
])
def test_json_python_would_choke_on(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(MailpreflightError, match="^" + re.escape(f"{path}{error}")):
        load_baseline(str(path))


def test_more_paths_than_a_snapshot_records(tmp_path: Path, document: dict[str, Any]) -> None:
    tampered = copy.deepcopy(document)
    record = tampered["files"]["/etc/pam.d"]
    tampered["files"] = {f"/d{i}": record for i in range(MAX_ENTRIES + 1)}
    path = written(tmp_path, tampered)
    with pytest.raises(MailpreflightError, match=f"files: {MAX_ENTRIES + 1} paths, more than a snapshot records"):
        load_baseline(str(path))


@pytest.mark.parametrize(("digest", "salt", "error"), [
    ({"algorithm": "hmac-sha256", "key_id": "../../etc/x\x1b[2J"}, None, ":1: unknown digest"),
    ({"algorithm": "hmac-sha256", "key_id": "0123456789abcdef", "extra": 1}, None, ":1: unknown digest"),
    ({"algorithm": "hmac-sha256", "key_id": "0123456789abcdef"}, "00ff", ":1: both a digest key id and a salt"),
    (None, "\ud800", ":1: the salt "),
])
def test_how_the_digests_were_made_is_checked(tmp_path: Path, document: dict[str, Any], digest: object,
                                              salt: str | None, error: str) -> None:
    tampered = copy.deepcopy(document)
    del tampered["digest"]
    if digest is not None:
        tampered["digest"] = digest
    if salt is not None:
        tampered["salt"] = salt
    path = tmp_path / "b.json"
    path.write_text(json.dumps(tampered))
    with pytest.raises(MailpreflightError) as caught:
        load_baseline(str(path))
    assert str(caught.value).startswith(f"{path}{error}") and "\n" not in str(caught.value)
    assert "\x1b" not in str(caught.value)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), cli.Environment(stdout=out, stderr=err, stdout_isatty=False, environ={}))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("verb", "field", "value", "error"), [
    (("drift",), None, "file", 'files["/etc/pam.d/imap"]: "file", not an object'),  # was an AttributeError
    (("restore", IMAP), "mac", "\u00e9" * 64, 'files["/etc/pam.d/imap"]["mac"]: "\\u00e9'),  # was a TypeError
    (("restore", IMAP), "uid", "0", 'files["/etc/pam.d/imap"]["uid"]: "0", not a user or group id'),
])
def test_drift_and_restore_say_it_in_one_line(tmp_path: Path, document: dict[str, Any], verb: tuple[str, ...],
                                              field: str | None, value: object, error: str) -> None:
    tampered = copy.deepcopy(document)
    if field is None:
        tampered["files"][IMAP] = value
    else:
        tampered["files"][IMAP][field] = value
    path = written(tmp_path, tampered)
    root = leap15(tmp_path / "guest")
    code, out, err = run(verb[0], "--baseline", str(path), "--root", str(root), *verb[1:])
    assert (code, out) == (3, "")
    assert err.startswith(f"mailpreflight: {path}:") and err.count("\n") == 1 and "internal error" not in err
    assert error in err, err
