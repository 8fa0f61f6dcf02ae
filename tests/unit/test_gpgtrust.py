"""sa-update's GPG trust, piece by piece: the OpenPGP signature reader (real signatures made by gpg, the real
ASF key's self-signatures, hostile bytes), what the real sa-update of Debian's spamassassin package trusts,
the keyring listed by the host's gpg on a copy, and the verdict — the same rules the namespace lab checks
against the real sa-update (tests/integration/test_netlab_gpg.py)."""

from __future__ import annotations

import base64
import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import debcache
from mailpreflight.access.rootfs import RootFS
from mailpreflight.deps.openpgp import MAX_PACKETS, SignatureFile, read_signatures
from mailpreflight.deps.satrust import Keyring, SaTrust, judge, read_trust
from mailpreflight.deps.saupdate import parse_args
from mailpreflight.predict.keyring import list_keyring
from mailroots import write

pytestmark = pytest.mark.skipif(subprocess.run(["which", "gpg"], capture_output=True).returncode != 0,
                                reason="gpg not installed (apt: gpg)")
KEYS = "/var/lib/spamassassin/sa-update-keys"
ASF_PRIMARY = "5E541DC959CB8BAC7C78DFDC4056A61A5244EC45"
ASF_SUBKEY = "0C2B1D7175B852C64B3CDC716C55397824F434CE"
DAY = 24 * 3600
DATA = b"rules tarball stand-in\n"


def gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    return subprocess.run(cmd, check=True, capture_output=True, input=data, timeout=60).stdout


def fingerprints(home: Path) -> list[str]:
    listing = gpg(home, "--with-colons", "--with-subkey-fingerprint", "--list-keys").decode()
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]


@dataclass
class Signer:
    home: Path
    fpr: str  # primary
    signing: str  # the key that signs (a subkey for "subkey")
    pubkey: bytes
    asc: bytes  # an armored detached signature of DATA
    binary: bytes  # the same, unarmored


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Signer]]:
    base = tmp_path_factory.mktemp("k")  # short: gpg-agent's socket path
    now = int(time.time())
    made: dict[str, Signer] = {}
    try:
        for name in ("good", "other", "revoked", "expired", "subkey"):
            home = base / name
            home.mkdir(mode=0o700)
            if name == "expired":  # made 3 days ago, expired 2 days ago; it signs 2.5 days ago
                gpg(home, f"--faked-system-time={now - 3 * DAY}!", "--quick-gen-key", f"{name} <{name}@x>",
                    "ed25519", "sign", "1d")
            elif name == "subkey":  # certify-only primary, signing subkey: like the ASF key
                gpg(home, "--quick-gen-key", f"{name} <{name}@x>", "ed25519", "cert", "never")
                gpg(home, "--quick-add-key", fingerprints(home)[0], "ed25519", "sign", "never")
            else:
                gpg(home, "--quick-gen-key", f"{name} <{name}@x>", "ed25519", "sign", "never")
            fprs = fingerprints(home)
            when = [f"--faked-system-time={now - 5 * DAY // 2}!"] if name == "expired" else []
            sign = [*when, "--local-user", fprs[0], "--detach-sign"]
            made[name] = Signer(home, fprs[0], fprs[-1], gpg(home, "--armor", "--export", fprs[0]),
                                gpg(home, *sign, "--armor", "--comment", "a header line", data=DATA),
                                gpg(home, *sign, data=DATA))
        yield made
    finally:
        for signer in made.values():
            subprocess.run(["gpgconf", "--homedir", str(signer.home), "--kill", "all"], capture_output=True)


def revocation(signer: Signer) -> bytes:
    text = next((signer.home / "openpgp-revocs.d").glob("*.rev")).read_text()
    return text.replace(":-----BEGIN", "-----BEGIN").encode()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's spamassassin package, unpacked once."""
    return debcache.extract(tmp_path_factory.mktemp("deb") / "root", "spamassassin")


PACKAGE_FILES = ("usr/bin/sa-update", "usr/share/spamassassin/sa-update-pubkey.txt")


