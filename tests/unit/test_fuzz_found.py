"""Inputs the fuzzer (tests/fuzzing.py, benchmarks/fuzz.py) found, each kept as a regression test: the
shape of the input, the crash it was, and what happens now."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

import fuzzing
from helpers import make_tree
from mailpreflight import cli
from mailpreflight.access.rootfs import RootFS
from mailpreflight.auth import services
from mailpreflight.baseline import drift
from mailpreflight.baseline.document import load_baseline
from mailpreflight.baseline.snapshot import take
from mailpreflight.errors import MailpreflightError
from mailroots import leap15, write


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="strict", write_through=True)
    code = cli.main(list(argv), cli.Environment(stdout=stdout, stderr=stderr, stdout_isatty=False, environ={}))
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = leap15(tmp_path_factory.mktemp("fuzz") / "guest")
    return root, take(RootFS(str(root)), str(root), fuzzing.digest_key(root.parent))


def _first_file(document: dict[str, Any]) -> str:
    return next(p for p, e in document["files"].items() if e["type"] == "file" and e.get("text"))


TAMPERED = [  # (what is changed, what the one-line error says); each was an AttributeError, TypeError, ... before
    (lambda d, p: d["files"].__setitem__(p, 1.5), "is not a path and its record"),
    (lambda d, p: d["files"][p].__setitem__("text", "\udc80"), "\"text\" is not UTF-8 text"),
    (lambda d, p: d["files"][p].__setitem__("text", ["a"]), "\"text\" is not UTF-8 text"),
    (lambda d, p: d.__setitem__("host", "somewhere"), "\"host\" is not an object"),
    (lambda d, p: d.__setitem__("findings", True), "\"findings\" is not a list"),
    (lambda d, p: d.__setitem__("salt", "\udcff"), "\"salt\" is not a string"),
    (lambda d, p: d["files"][p].__setitem__("mac", "é" * 64), "\"mac\" is not a hex digest"),
    (lambda d, p: d["files"][p].__setitem__("sha256", "é" * 64), "\"sha256\" is not a hex digest"),
]
ODD_ENTRIES = [  # refused when the baseline is loaded (baseline/document.py), or by restore: never written
    (lambda d, p: d["files"][p].__setitem__("mode", 420)),
    (lambda d, p: d["files"][p].__setitem__("mode", "17777")),
    (lambda d, p: d["files"][p].pop("uid")),
    (lambda d, p: d["files"][p].__setitem__("gid", 2**40)),
    (lambda d, p: d["files"][p].__setitem__("type", "fifo")),
    (lambda d, p: d["files"][p].update(type="symlink", target="")),
    (lambda d, p: d["files"].__setitem__("/etc/../../../../tmp/x", d["files"][p])),
]


@pytest.mark.parametrize("change, error", TAMPERED)
def test_tampered_baseline_is_one_error(snapshot: tuple[Path, dict[str, Any]], tmp_path: Path,
                                        change: Any, error: str) -> None:
    root, document = snapshot
    document = json.loads(json.dumps(document))
    change(document, _first_file(document))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    with pytest.raises(MailpreflightError) as raised:  # baseline/document.py: one line naming the file and entry
        load_baseline(str(baseline))
    assert str(baseline) in str(raised.value) and "\n" not in str(raised.value), error
    key = ("--digest-key", fuzzing.key_path(root.parent))
    for argv in (("drift", "--baseline", str(baseline), "--root", str(root), "--other-host", *key),
                 ("restore", "--baseline", str(baseline), "--root", str(root), "--dry-run", "/etc/pam.d/imap", *key)):
        code, out, err = _run(*argv)
        assert (code, out) == (3, "") and err.count("\n") == 1 and "internal error" not in err, err


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("change", ODD_ENTRIES)
def test_odd_entries_are_shown_by_drift_and_refused_by_restore(snapshot: tuple[Path, dict[str, Any]],
                                                             tmp_path: Path, change: Any, signed: bool) -> None:
    """Refused by the MAC, or (signed again with the key, as by someone who holds it) by restore's own checks."""
    root, original = snapshot
    document = json.loads(json.dumps(original))
    path = _first_file(document)
    change(document, path)
    if signed:
        fuzzing.resign(document, fuzzing.digest_key(root.parent))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    key = ("--digest-key", fuzzing.key_path(root.parent))
    code, _, err = _run("drift", "--baseline", str(baseline), "--root", str(root), "--other-host", "--format", "json",
                        *key)
    assert code in (0, 1, 2, 3) and err.count("\n") <= 1 and "internal error" not in err, err
    changed = {p for p, entry in document["files"].items() if entry != original["files"].get(p)}
    assert changed
    for target in sorted(changed):
        code, _, err = _run("restore", "--baseline", str(baseline), "--root", str(root), "--dry-run", target, *key)
        assert code == 3 and err.count("\n") == 1 and "internal error" not in err, err


