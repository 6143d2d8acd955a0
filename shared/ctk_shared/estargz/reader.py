"""Reading eStargz: :class:`Reader` parses a blob's footer and TOC, verifies the TOC digest and reads or verifies
chunks (for the tests and for the lazy snapshotter)."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .. import limits
from ..errors import IntegrityError, InvalidArgument
from .format import (
    FOOTER_SIZE,
    LEGACY_FOOTER_SIZE,
    MAX_TOC_SIZE,
    NO_PREFETCH_LANDMARK,
    PREFETCH_LANDMARK,
    TAR_BLOCK,
    TOC_TAR_NAME,
    clean_name,
)


# --- reading and verifying -----------------------------------------------------------------------
def parse_footer(footer: bytes) -> tuple[int, int]:
    """(TOC offset, footer size) from the last bytes of a blob (51-byte eStargz or 47-byte legacy stargz)."""
    errors: list[str] = []
    if len(footer) >= FOOTER_SIZE:
        f = footer[-FOOTER_SIZE:]
        try:
            extra = _gzip_extra(f)
            if extra[:2] != b"SG":
                raise ValueError(f"subfield IDs {extra[:2]!r}, want b'SG'")
            if struct.unpack("<H", extra[2:4])[0] != 22 or len(extra) != 26:
                raise ValueError("subfield length is not 22")
            return _toc_offset(extra[4:]), FOOTER_SIZE
        except ValueError as e:
            errors.append(f"eStargz footer: {e}")
    if len(footer) >= LEGACY_FOOTER_SIZE:
        f = footer[-LEGACY_FOOTER_SIZE:]
        try:
            extra = _gzip_extra(f)
            if len(extra) != 22:
                raise ValueError("extra field is not 22 bytes")
            return _toc_offset(extra), LEGACY_FOOTER_SIZE
        except ValueError as e:
            errors.append(f"legacy footer: {e}")
    raise InvalidArgument("not an eStargz blob: " + ("; ".join(errors) or "too small for a footer"))


def _gzip_extra(member: bytes) -> bytes:
    if member[:3] != b"\x1f\x8b\x08" or not member[3] & 0x04:
        raise ValueError("no gzip header with an extra field")
    xlen = struct.unpack("<H", member[10:12])[0]
    extra = member[12:12 + xlen]
    z = zlib.decompressobj(31)
    if z.decompress(member) or not z.eof:
        raise ValueError("footer member is not empty")
    return extra


def _toc_offset(sub: bytes) -> int:
    if sub[16:] != b"STARGZ":
        raise ValueError("STARGZ magic missing")
    try:
        return int(sub[:16].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"bad TOC offset {sub[:16]!r}") from None


def decompress_member(data: bytes, limit: int = -1) -> bytes:
    """The decompressed bytes of the gzip member at the start of ``data`` (at most ``limit`` if ≥ 0)."""
    z = zlib.decompressobj(31)
    try:
        if limit < 0:
            return z.decompress(data)
        out = z.decompress(data, limit)
        return out
    except zlib.error as e:
        raise IntegrityError(f"corrupt gzip member: {e}") from None


@dataclass
class TOC:
    """An eStargz blob's table of contents: its entries, the digest of its JSON, and where its member starts."""

    version: int
    entries: list[dict[str, Any]]
    digest: str  # sha256 of the TOC JSON bytes
    offset: int  # compressed offset of the TOC member
    footer_size: int
    json_bytes: bytes


def parse_toc_member(member: bytes, toc_offset: int = 0, footer_size: int = FOOTER_SIZE) -> TOC:
    """Parse a compressed TOC member (the bytes between the TOC offset and the footer)."""
    z = zlib.decompressobj(31)
    try:
        raw = z.decompress(member, MAX_TOC_SIZE + 3 * TAR_BLOCK)
    except zlib.error as e:
        raise IntegrityError(f"TOC gzip member is corrupt: {e}") from None
    try:
        hdr = tarfile.TarInfo.frombuf(raw[:TAR_BLOCK], "utf-8", "surrogateescape")
    except tarfile.TarError as e:
        raise InvalidArgument(f"no tar header in the TOC member: {e}") from None
    if hdr.name != TOC_TAR_NAME:
        raise InvalidArgument(f"TOC tar entry is named {hdr.name!r}, expected {TOC_TAR_NAME!r}")
    if hdr.size > MAX_TOC_SIZE or len(raw) < TAR_BLOCK + hdr.size:
        raise InvalidArgument(f"TOC of {hdr.size} bytes is truncated or too large")
    data = raw[TAR_BLOCK:TAR_BLOCK + hdr.size]
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"TOC is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise InvalidArgument("TOC has no entries list")
    return TOC(int(doc.get("version", 0)), doc["entries"], "sha256:" + hashlib.sha256(data).hexdigest(),
               toc_offset, footer_size, bytes(data))


