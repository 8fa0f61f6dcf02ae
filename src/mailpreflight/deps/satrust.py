"""Which keys sa-update accepts as the signer of a channel's rules, read from the root, and the verdict on one
`<rev>.tar.gz.asc` (the keyring itself is listed by predict/keyring.py, with the host's gpg on a copy).

sa-update 4.0.1 (Debian 12's /usr/bin/sa-update; line numbers as in that file):
- release-trusted key ids: the built-in `%valid_GPG` (l.161-164: the ASF signing key 5244EC45 and its signing
  subkey 24F434CE, as fingerprints), every `--gpgkey` and every line of `--gpgkeyfile` (`#` comments, blanks
  trimmed) that is 8 or 40 hex digits (l.321-357, is_valid_gpg_key_id l.1922-1925), upper-cased; then the
  last 8 hex digits of each are trusted too (l.396-400). `--gpgkey`/`--gpgkeyfile` turn GPG on even after
  `--nogpg` (l.322, 335); a --gpgkeyfile that cannot be opened dies with the errno as exit status (l.336-337);
- the keyring is `--gpghomedir` (default `<LOCAL_RULES_DIR>/sa-update-keys`, l.179; Debian's
  spamassassin-maint passes /var/lib/spamassassin/sa-update-keys); without `<homedir>/trustdb.gpg` it first
  imports `<DEF_RULES_DIR>/sa-update-pubkey.txt` into it (l.388-391, 1908-1918);
- it runs `gpg --homedir=<homedir> --verify` and takes the longest key id of the first `GOODSIG`/`VALIDSIG`
  lines — in effect the fingerprint of the first signature whose key is in the keyring (l.944-968) — and
  accepts it when that fingerprint, or its last 8 hex digits, is release-trusted (l.978-991); anything else
  (`NO_PUBKEY`, no signature, a CRC error) is "GPG validation failed" and the channel fails (l.993-1022).
  The signing key is what gpg names: a subkey's own fingerprint, not its primary's.
- Measured with the real sa-update 4.0.1 and gpg 2.2.40 (tests/integration/test_netlab_gpg.py): gpg prints
  VALIDSIG for a good signature by an expired or a revoked key too (with EXPKEYSIG/REVKEYSIG instead of
  GOODSIG), so sa-update ACCEPTS rules signed by an expired or revoked trusted key (exit 0).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.openpgp import SignatureFile
from mailpreflight.deps.saupdate import SaUpdateArgs

KEYRING_FILES = ("pubring.kbx", "pubring.gpg", "trustdb.gpg")
KEYRING_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_IMPORT = "sa-update-pubkey.txt"
# gpg.conf options that change which keyring gpg reads: with them the copy we list is not what gpg verifies with
_KEYRING_OPTIONS = re.compile(r"^\s*(keyring|primary-keyring|no-default-keyring|keyboxd|use-keyboxd)\b", re.M)
_VALID_BLOCK = re.compile(r"^my %valid_GPG = \(\s*$(?P<body>.*?)^\);", re.M | re.S)
_VALID_ENTRY = re.compile(r"'([0-9A-Fa-f]+)'\s*=>\s*1")
_KEY_ID = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class TrustedId:
    """A key id sa-update accepts as the signer of rules: 8 or 40 hex digits, and where it is listed (the program's
    built-in list, --gpgkey or a line of --gpgkeyfile)."""

    key: str  # 8 or 40 upper-case hex digits
    source: str  # "/usr/bin/sa-update:162", "--gpgkey", "/etc/mail/spamassassin/keys:3"


@dataclass(frozen=True)
class SaTrust:
    """What decides sa-update's GPG check, as the root shows it before sa-update runs."""

    program: str  # the root's sa-update, whose built-in list was read
    trusted: tuple[TrustedId, ...]
    builtin_read: bool  # %valid_GPG was found in the program: the list is complete
    homedir: str
    keyring: tuple[tuple[str, bytes], ...] = ()  # (file name in the homedir, content)
    imports: tuple[tuple[str, bytes], ...] = ()  # (guest path, content) sa-update imports first
    problem: str | None = None  # why the keyring gpg will use cannot be known from the root
    fatal: tuple[str, str] | None = None  # (exit status, why) when sa-update dies on its GPG options


