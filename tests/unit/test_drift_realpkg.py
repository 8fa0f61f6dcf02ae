"""snapshot records every file a finding or a start path depends on, on a root made from Debian 12's real
spamassassin and spamd packages (tests/debcache.py: cached .debs, `dpkg-deb -x`): the maintenance unit, its
timer and the script its findings cite, so that `drift` sees an edit to them and ties the findings to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import debcache

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mailpreflight"]
MAINT = "/usr/sbin/spamassassin-maint"
SERVICE = "/lib/systemd/system/spamassassin-maintenance.service"
TIMER = "/lib/systemd/system/spamassassin-maintenance.timer"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def debian_spamassassin(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    # gpg (recommended by spamassassin, installed by default): without it spamassassin-maint ends at
    # `command -v gpg > /dev/null || exit 0` (l.83) and its sa-update never runs
    root = debcache.extract(tmp_path / "root", "base-files", "spamassassin", "spamd", "gpg")
    baseline = tmp_path / "baseline.json"
    done = run("snapshot", "--root", str(root), "--output", str(baseline))
    assert done.returncode == 0, done.stderr
    return root, baseline, json.loads(baseline.read_text())


def test_snapshot_records_what_findings_and_start_paths_depend_on(
        debian_spamassassin: tuple[Path, Path, dict[str, Any]]) -> None:
    _, _, document = debian_spamassassin
    files = document["files"]
    # the oneshot, the timer that starts it, its script; the Perl scripts the start path runs
    for path in (SERVICE, TIMER, MAINT, "/usr/bin/sa-update", "/usr/bin/spamassassin", "/etc/default/spamd"):
        assert files[path]["type"] == "file", path
    assert files[MAINT]["text"].startswith("#!/bin/sh\n")
    assert "/usr/bin/env" not in files  # a program that is no script is not recorded as one
    findings = document["findings"]
    assert {f["code"] for f in findings if f["unit"] == "spamassassin-maintenance.service"} >= {"MP101", "MP106"}
    for finding in findings:  # every file a finding depends on is in the baseline
        assert finding["paths"] and all(path in files for path in finding["paths"]), finding
    mp106 = [f for f in findings if f["code"] == "MP106"]
    assert all("/var/lib/spamassassin holds" not in f["paths"] for f in mp106)  # a path, not evidence text


def test_drift_sees_an_edited_maintenance_script_and_timer(
        debian_spamassassin: tuple[Path, Path, dict[str, Any]]) -> None:
    root, baseline, _ = debian_spamassassin
    script = root / MAINT.lstrip("/")
    text = script.read_text()
    keys = "--gpghomedir /var/lib/spamassassin/sa-update-keys 2>&1"
    assert keys in text
    script.write_text(text.replace(keys, keys.replace(" 2>&1", " --refresh-mirrors 2>&1")))  # a typo'd option
    timer = root / TIMER.lstrip("/")
    assert "OnCalendar=*-*-* 6:00\n" in timer.read_text()
    timer.write_text(timer.read_text().replace("OnCalendar=*-*-* 6:00", "OnCalendar=hourly"))
    done = run("drift", "--baseline", str(baseline), "--root", str(root), "--format", "json")
    assert done.returncode == 1 and done.stderr == "", done.stderr  # changes and a new warning
    document = json.loads(done.stdout)
    jsonschema.validate(document, json.loads((REPO / "docs/schemas/drift.schema.json").read_text()))
    changes = {c["path"]: c for c in document["changes"]}
    assert sorted(changes) == sorted([TIMER, MAINT])
    maint = changes[MAINT]
    assert maint["change"] == "changed" and maint["details"] == ["content"]
    assert "+    --gpghomedir /var/lib/spamassassin/sa-update-keys --refresh-mirrors 2>&1" in maint["diff"]
    [cause] = maint["causes"]
    assert cause["code"] == "MP108" and cause["unit"] == "spamassassin-maintenance.service"
    assert "sa-update does not accept --refresh-mirrors" in cause["message"] and MAINT in cause["paths"]
    assert "+OnCalendar=hourly" in changes[TIMER]["diff"] and changes[TIMER]["causes"] == []
    text_out = run("drift", "--baseline", str(baseline), "--root", str(root)).stdout
    assert f"CHANGED  {MAINT}  (content)\n         -> MP108 warning: sa-update does not accept --refresh-mirrors" \
        in text_out


def test_snapshot_records_sa_updates_keyring(tmp_path: Path) -> None:
    """The keyring spamassassin-maint's sa-update verifies with (/var/lib/spamassassin/sa-update-keys, filled by
    Debian's postinst from GPG.KEY) decides its GPG check: its key file is recorded, trustdb.gpg is not."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg not installed (apt: gpg)")
    root = debcache.extract(tmp_path / "root", "base-files", "spamassassin", "spamd", "gpg")
    keys = root / "var/lib/spamassassin/sa-update-keys"
    keys.mkdir(mode=0o700, parents=True)
    done = subprocess.run(["gpg", "--homedir", str(keys), "--batch", "--no-autostart", "--import",
                           str(root / "usr/share/spamassassin/GPG.KEY")], capture_output=True, timeout=60)
    assert b"imported: 1" in done.stderr, done.stderr
    baseline = tmp_path / "baseline.json"
    assert run("snapshot", "--root", str(root), "--output", str(baseline)).returncode == 0
    files = json.loads(baseline.read_text())["files"]
    assert files["/var/lib/spamassassin/sa-update-keys/pubring.kbx"]["sha256"]  # a digest, no text
    assert "/var/lib/spamassassin/sa-update-keys/trustdb.gpg" not in files
