"""sa-update's GPG check, predicted by `check` and then done by the real sa-update (Debian 12's 4.0.1, the
host's gpg 2.2) against the same mirror in a NetLab: the predicted exit status must be the real one, case by
case — a key trusted by --gpgkey, a key in the keyring that nothing trusts, a trusted key missing from the
keyring, a signing subkey whose primary is the one trusted, an expired key, a revoked key.

The guest root holds the real sa-update program (its built-in trusted keys and install paths are read from
it), its sa-update-pubkey.txt, and the keyring in /var/lib/sa-lab-keys, filled by the real
`sa-update --import`; the unit runs sa-update with that --gpghomedir, and the real run uses the same
directory. Every case runs in its own lab, three at a time (~30 s in all on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from netlab import SA_UPDATE, NetLab, Result, SigningKey, stop_gpg_agent, unavailable_reason, write_guest_root

REPO = Path(__file__).resolve().parents[2]
KEYS_DIR = "/var/lib/sa-lab-keys"  # the keyring, as the guest sees it
UPDATE_DIR = "/var/lib/sa-lab"
DAY = 24 * 3600


def _gpg(home: Path, *args: str) -> str:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def _fingerprints(home: Path) -> list[str]:
    listing = _gpg(home, "--with-colons", "--with-subkey-fingerprint", "--list-keys")
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]


@dataclass(frozen=True)
class BackdatedKey(SigningKey):
    """A key made 3 days ago that expired 2 days ago; it signed the rules 2.5 days ago, while it was valid."""

    signed_at: int = 0

    @classmethod
    def create_expired(cls, directory: Path) -> BackdatedKey:
        home = directory / "gnupg"
        home.mkdir(mode=0o700, parents=True)
        now = int(time.time())
        _gpg(home, f"--faked-system-time={now - 3 * DAY}!", "--quick-gen-key", "expired <x@lab.test>", "ed25519",
             "sign", "1d")
        fingerprint = _fingerprints(home)[0]
        pubkey = directory / "pubkey.asc"
        pubkey.write_text(_gpg(home, "--armor", "--export", fingerprint))
        return cls(home, fingerprint, pubkey, now - 5 * DAY // 2)

    def sign(self, path: Path) -> Path:
        asc = path.with_name(path.name + ".asc")
        _gpg(self.gnupghome, f"--faked-system-time={self.signed_at}!", "--local-user", self.fingerprint, "--armor",
             "--detach-sign", "--output", str(asc), str(path))
        return asc


def _subkey_signer(directory: Path) -> tuple[SigningKey, str]:
    """A certify-only primary key with a signing subkey (how the ASF key is made): gpg signs with the subkey."""
    home = directory / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    _gpg(home, "--quick-gen-key", "subkey signer <s@lab.test>", "ed25519", "cert", "never")
    primary = _fingerprints(home)[0]
    _gpg(home, "--quick-add-key", primary, "ed25519", "sign", "never")
    subkey = _fingerprints(home)[1]
    pubkey = directory / "pubkey.asc"
    pubkey.write_text(_gpg(home, "--armor", "--export", primary))
    return SigningKey(home, primary, pubkey), subkey


@dataclass
class Case:
    name: str
    signer: str  # which key signs the rules: "good", "other", "expired", "revoked", "subkey"
    trust: str | None  # what --gpgkey names: a key name, "subkey-primary", or None (the built-in list only)
    imported: tuple[str, ...]  # keys imported into the keyring (empty: none, and no trustdb.gpg either)
    expected: int  # what the real sa-update 4.0.1 exits with (measured; the test checks it again)
    outcome: dict[str, Any] = field(default_factory=dict)


CASES = (
    Case("trusted", "good", "good", ("good",), 0),
    Case("untrusted", "other", None, ("other", "good"), 4),  # in the keyring, trusted by nothing
    Case("not-in-keyring", "good", "good", (), 4),  # NO_PUBKEY (the ASF key is imported first, not this one)
    Case("subkey-primary-trusted", "subkey", "subkey-primary", ("subkey",), 4),
    Case("expired", "expired", "expired", ("expired",), 0),  # accepted: sa-update reads VALIDSIG
    Case("revoked", "revoked", "revoked", ("revoked",), 0),  # accepted all the same
)


def _keys(base: Path) -> tuple[dict[str, SigningKey], str]:
    keys: dict[str, SigningKey] = {name: SigningKey.create(base / name) for name in ("good", "other", "revoked")}
    keys["expired"] = BackdatedKey.create_expired(base / "expired")
    keys["subkey"], subkey = _subkey_signer(base / "subkey")
    return keys, subkey


def _revocation(key: SigningKey, directory: Path) -> Path:
    """The revocation certificate gpg made with the key, ready for import: importing it into sa-update's keyring
    revokes the key there (the signer's own home keeps it valid, so that it could sign the rules first)."""
    certificate = next((key.gnupghome / "openpgp-revocs.d").glob("*.rev")).read_text()
    rev = directory / "revocation.asc"
    rev.write_text(certificate.replace(":-----BEGIN", "-----BEGIN"))  # gpg guards it with a leading colon
    return rev


def _guest(workdir: Path, gpgkey: str | None) -> Path:
    trust = f"--gpgkey {gpgkey} " if gpgkey else ""
    root = write_guest_root(workdir / "root", (
        "[Unit]\nWants=network-online.target\nAfter=network-online.target\n[Service]\n"
        f'ExecStartPre=/bin/bash -c "sa-update {trust}--gpghomedir {KEYS_DIR} --updatedir {UPDATE_DIR} -vv || true"\n'
        "ExecStart=/usr/sbin/spamd\n"))
    shutil.copy(SA_UPDATE, root / "usr/bin/sa-update")  # the real program: its built-in keys, its paths
    (root / "usr/bin/gpg").write_text("#!/bin/false\n")  # a placeholder: the lab runs the host's gpg
    (root / "usr/share/spamassassin").mkdir(parents=True)
    shutil.copy("/usr/share/spamassassin/sa-update-pubkey.txt", root / "usr/share/spamassassin")
    (root / KEYS_DIR.lstrip("/")).mkdir(mode=0o700, parents=True)
    return root


def _run_case(case: Case, workdir: Path, keys: dict[str, SigningKey], revocation: Path) -> None:
    trusted = "subkey" if case.trust == "subkey-primary" else case.trust  # the subkey signer's primary
    gpgkey = None if trusted is None else keys[trusted].fingerprint
    try:
        with NetLab(workdir / "lab", signing_key=keys[case.signer]) as lab:  # signs the rules with that key
            root = _guest(workdir, gpgkey)
            keyring = root / KEYS_DIR.lstrip("/")
            for name in case.imported:
                files = [keys[name].pubkey, *([revocation] if name == "revoked" else [])]
                for key_file in files:  # as Debian's postinst fills its keyring
                    imported = lab.run([SA_UPDATE, "--gpghomedir", str(keyring), "--import", str(key_file)],
                                       timeout=120)
                    assert imported.returncode == 0, imported
            env = lab.env(PYTHONPATH=str(REPO / "src"))  # this tree's mailpreflight
            checked = lab.run([sys.executable, "-m", "mailpreflight", "check", "--root", str(root), "spamd.service",
                               "--format", "json", "--timeout", "3", "--no-auth"], timeout=120, env=env)
            case.outcome["check"] = json.loads(checked.stdout) if checked.stdout.strip() else {"stderr": checked.stderr}
            argv = [SA_UPDATE, *(["--gpgkey", gpgkey] if gpgkey else []), "--gpghomedir", str(keyring),
                    "--updatedir", str(root / UPDATE_DIR.lstrip("/")), "-vv", "-D", "gpg"]
            case.outcome["real"] = lab.run(argv, timeout=300)
            stop_gpg_agent(keyring)
    except Exception as exc:  # reported by that case's test
        case.outcome["error"] = exc


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Case]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network lab unavailable: {reason}")
    if not Path("/usr/share/spamassassin/sa-update-pubkey.txt").is_file():
        pytest.skip("/usr/share/spamassassin/sa-update-pubkey.txt not found (apt: spamassassin)")
    base = tmp_path_factory.mktemp("netlab-gpg")
    keys, subkey = _keys(base / "keys")
    try:
        revocation = _revocation(keys["revoked"], base / "keys/revoked")
        with ThreadPoolExecutor(max_workers=3) as pool:
            # short directory names: gpg-agent's sockets live in the keyring dir (sun_path is 108 bytes)
            for future in [pool.submit(_run_case, case, base / f"c{i}", keys, revocation)
                           for i, case in enumerate(CASES)]:
                future.result()
    finally:
        for key in keys.values():
            key.close()
    cases = {case.name: case for case in CASES}
    cases["subkey-primary-trusted"].outcome["subkey"] = subkey
    yield cases