@dataclass(frozen=True)
class KeyringKey:
    """A primary key or subkey of the keyring, as `gpg --with-colons` lists it."""

    fpr: str
    primary_fpr: str
    validity: str  # gpg's field 2: "e" expired, "r" revoked, ...
    expires: int | None
    uid: str

    @property
    def keyid(self) -> str:
        return self.fpr[-16:]

    @property
    def subkey(self) -> bool:
        return self.fpr != self.primary_fpr


@dataclass(frozen=True)
class Keyring:
    """The keys of sa-update's keyring as the host's gpg lists them (predict/keyring.py), or why it could not."""

    keys: tuple[KeyringKey, ...]
    problem: str | None = None  # it could not be listed

    def find(self, keyid: str | None, fpr: str | None) -> KeyringKey | None:
        for key in self.keys:
            if (fpr and key.fpr == fpr) or (not fpr and keyid and key.keyid == keyid):
                return key
        return None


@dataclass(frozen=True)
class GpgOutcome:
    """What sa-update's GPG check makes of one signature file: trusted, untrusted or unknown, why, a warning for an
    expired or revoked signer, and the signer's fingerprint when trusted."""

    result: str  # "trusted", "untrusted", "unknown"
    reason: str
    warning: str | None = None  # accepted, but by a key that is expired or revoked
    signer: str | None = None  # the fingerprint of the key gpg verifies with


def valid_key_id(word: str) -> bool:
    """is_valid_gpg_key_id (l.1922-1925): 8 or 40 hex digits."""
    return bool(_KEY_ID.fullmatch(word)) and len(word) in (8, 40)


def read_trust(fs: RootFS, program: str, args: SaUpdateArgs, homedir: str, def_rules_dir: str | None) -> SaTrust:
    """`program`: the root's sa-update (its built-in key list is read from it); `homedir`: --gpghomedir or its
    default; `def_rules_dir`: the program's $DEF_RULES_DIR (where sa-update-pubkey.txt is)."""
    text = fs.read_text(program) or ""
    trusted: list[TrustedId] = []
    block = _VALID_BLOCK.search(text)
    if block:
        first_line = text.count("\n", 0, block.start("body")) + 1
        for offset, line in enumerate(block.group("body").splitlines()):
            for key in _VALID_ENTRY.findall(line):
                trusted.append(TrustedId(key.upper(), f"{program}:{first_line + offset}"))
    trusted += [TrustedId(k.upper(), "--gpgkey") for k in args.gpg_keys if valid_key_id(k)]
    fatal = None
    if args.gpgkeyfile is not None:
        keyfile = args.gpgkeyfile
        content = fs.read_text(keyfile)
        if fs.chase(keyfile) is None:
            fatal = ("2", f"--gpgkeyfile {keyfile} does not exist: sa-update dies at once ('cannot open "
                          f"{keyfile} for reading: No such file or directory', l.336-337)")
        elif fs.is_dir(keyfile):
            fatal = ("21", f"--gpgkeyfile {keyfile} is a directory: sa-update dies at once ('cannot close "
                           f"{keyfile}: Is a directory', l.356)")
        for number, line in enumerate((content or "").splitlines(), 1):
            word = line.split("#", 1)[0].strip()
            if word and valid_key_id(word):
                trusted.append(TrustedId(word.upper(), f"{keyfile}:{number}"))
    keyring: list[tuple[str, bytes]] = []
    problem = None
    for name in KEYRING_FILES:
        path = posixpath.join(homedir, name)
        if fs.chase(path) is None:
            continue
        try:
            keyring.append((name, fs.read_bytes(path, KEYRING_MAX_BYTES)))
        except OSError as exc:
            problem = f"{path} cannot be read ({exc.strerror or exc})"
    conf = fs.read_text(posixpath.join(homedir, "gpg.conf")) or ""
    option = _KEYRING_OPTIONS.search(conf)
    if option:
        line = conf.count("\n", 0, option.start()) + 1
        problem = (f"{posixpath.join(homedir, 'gpg.conf')}:{line} sets {option.group(1)}: other keyrings than "
                   "the homedir's")
    imports: list[tuple[str, bytes]] = []
    if not any(name == "trustdb.gpg" for name, _ in keyring) and def_rules_dir:
        default = posixpath.join(def_rules_dir, DEFAULT_IMPORT)
        data = fs.read_text(default)
        if data is not None:
            imports.append((default, data.encode()))
    return SaTrust(program, tuple(trusted), block is not None, homedir, tuple(keyring), tuple(imports), problem,
                   fatal)


