"""The host's digest key: content digests in a baseline are HMAC-SHA256 with a key that is not in the
baseline, so a baseline that travelled through a ticket lets nobody test password guesses against the digest
of sasl_passwd, sssd.conf or a redacted line; and each entry carries a MAC, so a tampered entry (text, mode,
owner, link target) is refused by `restore`.

The key is the HOST's, also with `--root` (a guest's disk never supplies it): `/var/lib/mailpreflight/
baseline.key` (MAILPREFLIGHT_DIGEST_KEY names another default, `--digest-key FILE` overrides both), created
0600 by the first `snapshot`. A baseline records only the key's id, HMAC(key, "mailpreflight-key-id")
truncated. Baselines written before the key (a "salt" beside the digests) are still read; their digests are
SHA-256 of salt + content, and their entries have no MAC.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mailpreflight.errors import MailpreflightError
from mailpreflight.model import FileRecord

if TYPE_CHECKING:
    from mailpreflight.baseline.document import Baseline

DEFAULT_KEY_PATH = "/var/lib/mailpreflight/baseline.key"
KEY_PATH_ENV = "MAILPREFLIGHT_DIGEST_KEY"
ALGORITHM = "hmac-sha256"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
MAX_KEY_FILE = 4096
KEY_ID_LENGTH = 16
FIX = f"pass --digest-key FILE, a copy of {DEFAULT_KEY_PATH} from the host that took it"
REDACTED = "<redacted>"  # what snapshot puts in place of a secret value
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_LENGTH}}}")
_SALT = re.compile(r"[0-9a-f]{1,128}")  # secrets.token_hex(16) in the baselines that had one


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def default_key_path() -> str:
    return os.environ.get(KEY_PATH_ENV) or DEFAULT_KEY_PATH


@dataclass(frozen=True)
class Digest:
    """How a baseline's digests are made: keyed (key is not None) or, for old baselines, salted."""

    key: bytes | None
    salt: bytes = b""
    source: str = ""  # the key file

    @property
    def key_id(self) -> str | None:
        if self.key is None:
            return None
        return hmac.new(self.key, b"mailpreflight-key-id", hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]

    def new(self) -> Hash:
        if self.key is None:
            return hashlib.sha256(self.salt)
        return hmac.new(self.key, digestmod=hashlib.sha256)

    def hexdigest(self, data: bytes) -> str:
        digest = self.new()
        digest.update(data)
        return digest.hexdigest()

    def mac(self, path: str, entry: Mapping[str, object]) -> str | None:
        """MAC of a baseline entry (everything in it but the MAC, and its path); None without a key."""
        if self.key is None:
            return None
        fields = {k: v for k, v in entry.items() if k != "mac"}
        canonical = json.dumps([path, fields], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hmac.new(self.key, b"entry\0" + canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def to_json(self) -> dict[str, str | None]:
        return {"algorithm": ALGORITHM, "key_id": self.key_id}


def read_key(path: str) -> bytes:
    """The key in `path`: a regular file (not a link), owned by root or by us, readable by nobody else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise MailpreflightError(f"digest key {path}: {why}",
                                 hint="pass --digest-key FILE, a regular file (not a symlink) holding the key") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise MailpreflightError(f"digest key {path}: not a regular file", hint="pass --digest-key FILE")
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid not in (0, os.geteuid()):
            raise MailpreflightError(f"digest key {path}: owned by uid {info.st_uid}, not by root or by us",
                                     hint=f"chown root: {path}")
        if info.st_mode & 0o077:
            raise MailpreflightError(f"digest key {path}: others may read or change it (mode "
                                     f"{stat.S_IMODE(info.st_mode):04o})", hint=f"chmod 600 {path}")
        key = handle.read(MAX_KEY_FILE + 1).strip()
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_FILE:
        raise MailpreflightError(f"digest key {path}: {len(key)} bytes, not a key (at least {MIN_KEY_BYTES})",
                                 hint="move it away; `mailpreflight snapshot` makes a new one")
    return key


def load_or_create(path: str) -> Digest:
    """The key for a new baseline: read, or made (0600, in a 0700 directory) on first use."""
    try:
        return Digest(read_key(path), source=path)
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # a concurrent snapshot made it first: use theirs
                os.link(temp, path)
        finally:
            os.unlink(temp)
    except OSError as exc:
        raise MailpreflightError(f"cannot create the digest key {path}: {exc.strerror or exc}",
                                 hint="pass --digest-key FILE, a key file you can write or read") from exc
    return Digest(read_key(path), source=path)


def recorded_digest(baseline_file: str, document: Mapping[str, object]) -> tuple[str | None, str | None]:
    """(key id, salt) of a baseline document: how its digests were made; one of them is None."""
    recorded = document.get("digest")
    if recorded is None:
        salt = document.get("salt")
        if not isinstance(salt, str):
            raise MailpreflightError(f"{baseline_file}:1: neither a digest key id nor a salt: not a baseline "
                                     "mailpreflight wrote", hint="take a new one with `mailpreflight snapshot`")
        if not _SALT.fullmatch(salt):
            raise MailpreflightError(f"{baseline_file}:1: the salt {json.dumps(salt)[:80]} is not one snapshot "
                                     "writes", hint="take a new baseline with `mailpreflight snapshot`")
        return None, salt
    key_id = recorded.get("key_id") if isinstance(recorded, dict) else None
    if not isinstance(recorded, dict) or set(recorded) != {"algorithm", "key_id"} or \
            recorded["algorithm"] != ALGORITHM or not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise MailpreflightError(f"{baseline_file}:1: unknown digest {json.dumps(recorded)[:80]}",
                                 hint="take a new baseline with `mailpreflight snapshot`")
    if "salt" in document:
        raise MailpreflightError(f"{baseline_file}:1: both a digest key id and a salt: not a baseline mailpreflight "
                                 "wrote", hint="take a new one with `mailpreflight snapshot`")
    return key_id, None


def for_baseline(baseline_file: str, baseline: Baseline, key_path: str | None) -> Digest:
    """The digest a baseline was made with; refuses, saying what to do, when its key is not at hand."""
    if baseline.key_id is None:
        return Digest(None, (baseline.salt or "").encode())
    wanted = baseline.key_id
    path = key_path or default_key_path()
    try:
        digest = Digest(read_key(path), source=path)
    except FileNotFoundError:
        raise MailpreflightError(f"{baseline_file}: made with digest key {wanted}, and there is no key file "
                                 f"{path} on this host: {FIX}") from None
    if digest.key_id != wanted:
        raise MailpreflightError(f"{baseline_file}: made with digest key {wanted}, but {path} is key "
                                 f"{digest.key_id}: {FIX}")
    return digest


def check_entry(baseline_file: str, path: str, entry: FileRecord, digest: Digest) -> None:
    """Refuse an entry whose MAC does not match (edited after `snapshot`), and text that is not what was hashed."""
    if digest.key is None:
        return  # a baseline from before the key: nothing to check against
    if not hmac.compare_digest(str(entry.mac), digest.mac(path, entry.fields()) or ""):
        raise MailpreflightError(f"{baseline_file}: the entry of {path} was changed after the snapshot (its MAC does "
                                 "not match): restore it from a backup or from an untouched baseline")
    text = entry.text
    if isinstance(text, str) and REDACTED not in text and not hmac.compare_digest(str(entry.sha256),
                                                         digest.hexdigest(text.encode("utf-8", "surrogatepass"))):
        raise MailpreflightError(f"{baseline_file}: the text recorded for {path} is not the content it was hashed "
                                 "from: restore it from a backup")
