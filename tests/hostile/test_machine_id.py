"""A guest's /etc/machine-id is read as systemd reads it (units/machineid.py): 32 hexadecimal digits (not the
UUID form: ID128_FORMAT_PLAIN), then at most one newline. Empty and `uninitialized` (first-boot images) are
unknown; anything else is reported and unknown too, never used raw: not in %m (file names a unit builds), not in a
baseline, not in drift's output or its other-host refusal. systemd itself as the oracle:
tests/integration/test_machine_id_oracle.py."""

from __future__ import annotations

import json

import pytest
from hostile_roots import LOOPBACK, Guest

from mailpreflight.units.machineid import MachineId, parse_machine_id

UNIT = "/etc/systemd/system/fetchy.service"
ID = "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a"


@pytest.mark.parametrize(("text", "value"), [
    (f"{ID}\n", ID), (ID, ID), (f"{ID.upper()}\n", ID),  # sd_id128_from_string() takes either case
])
def test_ids_systemd_reads(text: str, value: str) -> None:
    assert parse_machine_id(text) == MachineId(value)


@pytest.mark.parametrize("text", ["", "uninitialized\n", "uninitialized", "0" * 32 + "\n", "0" * 32])
def test_first_boot_and_null_ids_are_unknown_without_a_word(text: str) -> None:
    assert parse_machine_id(text) == MachineId(None)


@pytest.mark.parametrize("text", [
    f"{ID}\n\n", f" {ID}\n", f"{ID} \n", f"{ID}\r\n", ID[:31], ID + "0", ID[:31] + "g", f"{ID}\nmore\n",
    "0d9c8b7a-6f5e-4d3c-2b1a0f9e8d7c6b5a", "0d9c8b7a6f5e4d3c-2b1a-0f9e-8d7c6b5a1234",
    "{0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a}",
    # the UUID form: sd_id128_get_machine() reads /etc/machine-id with ID128_FORMAT_PLAIN, which refuses it
    "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a\n", "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a",
    "00000000-0000-0000-0000-000000000000",
    "uninitialized\n\n", "../../etc/passwd", "０" * 32, "x\x1b[2J\u202e" * 1000, "\ufffd" * 32,
])
def test_anything_else_is_reported_and_unknown(text: str) -> None:
    found = parse_machine_id(text)
    assert found.value is None and found.problem is not None
    assert found.problem.startswith("/etc/machine-id is not a machine ID") and "\n" not in found.problem
    assert len(found.problem) < 250 and "\x1b" not in found.problem and "\u202e" not in found.problem


def test_a_bad_machine_id_is_not_expanded_into_a_file_name(guest: Guest) -> None:
    guest.write(UNIT, LOOPBACK.replace("[Service]\n", "[Service]\nEnvironmentFile=-/etc/default/fetchy-%m\n"))
    guest.write("/etc/machine-id", "../../../host-secret\n")
    shown = guest.run("show", "fetchy", "--format", "json", bound=20)
    assert shown.returncode in (0, 1, 2), shown.stderr
    assert "host-secret" not in shown.stdout.replace("'../../../host-secret\\\\n'", "")
    assert "/etc/default/fetchy-%m" in shown.stdout
    assert "/etc/machine-id is not a machine ID" in shown.stdout
    guest.write("/etc/machine-id", f"{ID.upper()}\n")
    shown = guest.run("show", "fetchy", "--format", "json", bound=20)
    assert f"/etc/default/fetchy-{ID}" in shown.stdout and "machine ID" not in shown.stdout


def test_snapshot_records_a_bad_machine_id_as_unknown_and_says_so(guest: Guest) -> None:
    guest.write(UNIT, LOOPBACK)
    guest.write("/etc/hostname", "mail.example.com\n")
    for text, recorded, warned in ((b"uninitialized\n", None, False), (b"\x1b]0;owned\x07" * 50, None, True),
                                   (f"{ID.upper()}\n".encode(), ID, False)):
        guest.write("/etc/machine-id", text)
        done = guest.run("snapshot", bound=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["host"]["machine_id"] == recorded
        assert ("warning: /etc/machine-id is not a machine ID" in done.stderr) is warned, done.stderr
        assert "\x1b" not in done.stderr and "\x07" not in done.stderr


def test_drift_compares_hostnames_when_the_machine_id_is_bad(guest: Guest) -> None:
    guest.write(UNIT, LOOPBACK)
    guest.write("/etc/hostname", "mail.example.com\n")
    guest.write("/etc/machine-id", f"{ID}\n")
    baseline = guest.tmp / "baseline.json"
    guest.extra_outputs = (baseline,)
    assert guest.run("snapshot", "--output", str(baseline), bound=60).returncode == 0
    document = json.loads(baseline.read_text())
    document["host"]["machine_id"] = "not an id\nsecond line"  # older versions recorded the file as it was
    baseline.write_text(json.dumps(document))
    guest.write("/etc/machine-id", "5b1a9e8c2f3d4e6a8b0c1d2e3f405162 and more\n")
    drift = guest.run("drift", "--baseline", str(baseline), "--format", "json", bound=60)
    assert drift.returncode in (0, 1, 2), drift.stderr  # the same hostname: the same host, no refusal
    assert json.loads(drift.stdout)["host"]["machine_id"] is None
    assert json.loads(drift.stdout)["baseline"]["host"]["machine_id"] is None
    assert "warning: /etc/machine-id is not a machine ID" in drift.stderr
    guest.write("/etc/hostname", "other.example.com\n")
    refused = guest.run("drift", "--baseline", str(baseline), bound=60)
    assert refused.returncode == 3 and "hostname mail.example.com (baseline) is not other.example.com" in refused.stderr
    assert "and more" not in refused.stderr.split("\n", 1)[1]