def sa_root(package: Path, tmp_path: Path, keyring: dict[str, Signer], *extra: bytes, gpgkeys: tuple[str, ...] = (),
            keyfile: str | None = None) -> tuple[RootFS, SaTrust]:
    """The real sa-update and sa-update-pubkey.txt of Debian's spamassassin package, the keyring filled with
    gpg --import (as sa-update --import does), and what sa-update run with `gpgkeys` trusts."""
    root = tmp_path / "root"
    for name in PACKAGE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / name, root / name)
    home = root / KEYS.lstrip("/")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for blob in (*(s.pubkey for s in keyring.values()), *extra):
        # no agent (public keys need none; its socket path would be too long here): gpg exits 2 for that alone
        done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-autostart", "--import"], input=blob,
                              capture_output=True, timeout=60)
        assert b"imported: 1" in done.stderr or b"new key revocations: 1" in done.stderr, done.stderr
    fs = RootFS(str(root))
    argv = ["sa-update", *(w for k in gpgkeys for w in ("--gpgkey", k)), "--gpghomedir", KEYS,
            *(["--gpgkeyfile", keyfile] if keyfile else [])]
    return fs, read_trust(fs, "/usr/bin/sa-update", parse_args(argv), KEYS, "/usr/share/spamassassin")


def verdict(trust: SaTrust, asc: bytes) -> tuple[str, str, str | None]:
    keyring = list_keyring(trust)
    assert keyring.problem is None, keyring.problem
    outcome = judge(read_signatures(asc), trust, keyring, "http://m/1913500.tar.gz.asc")
    return outcome.result, outcome.reason, outcome.warning


# -- the signature reader ------------------------------------------------------------------------------------

def test_reads_gpg_signatures_armored_and_binary(signers: dict[str, Signer]) -> None:
    good = signers["good"]
    assert good.asc.startswith(b"-----BEGIN PGP SIGNATURE-----\nComment: a header line\n")
    for data in (good.asc, good.binary):
        [signature] = read_signatures(data).signatures
        assert (signature.version, signature.issuer_fpr, signature.issuer_keyid) == (4, good.fpr, good.fpr[-16:])
        assert abs((signature.created or 0) - time.time()) < 3600
    [by_subkey] = read_signatures(signers["subkey"].asc).signatures
    assert by_subkey.issuer_fpr == signers["subkey"].signing != signers["subkey"].fpr


def test_reads_the_real_asf_key_self_signatures(package: Path) -> None:
    """sa-update-pubkey.txt (spamassassin .deb): GnuPG 1.4 signatures of 2005, issuer only in subpacket 16."""
    text = (package / "usr/share/spamassassin/sa-update-pubkey.txt").read_text()
    armored = text[text.index("-----BEGIN PGP PUBLIC KEY BLOCK-----"):]
    body = armored.split("\n\n", 1)[1].split("\n=", 1)[0]
    signatures = read_signatures(base64.b64decode("".join(body.split()))).signatures
    assert signatures and all(s.version == 4 for s in signatures)
    assert {s.issuer_keyid for s in signatures} == {ASF_PRIMARY[-16:]}
    assert all(s.issuer_fpr is None for s in signatures)


def test_two_signatures_in_order(signers: dict[str, Signer]) -> None:
    both = signers["other"].binary + signers["good"].binary
    assert [s.issuer_fpr for s in read_signatures(both).signatures] == [signers["other"].fpr, signers["good"].fpr]


def test_what_gpg_would_not_accept(signers: dict[str, Signer]) -> None:
    asc = signers["good"].asc
    lines = asc.split(b"\n")
    crc = next(i for i, line in enumerate(lines) if line.startswith(b"="))
    broken = b"\n".join([*lines[:crc], b"=AAAA", *lines[crc + 1:]])
    assert "CRC error" in (read_signatures(broken).problem or "")  # gpg 2.2: "CRC error", NODATA
    assert "not an OpenPGP packet" in (read_signatures(b"<html>404 Not Found</html>").problem or "")
    assert read_signatures(b"").problem == "no signature packet in it"
    assert "cut short" in (read_signatures(signers["good"].binary[:-5]).problem or "")
    assert "END" in (read_signatures(asc[:60]).problem or "")
    assert read_signatures(b"\xc0" * 200).problem  # new-format headers, tag 0, lengths from nowhere
    many = b"\xcd\x00" * (MAX_PACKETS + 1)  # empty literal-data packets: bounded
    assert "more than" in (read_signatures(many).problem or "")