def judge(signed: SignatureFile, trust: SaTrust, keyring: Keyring, url: str) -> GpgOutcome:
    """What sa-update's GPG check makes of the signature file fetched from `url`."""
    name = url.rsplit("/", 1)[-1]
    if signed.problem is not None:
        return GpgOutcome("untrusted", f"{name} holds no signature gpg can read ({signed.problem}): 'GPG "
                                       "validation failed', the channel fails")
    if all(s.version not in (3, 4) for s in signed.signatures):
        versions = ", ".join(sorted({str(s.version) for s in signed.signatures}))
        return GpgOutcome("unknown", f"{name}: version {versions} signatures are not read here")
    if trust.problem or keyring.problem:
        return GpgOutcome("unknown", f"sa-update's keyring {trust.homedir} is not known: "
                                     f"{trust.problem or keyring.problem}")
    issuers = [who for s in signed.signatures if (who := s.issuer_fpr or s.issuer_keyid)]
    signer = next((key for s in signed.signatures if (key := keyring.find(s.issuer_keyid, s.issuer_fpr))), None)
    where = f"{trust.homedir}" + (f" (with {', '.join(p for p, _ in trust.imports)} imported first)"
                                  if trust.imports else "")
    if signer is None:
        return GpgOutcome("untrusted", f"{name} is signed by {', '.join(issuers) or 'an unnamed key'}, which is "
                                       f"not in sa-update's keyring {where}: gpg says NO_PUBKEY, 'GPG validation "
                                       "failed', the channel fails")
    described = f"{signer.fpr} ({signer.uid or 'no user id'}{', a subkey' if signer.subkey else ''})"
    matches = [t for t in trust.trusted if t.key[-8:] == signer.fpr[-8:]]
    if matches:
        state = {"e": "expired", "r": "revoked"}.get(signer.validity)
        warning = None
        if state:
            warning = (f"the rules are signed by {described}, a key that is {state} — sa-update 4.0.1 accepts it "
                       "all the same (it reads gpg's VALIDSIG, which gpg prints for expired and revoked keys too)")
        return GpgOutcome("trusted", f"{name} is signed by {described}, release-trusted by {matches[0].source}",
                          warning, signer.fpr)
    if not trust.builtin_read:
        return GpgOutcome("unknown", f"{name} is signed by {described}; sa-update's built-in list could not be read "
                                     f"from {trust.program}")
    hint = ""
    primary = [t for t in trust.trusted if signer.subkey and t.key[-8:] == signer.primary_fpr[-8:]]
    if primary:
        hint = (f"; {primary[0].source} trusts its primary key {primary[0].key}, but sa-update compares the key "
                f"that made the signature: trust {signer.fpr}")
    return GpgOutcome("untrusted", f"{name} is signed by {described}, which is in the keyring but not release-"
                                   f"trusted (not in {trust.program}'s list, --gpgkey or --gpgkeyfile){hint}: "
                                   "'GPG validation failed', the channel fails")