SNAPSHOT_HEAD = '{"schema_version": 1, "kind": "mailpreflight-snapshot", "files": {}, "findings": '


@pytest.mark.parametrize("text", ["[" * 100_000, SNAPSHOT_HEAD + '[{"code": NaN}]}', SNAPSHOT_HEAD + "-Infinity}",
                                  SNAPSHOT_HEAD + "1" * 5000 + "}"])
def test_baseline_that_python_json_chokes_on(tmp_path: Path, text: str) -> None:
    """Deep nesting was a RecursionError and 5,000 digits a ValueError; NaN and Infinity are not JSON (drift
    printed them back in its JSON output)."""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(text)
    with pytest.raises(MailpreflightError):
        load_baseline(str(baseline))


def test_untampered_baseline_still_loads(snapshot: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, document = snapshot
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    assert len(load_baseline(str(baseline)).files) == len(document["files"])
    code, _, err = _run("drift", "--baseline", str(baseline), "--root", str(root), "--digest-key",
                        fuzzing.key_path(root.parent))
    assert (code, err) == (0, "")


def test_dovecot_include_of_itself_is_bounded(tmp_path: Path) -> None:
    """`!include_try *` in dovecot.conf included dovecot.conf again, 3 times per level, 20 levels deep: 3**20
    reads (found by the fuzzer; the reads are now capped in all, DOVECOT_MAX_FILES)."""
    root = tmp_path / "root"
    write(root, "/etc/dovecot/dovecot.conf", "!include_try *\n!include_try *\n!include_try *\n"
                                             "!include conf.d/*.conf\n")
    write(root, "/etc/dovecot/conf.d/10-auth.conf", "passdb {\n  driver = pam\n  args = imap\n}\n")
    for number in range(12):  # files that include each other: no loop, but every order of them is a chain
        write(root, f"/etc/dovecot/conf.d/{number}-x.conf", "!include_try *\n")
    started = time.process_time()
    with fuzzing.time_limit(10):  # a regression fails here instead of running for hours
        config = services.read_dovecot_config(RootFS(str(root)))
    assert time.process_time() - started < 2
    assert config is not None
    assert ("pam", "imap") in {(p["driver"][0], p["args"][0]) for p in config.passdbs}


def test_json_output_with_c1_controls_and_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """A C1 control in a unit became `\\x85` inside a JSON string (invalid JSON); a drop-in whose name is not
    UTF-8 made every verb that prints it crash on a UTF-8 terminal. Both are now \\u escapes."""
    make_tree(tmp_path, {"etc/systemd/system/a.service": "[Service]\nExecStart=/bin/echo \x85\x9b2J\x7f\n"})
    dropins = tmp_path / "etc/systemd/system/a.service.d"
    dropins.mkdir()
    (dropins / "x\udcff.conf").write_bytes(b"[Service]\nTimeoutStartSec=5\n")
    code, out, err = _run("show", "--root", str(tmp_path), "--format", "json", "a.service")
    assert (code, err) == (0, "")
    shown = json.loads(out)
    assert shown["exec"]["ExecStart"][0]["argv"] == ["/bin/echo", "\x85\x9b2J\x7f"]
    assert shown["dropin_paths"] == ["/etc/systemd/system/a.service.d/x\udcff.conf"]
    code, out, err = _run("show", "--root", str(tmp_path), "a.service")
    assert (code, err) == (0, "")
    assert "\\u0085\\u009b2J\\u007f" in out and "x\\udcff.conf" in out


def test_postfix_parameters_that_name_themselves_or_double_at_every_level() -> None:
    """`relayhost = ${relayhost?[x]:25} $(relayhost)` or a value naming $sasl_path 200 times in sasl_path itself
    expanded 2**20 or 200**20 times; p0 = $p1 $p1, p1 = $p2 $p2, ... doubles the text at every level."""
    from mailpreflight.deps.postfix import expand, read_main_cf

    chain = "\n".join(f"p{i} = $p{i + 1} $p{i + 1}" for i in range(16)) + "\np16 = [relay.example.com]:587\n"
    settings = read_main_cf("relayhost = ${relayhost?[x]:25} $(relayhost)\nsasl_path = " + "$a$sasl_path " * 200
                            + "\na = x\n" + chain + "q = $p12\nmyhostname = mx.example.org\nr = [$myhostname]\n")
    started = time.process_time()
    with fuzzing.time_limit(10):  # a regression fails here instead of running for hours
        assert expand("$relayhost", settings) is None  # postfix refuses a recursive parameter
        assert expand("$sasl_path", settings) is None
        assert expand("$p0", settings) is None  # 2**16 copies: beyond EXPANSION_MAX
        assert expand("$q", settings) == " ".join(["[relay.example.com]:587"] * 16)
        assert expand("$r", settings) == "[mx.example.org]"
    assert time.process_time() - started < 2


def test_drift_ties_thousands_of_findings_to_one_changed_file(tmp_path: Path) -> None:
    """Each new finding was checked against the change's list of causes with `in` (dataclass equality): a PAM
    file of 3,000 lines, each a finding, took seconds; of 40,000 lines (1 MiB), hours."""
    root = leap15(tmp_path / "guest")
    lines = "".join(f"auth optional pam_gone{i}.so\n" for i in range(3000))
    write(root, "/etc/pam.d/imap", lines)
    fs = RootFS(str(root))
    document = take(fs, str(root), fuzzing.digest_key(tmp_path))
    document["findings"] = [f for f in document["findings"] if "/etc/pam.d/imap" not in f["paths"]]
    write(root, "/etc/pam.d/imap", lines + "# changed\n")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    started = time.process_time()
    with fuzzing.time_limit(10):
        result = drift.compare(str(baseline), load_baseline(str(baseline)), fs,
                               digest_key=fuzzing.key_path(tmp_path))
    assert time.process_time() - started < 1.5
    [change] = result.changes
    assert change.path == "/etc/pam.d/imap" and len(change.causes) == len(result.new) >= 3000


def test_nft_includes_of_a_big_ruleset_in_linear_time(tmp_path: Path) -> None:
    """The word before each `include` was searched for from the start of the text, and the inlined text grew by
    `+=` line by line: 13,000 includes took 29 s, 320,000 lines 4.5 s, a 4 MiB ruleset minutes (found by the
    fuzzer)."""
    import re

    from mailpreflight.firewall import nftinclude

    root = tmp_path / "root"
    write(root, "/etc/nftables.conf", "table inet t {}\n" + "# x\n" * 400_000)
    write(root, "/etc/many.nft", 'include "x.nft"\n' * 60_000)
    started = time.process_time()
    with fuzzing.time_limit(10):
        inlined = nftinclude.inline(RootFS(str(root)), "/etc/nftables.conf")
        keywords = nftinclude.include_keywords(RootFS(str(root)).read_text("/etc/many.nft") or "")
    assert time.process_time() - started < 2
    assert len(keywords) == 60_000 and inlined.origins[-1] == ("/etc/nftables.conf", 400_001)
    assert inlined.text == "table inet t {}\n" + "# x\n" * 400_000
    word_before = re.compile(r"[A-Za-z0-9_./\-]*\Z")  # what the search from the start found: the same words
    for text in ("noinclude", "a:include", "./include", "x.include", "-include", "1include", "é include", " include"):
        match = re.search("include", text)
        assert match is not None
        before = word_before.search(text, 0, match.start())
        expected = [] if before and before.group(0) and re.match(r"[A-Za-z_.]", before.group(0)) and (
            match.start() == len(before.group(0)) or text[match.start() - len(before.group(0)) - 1] != ":") else [
            match.start()]
        assert nftinclude.include_keywords(text + ' "f"') == expected, text


@pytest.mark.parametrize("conf, runs", [
    ('SERVICES {\n  imap cmd="imapd" listen="imap"\n  pop3 cmd="/usr/lib/cyrus/bin/pop3d -s"\n}\n', {"imapd", "pop3d"}),
    ('SERVICES {\n  imaps cmd=" imapd -s"\n  sieve cmd=timsieved listen=sieve\n}\n', {"imapd", "timsieved"}),
    ('SERVICES {\n  x cmd="imapdx"\n  # pop3 cmd="pop3d"\n}\n', set()),
    ('SERVICES {\n  imaps cmd="imcmd="imcmd="im' + 'cmd="im' * 150_000 + '"\n}\n', set()),
    ("START {\n}\n" + "SERVICES {\n " * 40_000, set()),  # no section is ever closed
    ('SERVICES {\n  imap cmd="imapd"' + "\n" * 300_000 + "x", set()),  # nor here, after many blank lines
    ('SERVICES {\n  imap cmd="imapd"\n\n \r\n\t}\n  pop3 cmd="pop3d"\n}\n', {"imapd"}),
])
def test_cyrus_services_in_linear_time(conf: str, runs: set[str]) -> None:
    """`cmd\\s*=\\s*"?\\s*(\\S*/)?pop3d\\b` backtracked over a long word: 28 KB took 0.3 s, 1 MiB minutes; and
    `SERVICES\\s*\\{(.*?)\\n\\s*\\}` scanned to the end from every unclosed `SERVICES {` (49 KB: 0.9 s per command)
    and from every line of a blank run (found by the fuzzer)."""
    started = time.process_time()
    with fuzzing.time_limit(10):
        found = {c for c in ("imapd", "pop3d", "timsieved") if services._cyrus_runs(conf, c)}
    assert found == runs and time.process_time() - started < 1


def test_another_hosts_baseline_is_refused_in_one_line(snapshot: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A guest's /etc/machine-id that is a whole unit file made the refusal a message of many lines. It is no
    machine id at all (units/machineid.py): one line of warning, quoted short, and the hostname decides."""
    _, document = snapshot
    root = tmp_path / "guest"
    write(root, "/etc/machine-id", "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a\n# spamd.service\n[Unit]\n" + "x" * 3000)
    write(root, "/etc/hostname", "other.example.com\n")
    baseline = tmp_path / "baseline.json"
    host = {"machine_id": "5b1a9e8c2f3d4e6a8b0c1d2e3f405162", "hostname": "mail.example.com", "os": None}
    baseline.write_text(json.dumps({**document, "host": host}))
    code, out, err = _run("drift", "--baseline", str(baseline), "--root", str(root))
    assert (code, out) == (3, "") and err.count("\n") == 2 and len(err) < 600, err
    warning, refusal = err.splitlines()
    assert warning == ("mailpreflight: warning: /etc/machine-id is not a machine ID (32 hexadecimal digits, as "
                       "systemd writes it): '0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a\\n# spamd'... (3,056 characters); the "
                       "host's machine ID is taken as unknown")
    assert "hostname mail.example.com (baseline) is not other.example.com (this root)" in refusal
    del host["os"]  # a host record snapshot never writes is refused when the baseline is loaded (document.py)
    baseline.write_text(json.dumps({**document, "host": host}))
    code, out, err = _run("drift", "--baseline", str(baseline), "--root", str(root))
    assert (code, out) == (3, "") and err.count("\n") == 1 and str(baseline) in err and "internal error" not in err


def test_dovecot_conf_that_includes_itself_is_read_once(tmp_path: Path) -> None:
    """With a budget of 256 files but no check for recursion, a dovecot.conf of 4,000 include lines that also
    includes `*` (itself) was read 256 times: a million globs (found by the 1,000,000-input campaign)."""
    root = tmp_path / "root"
    write(root, "/etc/dovecot/dovecot.conf", "!include_try *\n" + "!include_try none.conf.ext\n" * 4000
          + "passdb {\n  driver = pam\n}\n")
    started = time.process_time()
    with fuzzing.time_limit(20):
        config = services.read_dovecot_config(RootFS(str(root)))
    assert time.process_time() - started < 1
    assert config is not None and len(config.passdbs) == 1  # read once: one passdb, not 256


def test_pam_file_of_thousands_of_lines_in_linear_time(tmp_path: Path) -> None:
    """Every line looked for its module in the 10 module directories of every distribution: a common-auth of 4,000
    lines took 0.9 s per service (found by the 1,000,000-input campaign), a 1 MiB one seconds per service."""
    from mailpreflight.auth import pam

    root = tmp_path / "root"
    for directory in pam.MODULE_DIRS:  # all there, /lib and /lib64 linked to /usr as on merged-/usr systems
        if directory.startswith("/usr/"):
            write(root, f"{directory}/pam_permit.so", "")
    (root / "lib").symlink_to("usr/lib")
    (root / "lib64").symlink_to("usr/lib64")
    write(root, "/usr/lib64/security/pam_unix.so", "")
    lines = "".join(f"auth optional pam_gone{i}.so\nauth required pam_unix.so\n" for i in range(18_000))  # 1 MiB
    write(root, "/etc/pam.d/imap", lines + "account required ../security/pam_unix.so\n")
    started = time.process_time()
    with fuzzing.time_limit(20):
        service = pam.resolve(RootFS(str(root)), "imap")
    assert time.process_time() - started < 1
    found = {line.module: line.module_path for line in service.lines}
    assert found["pam_unix.so"] == "/lib64/security/pam_unix.so" and found["pam_gone7.so"] is None
    assert found["../security/pam_unix.so"] == "/lib64/security/../security/pam_unix.so"
    assert sum(p.kind == "missing-module" for p in service.problems) == 18_000