TAIL_GUESS = 32 << 10  # bytes read from a blob's end at first: the footer and, for most layers, the whole TOC


def toc_location(footer: bytes, size: int) -> tuple[int, int]:
    """(TOC offset, footer size) from the last bytes of a ``size``-byte blob, the offset checked to lie inside the
    blob and the TOC member it implies checked against the TOC cap (the footer is the blob maker's word)."""
    toc_offset, fsize = parse_footer(footer)
    if not 0 <= toc_offset < size - fsize:
        raise InvalidArgument(f"footer points at TOC offset {toc_offset}, outside the {size}-byte blob")
    limits.check_declared("TOC", size - fsize - toc_offset, f"eStargz TOC member at offset {toc_offset}")
    return toc_offset, fsize


def read_tail(read_at: Any, size: int, guess: int = TAIL_GUESS) -> bytes:
    """The blob's bytes from the start of its TOC member to its end (TOC and footer): one read of the last
    ``guess`` bytes, which hold the whole TOC of most layers, and a second read of the part before them only when
    the footer says the TOC starts earlier. A lazy mount of a layer costs one round trip, not three."""
    start = max(0, size - max(guess, FOOTER_SIZE))
    tail = bytes(read_at(start, size - start))
    if len(tail) != size - start:
        raise IntegrityError(f"short read: {len(tail)} of the last {size - start} bytes of the blob")
    toc_offset, _ = toc_location(tail, size)
    if toc_offset >= start:
        return tail[toc_offset - start:]
    head = bytes(read_at(toc_offset, start - toc_offset))
    if len(head) != start - toc_offset:
        raise IntegrityError(f"short read: {len(head)} of the {start - toc_offset} bytes at TOC offset {toc_offset}")
    return head + tail