def _command(case: Case) -> dict[str, Any]:
    if "error" in case.outcome:
        raise case.outcome["error"]
    check = case.outcome["check"]
    assert "units" in check, check
    command: dict[str, Any] = next(c for c in check["units"][0]["commands"] if c["tool"] == "sa-update")
    return command


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_prediction_is_what_the_real_sa_update_does(measured: dict[str, Case], name: str) -> None:
    case = measured[name]
    command = _command(case)
    real: Result = case.outcome["real"]
    assert not real.timed_out, real
    assert real.returncode == case.expected, real  # the ground truth is what this case says it is
    assert command["predicted_exit"] == str(real.returncode), (command, real)
    assert command["predicted"] == ("ok" if real.returncode == 0 else "fail"), command
    if real.returncode == 4:
        assert "GPG validation failed" in real.stderr
        assert "GPG validation failed" in command["reason"] or "NO_PUBKEY" in command["reason"], command


def test_reasons_name_the_signer_and_the_rule(measured: dict[str, Case]) -> None:
    reasons = {name: _command(case)["reason"] for name, case in measured.items()}
    assert "release-trusted by --gpgkey" in reasons["trusted"]
    assert "not release-trusted (not in /usr/bin/sa-update's list, --gpgkey or --gpgkeyfile)" in reasons["untrusted"]
    assert "not in sa-update's keyring /var/lib/sa-lab-keys (with /usr/share/spamassassin/sa-update-pubkey.txt " \
           "imported first)" in reasons["not-in-keyring"]
    subkey = measured["subkey-primary-trusted"].outcome["subkey"]
    assert "trusts its primary key" in reasons["subkey-primary-trusted"]
    assert f"compares the key that made the signature: trust {subkey}" in reasons["subkey-primary-trusted"]


def test_expired_and_revoked_keys_are_accepted_and_reported(measured: dict[str, Case]) -> None:
    for name, state in (("expired", "expired"), ("revoked", "revoked")):
        check = measured[name].outcome["check"]
        [finding] = [f for f in check["findings"] if f["code"] == "MP203"]
        assert finding["severity"] == "warning" and f"a key that is {state}" in finding["message"], finding
        real = measured[name].outcome["real"]
        assert ("EXPKEYSIG" if state == "expired" else "REVKEYSIG") in real.stdout + real.stderr, real
    assert not [f for f in measured["trusted"].outcome["check"]["findings"] if f["code"] == "MP203"]


def test_no_gpg_agent_left_behind(measured: dict[str, Case]) -> None:
    """check lists keyrings with --no-autostart in a private home: no agent of ours survives it."""
    ours = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).count("mailpreflight-gpg-")]
    assert ours == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""
