"""sa-update's keyring as gpg sees it: the guest's keyring files (read through RootFS by deps/satrust.py) are
copied into a private temporary home and listed there by the HOST's gpg — which only parses them: no
options file of the guest (`--no-options`), no agent or dirmngr started (`--no-autostart`), no trust-db
update, nothing written outside the copy, which is removed afterwards. The guest's own gpg is never run.
What sa-update would import first (sa-update-pubkey.txt, when the keyring has no trustdb.gpg) is imported
into the copy the same way."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mailpreflight.deps.satrust import Keyring, KeyringKey, SaTrust

GPG_TIMEOUT = 20.0  # seconds for one gpg run
_BASE_OPTIONS = ("--no-options", "--batch", "--no-tty", "--no-autostart", "--no-auto-check-trustdb",
                 "--no-permission-warning")


def list_keyring(trust: SaTrust) -> Keyring:
    """Every key and subkey of the keyring sa-update will verify with. Never raises."""
    gpg = shutil.which("gpg")
    if gpg is None:
        return Keyring((), "gpg is not installed on this host, so the keyring cannot be listed (apt-get install "
                           "gpg)")
    with tempfile.TemporaryDirectory(prefix="mailpreflight-gpg-") as home:
        os.chmod(home, 0o700)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C", "GNUPGHOME": home}
        base = [gpg, "--homedir", home, *_BASE_OPTIONS]
        try:
            for name, data in trust.keyring:
                _write(Path(home, name), data)
            for number, (_, data) in enumerate(trust.imports):
                key_file = Path(home, f"import-{number}.asc")
                _write(key_file, data)
                subprocess.run([*base, "--import", str(key_file)], capture_output=True, env=env, timeout=GPG_TIMEOUT,
                               check=False)  # a key gpg cannot import is not in the keyring, for sa-update neither
            done = subprocess.run([*base, "--with-colons", "--fixed-list-mode", "--with-subkey-fingerprint",
                                   "--list-keys"], capture_output=True, env=env, timeout=GPG_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return Keyring((), f"gpg could not list the keyring: {exc}")
        if done.returncode != 0 and not done.stdout:
            error = done.stderr.decode("utf-8", "replace").strip().splitlines()
            return Keyring((), f"gpg could not list the keyring: {error[-1] if error else f'exit {done.returncode}'}")
        return Keyring(parse_colons(done.stdout.decode("utf-8", "replace")))


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def parse_colons(text: str) -> tuple[KeyringKey, ...]:
    """`gpg --with-colons --with-subkey-fingerprint --list-keys` (doc/DETAILS of GnuPG): pub/sub records,
    each followed by its fpr record; the primary key's first uid names the key."""
    keys: list[KeyringKey] = []
    pending: list[str] | None = None  # the pub/sub record waiting for its fpr
    primary = ""
    uid = ""
    first = len(keys)
    for line in text.splitlines():
        fields = line.split(":")
        record = fields[0]
        if record in ("pub", "sub") and len(fields) > 6:
            pending = fields
            if record == "pub":
                primary, uid, first = "", "", len(keys)
        elif record == "fpr" and pending is not None and len(fields) > 9:
            fpr = fields[9].upper()
            if pending[0] == "pub":
                primary = fpr
            expires = int(pending[6]) if pending[6].isdigit() else None
            keys.append(KeyringKey(fpr, primary or fpr, pending[1], expires, uid))
            pending = None
        elif record == "uid" and not uid and len(fields) > 9:
            uid = fields[9].replace("\\x3a", ":")
            keys[first:] = [KeyringKey(k.fpr, k.primary_fpr, k.validity, k.expires, uid) for k in keys[first:]]
    return tuple(keys)