class Reader:
    """Random access to an eStargz blob through ``read_at(offset, size) -> bytes`` (a file, or HTTP Range).

    Opening parses the footer and the TOC (:func:`read_tail`, or ``tail``: those bytes, from the TOC offset to
    the end, as someone fetched them already); with ``toc_digest`` the TOC must match it (as the snapshotter
    requires the layer annotation), whoever fetched it. Chunk reads are verified against their ``chunkDigest``.
    """

    def __init__(self, read_at: Any, size: int, toc_digest: str | None = None, tail: bytes | None = None) -> None:
        self._read_at = read_at
        self.size = size
        if tail is None:
            tail = read_tail(read_at, size)
        toc_offset, fsize = toc_location(tail, size)
        if toc_offset != size - len(tail):
            raise InvalidArgument(f"the TOC tail given is {len(tail)} bytes, the footer puts the TOC at {toc_offset} "
                                  f"of {size}")
        self.toc = parse_toc_member(tail[:len(tail) - fsize], toc_offset, fsize)
        if toc_digest is not None and self.toc.digest != toc_digest:
            raise IntegrityError(f"TOC digest is {self.toc.digest}, the layer annotation says {toc_digest}")
        self._index()

    @classmethod
    def from_file(cls, f: IO[bytes], toc_digest: str | None = None) -> Reader:
        f.seek(0, os.SEEK_END)
        size = f.tell()

        def read_at(off: int, n: int) -> bytes:
            f.seek(off)
            return f.read(n)

        return cls(read_at, size, toc_digest)

    @classmethod
    def from_bytes(cls, blob: bytes, toc_digest: str | None = None) -> Reader:
        return cls(lambda off, n: blob[off:off + n], len(blob), toc_digest)

    def _index(self) -> None:
        """Fill in what the TOC leaves implicit (chunk names, sizes) and the member boundaries."""
        self.by_name: dict[str, dict[str, Any]] = {}
        self.chunks: dict[str, list[dict[str, Any]]] = {}
        last_name, last_reg = "", None
        offsets: set[int] = set()
        seen: set[tuple[int, int]] = set()
        for e in self.toc.entries:
            if not isinstance(e, dict) or not isinstance(e.get("name", ""), str):
                raise InvalidArgument(f"TOC entry is malformed: {e!r}")
            t = e.get("type")
            if t == "chunk":
                e["_name"] = last_name
                if last_reg is None:
                    raise InvalidArgument("TOC has a chunk entry before any regular file")
                self.chunks.setdefault(last_name, []).append(e)
            else:
                e["_name"] = last_name = clean_name(e.get("name", ""))
                self.by_name[last_name] = e
                if t == "reg":
                    last_reg = e
                    self.chunks[last_name] = [e] if e.get("size") else []
            if t in ("reg", "chunk") and (t == "chunk" or e.get("size")):
                off, inner = int(e.get("offset", 0)), int(e.get("innerOffset", 0))
                if (off, inner) in seen:
                    raise InvalidArgument(f"TOC offset {off} is used twice")
                if not 0 <= off < self.toc.offset:
                    raise InvalidArgument(f"TOC entry {e.get('name')!r} has offset {off} outside the blob data")
                seen.add((off, inner))
                offsets.add(off)
                size = int((last_reg or {}).get("size", 0))
                e["_chunk_size"] = int(e.get("chunkSize") or 0) or size - int(e.get("chunkOffset", 0))
        ends = sorted(offsets) + [self.toc.offset]
        nxt = {a: b for a, b in zip(ends, ends[1:])}
        for lst in self.chunks.values():
            for c in lst:
                c["_end"] = nxt[int(c["offset"])]

    # -- queries ------------------------------------------------------------------------------------
    def lookup(self, name: str) -> dict[str, Any] | None:
        return self.by_name.get(clean_name(name))

    def names(self) -> list[str]:
        return list(self.by_name)

    def landmark(self) -> str | None:
        """Which landmark the layer has, if any, and so whether prefetching applies."""
        for n in (PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK):
            if n in self.by_name:
                return n
        return None

    def read_raw(self, offset: int, length: int) -> bytes:
        """Blob bytes as stored (compressed), e.g. many chunks' members in one request; unverified."""
        return bytes(self._read_at(offset, length))

    def prefetch_range(self) -> tuple[int, int]:
        """The byte range a snapshotter prefetches: up to the ``.prefetch.landmark`` member, else nothing."""
        e = self.by_name.get(PREFETCH_LANDMARK)
        return (0, int(e["offset"])) if e else (0, 0)

    def read_chunk(self, chunk: dict[str, Any], member: bytes | None = None) -> bytes:
        """One chunk's bytes, verified against its chunkDigest (IntegrityError otherwise). ``member``: the
        chunk's gzip member (blob bytes ``offset`` to ``_end``) when the caller fetched it already."""
        off, end = int(chunk["offset"]), int(chunk["_end"])
        want = chunk.get("chunkDigest")
        if not want:
            raise IntegrityError(f"{chunk['_name']}: chunk at {off} has no chunkDigest")
        inner = int(chunk.get("innerOffset", 0))
        n = int(chunk["_chunk_size"])
        raw = self._read_at(off, end - off) if member is None else member
        data = decompress_member(raw, inner + n)[inner:inner + n]
        if len(data) != n:
            raise IntegrityError(f"{chunk['_name']}: chunk at {off} decompresses to {len(data)} bytes, "
                                 f"expected {n}")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != want:
            raise IntegrityError(f"{chunk['_name']}: chunk at offset {off} has digest {got}, the TOC says {want}")
        return data

    def iter_file(self, name: str) -> Iterator[bytes]:
        """A regular file's contents, chunk by chunk, each verified."""
        e = self.lookup(name)
        if e is None:
            raise InvalidArgument(f"{name}: not in the TOC")
        if e.get("type") == "hardlink":
            yield from self.iter_file(e.get("linkName", ""))
            return
        if e.get("type") != "reg":
            raise InvalidArgument(f"{name}: not a regular file")
        whole = hashlib.sha256()
        for c in self.chunks.get(e["_name"], []):
            data = self.read_chunk(c)
            whole.update(data)
            yield data
        if e.get("digest") and "sha256:" + whole.hexdigest() != e["digest"]:
            raise IntegrityError(f"{name}: content digest does not match the TOC")

    def read_file(self, name: str) -> bytes:
        return b"".join(self.iter_file(name))

    def verify(self) -> None:
        """Check every chunk and every file digest (reads the whole blob)."""
        for name, chunks in self.chunks.items():
            e = self.by_name[name]
            whole = hashlib.sha256()
            for c in chunks:
                whole.update(self.read_chunk(c))
            if e.get("digest") and "sha256:" + whole.hexdigest() != e["digest"]:
                raise IntegrityError(f"{name}: content digest does not match the TOC")


def verify_blob(f: IO[bytes], toc_digest: str | None = None) -> TOC:
    """Open ``f`` as eStargz, check the TOC digest (if given) and all chunk digests; returns the TOC."""
    r = Reader.from_file(f, toc_digest)
    r.verify()
    return r.toc


def public_entries(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """TOC entries without the reader's bookkeeping fields (``_name``, ``_end``, …)."""
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]

