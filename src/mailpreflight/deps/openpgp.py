"""Who made an OpenPGP detached signature (sa-update's `<rev>.tar.gz.asc`): the issuer key id and fingerprint
of each signature packet, read from hostile bytes — a mirror's answer — without any crypto and without
trusting a single length in it.

RFC 4880 (RFC 9580 for the later versions): ASCII armor (section 6: `-----BEGIN PGP SIGNATURE-----`, header
lines, a blank line, base64, `=` CRC-24, `-----END ...`), or the binary packets themselves; packet headers in
the old format (tag in bits 5-2, 1/2/4-octet or indeterminate length) and the new one (tag in bits 5-0,
one-, two- or five-octet length; partial lengths are not allowed for signatures, section 4.2.2.4); signature
packets (tag 2) version 3 (the key id in the packet) and version 4 (subpackets: 2 creation time, 16 issuer
key id, 33 issuer fingerprint; hashed and unhashed areas). gpg refuses an armor whose CRC does not match
("CRC error"), as measured with gpg 2.2.40: the signature is then not verified at all.

Everything is bounded: at most MAX_INPUT bytes, MAX_PACKETS packets, MAX_SUBPACKETS subpackets a packet.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

MAX_INPUT = 64 * 1024  # a real sa-update .asc is under 1 KiB
MAX_PACKETS = 32
MAX_SUBPACKETS = 64
SIGNATURE_TAG = 2
ARMOR_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
ARMOR_END = b"-----END PGP SIGNATURE-----"
_CRC24_INIT, _CRC24_POLY = 0xB704CE, 0x1864CFB


@dataclass(frozen=True)
class Signature:
    """One signature packet: who made it (as far as it says) and when."""

    version: int
    issuer_keyid: str | None  # 16 upper-case hex digits (subpacket 16, or v3's key id, or the fingerprint's tail)
    issuer_fpr: str | None  # 40 upper-case hex digits (subpacket 33, v4 keys)
    created: int | None  # seconds since the epoch (subpacket 2, v3's field)


@dataclass(frozen=True)
class SignatureFile:
    """What read_signatures() finds in a detached signature: its signature packets, or none and why gpg would not find
    one in it."""

    signatures: tuple[Signature, ...]
    problem: str | None = None  # why gpg will not find a signature in it (None: it parsed)


class _Bad(ValueError):
    pass


def read_signatures(data: bytes) -> SignatureFile:
    """The signature packets of an armored or binary detached signature. Never raises."""
    if len(data) > MAX_INPUT:
        return SignatureFile((), f"larger than {MAX_INPUT} bytes")
    try:
        packets = _dearmor(data) if ARMOR_BEGIN in data else data
        signatures = tuple(_signature(body) for tag, body in _packets(packets) if tag == SIGNATURE_TAG)
    except _Bad as exc:
        return SignatureFile((), str(exc))
    if not signatures:
        return SignatureFile((), "no signature packet in it")
    return SignatureFile(signatures)


def _dearmor(data: bytes) -> bytes:
    start = data.index(ARMOR_BEGIN) + len(ARMOR_BEGIN)
    end = data.find(ARMOR_END, start)
    if end < 0:
        raise _Bad("armor without its END line")
    lines = [line.strip() for line in data[start:end].replace(b"\r", b"").split(b"\n")][1:]  # after BEGIN's line
    while lines and lines[-1] == b"":
        lines.pop()
    if b"" in lines:  # armor headers (Version:, Comment:, ...) end at the first blank line
        lines = lines[lines.index(b"") + 1:]
    checksum = None
    if lines and lines[-1].startswith(b"="):
        checksum = lines.pop()[1:]
    try:
        body = base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad(f"armor is not base64: {exc}") from exc
    if checksum is not None:
        try:
            expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError) as exc:
            raise _Bad("armor checksum is not base64") from exc
        if _crc24(body) != expected:
            raise _Bad(f"armor CRC error ({_crc24(body):06X} - {expected:06X}): gpg refuses it")
    return body


def _crc24(data: bytes) -> int:
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(found) >= MAX_PACKETS:
            raise _Bad(f"more than {MAX_PACKETS} packets")
        header = data[pos]
        if not header & 0x80:
            raise _Bad(f"byte {pos}: not an OpenPGP packet header (0x{header:02x})")
        pos += 1
        if header & 0x40:  # new format
            tag = header & 0x3F
            length, pos = _new_length(data, pos)
        else:
            tag = (header >> 2) & 0x0F
            kind = header & 0x03
            if kind == 3:  # indeterminate: to the end of the data
                length = len(data) - pos
            else:
                size = (1, 2, 4)[kind]
                length, pos = _int(data, pos, size), pos + size
        if pos + length > len(data):
            raise _Bad(f"packet at byte {pos} is cut short ({length} bytes announced, {len(data) - pos} there)")
        found.append((tag, data[pos:pos + length]))
        pos += length
    return found


def _new_length(data: bytes, pos: int) -> tuple[int, int]:
    first = _int(data, pos, 1)
    if first < 192:
        return first, pos + 1
    if first < 224:
        return ((first - 192) << 8) + _int(data, pos + 1, 1) + 192, pos + 2
    if first == 255:
        return _int(data, pos + 1, 4), pos + 5
    raise _Bad("partial body length: not allowed for a signature packet")


def _int(data: bytes, pos: int, size: int) -> int:
    if pos + size > len(data):
        raise _Bad(f"truncated at byte {pos}")
    return int.from_bytes(data[pos:pos + size], "big")


def _signature(body: bytes) -> Signature:
    version = _int(body, 0, 1)
    if version in (2, 3):
        if _int(body, 1, 1) != 5:
            raise _Bad("v3 signature with a hashed length other than 5")
        return Signature(version, body[7:15].hex().upper() if len(body) >= 15 else None, None, _int(body, 3, 4))
    if version != 4:
        return Signature(version, None, None, None)  # v5/v6: gpg 2.2 does not verify them either
    hashed_len = _int(body, 4, 2)
    hashed = body[6:6 + hashed_len]
    unhashed_len = _int(body, 6 + hashed_len, 2)
    unhashed = body[8 + hashed_len:8 + hashed_len + unhashed_len]
    if len(hashed) != hashed_len or len(unhashed) != unhashed_len:
        raise _Bad("signature subpacket area cut short")
    keyid = fpr = None
    created = None
    for kind, value in (*_subpackets(hashed), *_subpackets(unhashed)):
        if kind == 2 and len(value) == 4 and created is None:
            created = int.from_bytes(value, "big")
        elif kind == 16 and len(value) == 8 and keyid is None:
            keyid = value.hex().upper()
        elif kind == 33 and len(value) == 21 and value[0] == 4 and fpr is None:
            fpr = value[1:].hex().upper()
    if keyid is None and fpr is not None:
        keyid = fpr[-16:]  # a v4 key id is the fingerprint's low 64 bits
    return Signature(4, keyid, fpr, created)


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(area):
        if len(found) >= MAX_SUBPACKETS:
            raise _Bad(f"more than {MAX_SUBPACKETS} subpackets")
        first = _int(area, pos, 1)
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            length, pos = ((first - 192) << 8) + _int(area, pos + 1, 1) + 192, pos + 2
        else:
            length, pos = _int(area, pos + 1, 4), pos + 5
        if length == 0 or pos + length > len(area):
            raise _Bad("signature subpacket cut short")
        found.append((area[pos] & 0x7F, area[pos + 1:pos + length]))
        pos += length
    return found
