"""The few DER pieces PKCS#7 key wrapping needs: build and walk TLVs by hand.

Hand-written because Go's pkcs7 (what skopeo uses) emits a non-standard parameter encoding that general
ASN.1 libraries reject; a TLV walker reads it, and the builder reproduces it byte for byte.
"""
from __future__ import annotations

from collections.abc import Iterator

from ctk_shared.errors import InvalidArgument

SEQUENCE, SET, INTEGER, OCTET_STRING, NULL, OID = 0x30, 0x31, 0x02, 0x04, 0x05, 0x06


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(SET, b"".join(items))


def integer(n: int) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(INTEGER, body)


def octets(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def null() -> bytes:
    return b"\x05\x00"


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """(tag, content, position after it) of the TLV at ``pos``; only definite lengths (DER)."""
    try:
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise InvalidArgument("DER: multi-byte tags are not supported")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            if n == 0 or n > 4:
                raise InvalidArgument("DER: indefinite or oversized length")
            length = int.from_bytes(data[pos:pos + n], "big")
            pos += n
    except IndexError:
        raise InvalidArgument("DER: truncated data") from None
    end = pos + length
    if end > len(data):
        raise InvalidArgument("DER: truncated data")
    return tag, data[pos:end], end


def children(content: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(tag, content, the whole encoded element) of each TLV inside a constructed value."""
    pos = 0
    while pos < len(content):
        start = pos
        tag, body, pos = read(content, pos)
        yield tag, body, content[start:pos]


def expect(tag: int, got: tuple[int, bytes, bytes] | None, what: str) -> bytes:
    if got is None or got[0] != tag:
        raise InvalidArgument(f"PKCS7: malformed {what}")
    return got[1]


def decode_oid(content: bytes) -> str:
    if not content:
        raise InvalidArgument("DER: empty OID")
    parts = [min(content[0] // 40, 2)]
    parts.append(content[0] - 40 * parts[0])
    value = 0
    for b in content[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def decode_int(content: bytes) -> int:
    return int.from_bytes(content, "big", signed=True)