def test_version_3_signature_key_id() -> None:
    """RFC 4880 5.2.2: version 3 carries the key id itself (gpg no longer makes them; PGP 2/5 did)."""
    body = bytes([3, 5, 0]) + (1136000000).to_bytes(4, "big") + bytes.fromhex("4056A61A5244EC45") + bytes([1, 2])
    body += b"\x12\x34" + b"\x00\x08\xff"  # hash prefix, an MPI
    [signature] = read_signatures(bytes([0x88, len(body)]) + body).signatures
    assert (signature.version, signature.issuer_keyid, signature.created) == (3, "4056A61A5244EC45", 1136000000)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(read_signatures(data), SignatureFile)


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_mutated_real_signatures_never_raise(signers: dict[str, Signer], data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from([signers["good"].binary, signers["subkey"].asc])))
    for _ in range(data.draw(st.integers(1, 6))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    assert isinstance(read_signatures(bytes(original[:cut])), SignatureFile)


# -- what sa-update trusts -----------------------------------------------------------------------------------

def test_builtin_keys_read_from_the_real_program(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    fs, trust = sa_root(package, tmp_path, {"other": signers["other"]}, gpgkeys=("abcd1234", "nothex!!", "0123456789"))
    assert trust.builtin_read
    assert [(t.key, t.source) for t in trust.trusted] == [
        (ASF_SUBKEY, "/usr/bin/sa-update:162"), (ASF_PRIMARY, "/usr/bin/sa-update:163"),
        ("ABCD1234", "--gpgkey")]  # 8 or 40 hex digits, upper-cased; the rest skipped (l.324-330)
    assert trust.imports == ()  # the keyring has a trustdb.gpg: nothing imported first
    empty = tmp_path / "root" / KEYS.lstrip("/") / "trustdb.gpg"
    empty.unlink()
    fresh = read_trust(fs, "/usr/bin/sa-update", parse_args(["sa-update"]), KEYS, "/usr/share/spamassassin")
    assert [path for path, _ in fresh.imports] == ["/usr/share/spamassassin/sa-update-pubkey.txt"]


def test_gpgkeyfile(package: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "/etc/mail/sa-keys", "# channel keys\n  DEADBEEF  # the lab\n\nnot-a-key\n" + "a" * 40 + "\n")
    _, trust = sa_root(package, tmp_path, {}, keyfile="/etc/mail/sa-keys")
    assert [(t.key, t.source) for t in trust.trusted][2:] == [("DEADBEEF", "/etc/mail/sa-keys:2"),
                                                              ("A" * 40, "/etc/mail/sa-keys:5")]
    _, missing = sa_root(package, tmp_path / "2", {}, keyfile="/etc/mail/none")
    assert missing.fatal is not None and missing.fatal[0] == "2"  # measured: the real sa-update exits 2 (ENOENT)
    assert parse_args(["sa-update", "--nogpg", "--gpgkeyfile", "/x"]).gpg  # l.335: it turns GPG back on
    assert parse_args(["sa-update", "--nogpg", "--gpgkey", "DEADBEEF"]).gpg
    assert not parse_args(["sa-update", "--checkonly"]).gpg and not parse_args(["sa-update", "--nogpg"]).gpg


def test_gpg_conf_with_other_keyrings_is_unknown(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    root = tmp_path / "root"
    write(root, KEYS + "/gpg.conf", "# mine\nkeyring /srv/keys/extra.gpg\n")
    _, trust = sa_root(package, tmp_path, {"good": signers["good"]}, gpgkeys=(signers["good"].fpr,))
    outcome = judge(read_signatures(signers["good"].asc), trust, list_keyring(trust), "http://m/1.tar.gz.asc")
    assert outcome.result == "unknown" and f"{KEYS}/gpg.conf:2 sets keyring" in outcome.reason


# -- the verdict, on keyrings listed by the host's gpg -------------------------------------------------------

def test_trusted_by_gpgkey(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    good = signers["good"]
    _, trust = sa_root(package, tmp_path, {"good": good}, gpgkeys=(good.fpr,))
    result, reason, warning = verdict(trust, good.asc)
    assert (result, warning) == ("trusted", None) and "release-trusted by --gpgkey" in reason
    _, short = sa_root(package, tmp_path / "2", {"good": good}, gpgkeys=(good.fpr[-8:].lower(),))  # 8 digits suffice
    assert verdict(short, good.asc)[0] == "trusted"


def test_in_the_keyring_but_not_trusted(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    good, other = signers["good"], signers["other"]
    _, trust = sa_root(package, tmp_path, {"good": good, "other": other}, gpgkeys=(good.fpr,))
    result, reason, _ = verdict(trust, signers["other"].asc)
    assert result == "untrusted" and "in the keyring but not release-trusted" in reason


def test_trusted_but_not_in_the_keyring(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    fs, trust = sa_root(package, tmp_path, {"other": signers["other"]}, gpgkeys=(signers["good"].fpr,))
    result, reason, _ = verdict(trust, signers["good"].asc)
    assert result == "untrusted" and "NO_PUBKEY" in reason
    (Path(fs.root) / KEYS.lstrip("/") / "trustdb.gpg").unlink()  # sa-update imports the ASF key first: still not
    fresh = read_trust(fs, "/usr/bin/sa-update", parse_args(["sa-update", "--gpgkey", signers["good"].fpr]), KEYS,
                       "/usr/share/spamassassin")
    keyring = list_keyring(fresh)
    assert {ASF_PRIMARY, ASF_SUBKEY} <= {k.fpr for k in keyring.keys}
    assert judge(read_signatures(signers["good"].asc), fresh, keyring, "http://m/1.asc").result == "untrusted"


def test_subkey_signature_needs_the_subkey_trusted(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    subkey = signers["subkey"]
    _, primary = sa_root(package, tmp_path, {"subkey": subkey}, gpgkeys=(subkey.fpr,))
    result, reason, _ = verdict(primary, subkey.asc)
    assert result == "untrusted" and f"trust {subkey.signing}" in reason and "a subkey" in reason
    _, own = sa_root(package, tmp_path / "2", {"subkey": subkey}, gpgkeys=(subkey.signing,))
    assert verdict(own, subkey.asc)[0] == "trusted"


def test_first_signature_with_a_key_decides(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    """Measured: sa-update takes the first VALIDSIG; a trusted second signature does not help."""
    good, other = signers["good"], signers["other"]
    _, trust = sa_root(package, tmp_path, {"good": good, "other": other}, gpgkeys=(good.fpr,))
    assert verdict(trust, other.binary + good.binary)[0] == "untrusted"
    _, only_good = sa_root(package, tmp_path / "2", {"good": good}, gpgkeys=(good.fpr,))
    assert verdict(only_good, other.binary + good.binary)[0] == "trusted"  # no key for the first: skipped


def test_expired_and_revoked_keys_are_accepted_with_a_warning(package: Path, tmp_path: Path,
                                                              signers: dict[str, Signer]) -> None:
    expired, revoked = signers["expired"], signers["revoked"]
    _, trust = sa_root(package, tmp_path, {"expired": expired}, gpgkeys=(expired.fpr,))
    result, _, warning = verdict(trust, expired.asc)
    assert result == "trusted" and warning and "a key that is expired" in warning
    _, trust = sa_root(package, tmp_path / "2", {"revoked": revoked}, revocation(revoked), gpgkeys=(revoked.fpr,))
    result, _, warning = verdict(trust, revoked.asc)
    assert result == "trusted" and warning and "a key that is revoked" in warning


def test_keyring_listing_leaves_nothing_behind(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    fs, trust = sa_root(package, tmp_path, {"good": signers["good"]})
    home = Path(fs.root) / KEYS.lstrip("/")
    before = sorted(p.name for p in home.iterdir())
    mtimes = {p.name: p.stat().st_mtime_ns for p in home.iterdir()}
    keyring = list_keyring(trust)
    assert [k.fpr for k in keyring.keys] == [signers["good"].fpr]
    assert sorted(p.name for p in home.iterdir()) == before  # the guest's keyring is only read
    assert {p.name: p.stat().st_mtime_ns for p in home.iterdir()} == mtimes
    agents = [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"mailpreflight-gpg-" in _cmdline(p)]
    assert agents == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_unknown_without_the_builtin_list(signers: dict[str, Signer]) -> None:
    trust = SaTrust("/usr/bin/sa-update", (), False, KEYS)
    keyring = Keyring(())
    assert judge(read_signatures(signers["good"].asc), trust, keyring, "u").result == "untrusted"  # NO_PUBKEY
    listed = Keyring((), "gpg is not installed on this host")
    assert judge(read_signatures(signers["good"].asc), trust, listed, "u").result == "unknown"


# -- mirrors that do not agree ----------------------------------------------------------------------------------

def test_mirrors_serving_different_signers(package: Path, tmp_path: Path, signers: dict[str, Signer]) -> None:
    """One mirror's rules are signed by the trusted key, the other's by another: sa-update fails the channel
    whenever it picks the second one (it does not try the next mirror after a bad signature). A third serves an
    empty signature file."""
    from mailpreflight.deps.saupdate import Mirror, plan
    from mailpreflight.model import FoundCommand, Source
    from mailpreflight.predict.saupdate_live import SaUpdateProbe
    from mailpreflight.probes.dns import ResolverConfig
    from mailpreflight.probes.runner import ProbeRunner

    good, other = signers["good"], signers["other"]
    docroot = tmp_path / "www"
    for mirror, asc in (("m1", good.asc), ("m2", other.asc), ("m3", b"")):
        (docroot / mirror).mkdir(parents=True)
        (docroot / mirror / "1913500.tar.gz").write_bytes(DATA)
        (docroot / mirror / "1913500.tar.gz.asc").write_bytes(asc)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(docroot), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fs, trust = sa_root(package, tmp_path, {"good": good, "other": other}, gpgkeys=(good.fpr,))
    command = FoundCommand("sa-update", ("sa-update", "--gpgkey", good.fpr, "--gpghomedir", KEYS), "ExecStartPre",
                           Source("/etc/systemd/system/x.service", 1), True)
    runner = ProbeRunner(30.0, probe_timeout=5.0)
    try:
        probe = SaUpdateProbe(plan(command, fs, "4.000001"), runner, ResolverConfig(("127.0.0.1",), "test"), 5.0, trust)
        channel = probe.plan.channels[0]
        port = server.server_address[1]
        mirrors = [Mirror(f"http://127.0.0.1:{port}/{m}", 1, i) for i, m in enumerate(("m1", "m2", "m3"), 1)]
        both = probe._mirrors(channel, mirrors[:2], 1913500, 0.0, "test")
        alone = probe._mirrors(channel, mirrors[:1], 1913500, 0.0, "test")
        empty = probe._mirrors(channel, [mirrors[0], mirrors[2]], 1913500, 0.0, "test")
    finally:
        runner.close()
        server.shutdown()
        server.server_close()
    assert (both.result, both.alternative) == ("failed", "updated")
    assert f"whenever it picks http://127.0.0.1:{port}/m2" in both.reason
    assert (alone.result, alone.alternative) == ("updated", None)
    # l.813-819: an empty .asc is no .asc: sa-update sleeps 2 s and takes the next mirror
    assert (empty.result, empty.dead_mirrors) == ("updated", 1) and "1913500.tar.gz.asc: empty" in empty.reason
