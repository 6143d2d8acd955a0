"""eStargz: a tar.gz layer that can be read file by file with HTTP Range requests (lazy pulling).

Format (stargz-snapshotter ``docs/estargz.md``, ``estargz/{estargz,build,gzip,types}.go`` v0.12):

* the blob is a concatenation of gzip members, so it stays a valid ``tar+gzip`` for every runtime;
* a new member starts at the payload of each non-empty regular file and at every ``chunk_size`` bytes
  inside it; the tar headers that follow a payload go into the payload's last member;
* the last tar entry is ``stargz.index.json`` (the TOC), alone in its own member together with the
  tar end-of-archive blocks; its JSON lists every entry with the compressed ``offset`` of the member
  where its data starts and a sha256 ``chunkDigest`` per chunk;
* a 51-byte footer (an empty gzip member whose extra field is ``"%016xSTARGZ"`` % TOC offset) ends the blob;
* a one-byte landmark file (``.prefetch.landmark`` after prioritised files, else ``.no.prefetch.landmark``
  first) tells the snapshotter what to prefetch.

The layer descriptor carries ``containerd.io/snapshot/stargz/toc.digest`` (sha256 of the TOC JSON) and
``io.containers.estargz.uncompressed-size``; the DiffID is the sha256 of the whole decompressed tar.

:func:`build` writes one from any layer (plain, gzip or zstd tar); :class:`Reader` parses the footer and
TOC of one, verifies the TOC digest and reads or verifies chunks, for tests and for a lazy snapshotter.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import struct
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from . import limits
from .errors import IntegrityError, InvalidArgument

TOC_TAR_NAME = "stargz.index.json"
FOOTER_SIZE = 51
LEGACY_FOOTER_SIZE = 47
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
PREFETCH_LANDMARK = ".prefetch.landmark"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
LANDMARK_CONTENTS = b"\x0f"
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_LEVEL = 9  # gzip.BestCompression, as ctr-remote
MAX_TOC_SIZE = limits.MAX_TOC_SIZE  # refuse absurd TOCs before decompressing them

_BLOCK = tarfile.BLOCKSIZE
_COPY = 1 << 20

_TYPES = {
    tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.CONTTYPE: "reg", tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink", tarfile.DIRTYPE: "dir", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}
_XATTR_PREFIX = "SCHILY.xattr."


def clean_name(name: str) -> str:
    """A tar entry name as the TOC is indexed by: ``./a//b/`` -> ``a/b``, the root -> ``""``."""
    return posixpath.normpath("/" + name).lstrip("/")


# --- writing -------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    """What a conversion produced: blob identity, the TOC and the numbers for the layer's annotations."""

    digest: str  # sha256 of the blob
    size: int  # blob bytes
    diff_id: str  # sha256 of the decompressed tar
    uncompressed_size: int
    toc_digest: str  # sha256 of the TOC JSON
    toc_offset: int
    toc: dict[str, Any]
    missed_prioritized: list[str] = field(default_factory=list)

    @property
    def annotations(self) -> dict[str, str]:
        return {TOC_DIGEST_ANNOTATION: self.toc_digest, UNCOMPRESSED_SIZE_ANNOTATION: str(self.uncompressed_size)}


class _Counting:
    """The output: counts compressed bytes (TOC offsets) and hashes them (the blob digest)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.n = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.n += len(data)
            self.sha.update(data)


class _Members:
    """Writes the decompressed tar stream as gzip members that can be cut at will."""

    def __init__(self, out: _Counting, level: int) -> None:
        self.out = out
        self.level = level
        self.diff = hashlib.sha256()
        self.usize = 0
        self._z: Any = None
        self._crc = 0
        self._isize = 0

    def _header(self) -> bytes:
        xfl = 2 if self.level == 9 else 4 if self.level == 1 else 0  # as Go's compress/gzip
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255])

    def open(self) -> None:
        if self._z is None:
            self.out.write(self._header())
            self._z = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._crc = 0
            self._isize = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.open()
        self.diff.update(data)
        self.usize += len(data)
        self._crc = zlib.crc32(data, self._crc)
        self._isize += len(data)
        self.out.write(self._z.compress(data))

    def close(self) -> None:
        """End the current member (the next write opens a new one)."""
        if self._z is not None:
            self.out.write(self._z.flush(zlib.Z_FINISH))
            self.out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._isize & 0xFFFFFFFF))
            self._z = None


def footer_bytes(toc_offset: int) -> bytes:
    """The 51-byte eStargz footer: an empty stored gzip member with extra subfield 'SG' = %016xSTARGZ."""
    sub = b"%016xSTARGZ" % toc_offset
    extra = b"SG" + struct.pack("<H", len(sub)) + sub
    data = (b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", len(extra)) + extra
            + b"\x01\x00\x00\xff\xff" + b"\x00" * 8)
    assert len(data) == FOOTER_SIZE
    return data


def format_modtime(mtime: float) -> str:
    """RFC 3339 UTC rounded to the second; '' for the epoch (Go's formatModtime)."""
    secs = int(mtime + 0.5) if mtime >= 0 else -int(-mtime + 0.5)
    if secs == 0:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def toc_json(toc: dict[str, Any]) -> bytes:
    """The TOC as Go's ``json.MarshalIndent(toc, "", "\\t")`` writes it (HTML characters escaped)."""
    text = json.dumps(toc, indent="\t", ensure_ascii=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)  # only ever inside strings in JSON
    return text.encode()


def _text(s: str) -> str:
    """A name as JSON can carry it: undecodable bytes become U+FFFD, as Go's encoder does."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header_bytes(ti: tarfile.TarInfo) -> bytes:
    """The tar header block(s) for ``ti``, keeping the mode's file-type bits (Python masks them off)."""
    buf = bytearray(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    if ti.mode > 0o7777 and ti.mode < 8 ** 7:
        blk = len(buf) - _BLOCK
        buf[blk + 100:blk + 108] = b"%07o\x00" % ti.mode
        buf[blk + 148:blk + 156] = b" " * 8
        chk = sum(buf[blk:blk + _BLOCK])
        buf[blk + 148:blk + 156] = b"%06o\x00 " % chk
    return bytes(buf)


@dataclass
class _Entry:
    info: tarfile.TarInfo
    payload: IO[bytes] | None = None  # None: read info.size bytes from the spooled tar at info.offset_data


def _read_record(paths_file: str | os.PathLike[str]) -> list[str]:
    """Prioritised paths from a record file: ctr-remote's stream of ``{"path": …}`` objects, or a JSON list of
    paths or such objects. Duplicates are dropped, first occurrence wins."""
    try:
        text = open(paths_file, encoding="utf-8").read()
    except OSError as e:
        raise InvalidArgument(f"cannot read record file {paths_file}: {e.strerror}") from None
    dec = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    try:
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            obj, pos = dec.raw_decode(text, pos)
            items.extend(obj if isinstance(obj, list) else [obj])
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"record file {paths_file}: not JSON: {e}") from None
    out: list[str] = []
    for it in items:
        p = it.get("path") if isinstance(it, dict) else it
        if not isinstance(p, str):
            raise InvalidArgument(f"record file {paths_file}: entry without a path: {it!r}")
        if p not in out:
            out.append(p)
    return out


read_record_file = _read_record


class _TarFile:
    """Entries by cleaned name, in stream order (Go's ``tarFile``)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def add(self, e: _Entry) -> None:
        name = clean_name(e.info.name)
        self.entries.pop(name, None)  # a later entry of the same name replaces the earlier one, at the end
        self.entries[name] = e

    def get(self, name: str) -> _Entry | None:
        return self.entries.get(clean_name(name))

    def remove(self, name: str) -> None:
        self.entries.pop(clean_name(name), None)


class _NotFound(Exception):
    pass


def _move_rec(name: str, src: _TarFile, dst: _TarFile) -> None:
    """Move ``name`` with its parent directories and hard-link targets to ``dst`` (Go's ``moveRec``)."""
    name = clean_name(name)
    if name == "":
        e = src.get("")
        if e is not None:
            dst.add(e)
            src.remove("")
        return
    if src.get(name) is None and dst.get(name) is None:
        raise _NotFound(name)
    _move_rec(posixpath.dirname(name), src, dst)
    e = src.get(name)
    if e is not None and e.info.type == tarfile.LNKTYPE:
        _move_rec(e.info.linkname, src, dst)
    e = src.get(name)
    if e is not None:
        dst.add(e)
        src.remove(name)


def _landmark(name: str) -> _Entry:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = 1, 0, 0, "", ""
    return _Entry(ti, io.BytesIO(LANDMARK_CONTENTS))


def _sorted_entries(tar: tarfile.TarFile, prioritized: list[str] | None,
                    missed: list[str]) -> list[_Entry]:
    intar = _TarFile()
    for ti in tar:
        if clean_name(ti.name) in (PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK):
            continue
        intar.add(_Entry(ti))
    tar.members = []  # headers are kept in our entries only
    out = _TarFile()
    for p in prioritized or []:
        try:
            _move_rec(p, intar, out)
        except _NotFound:
            missed.append(p)
    out.add(_landmark(PREFETCH_LANDMARK if prioritized else NO_PREFETCH_LANDMARK))
    return list(out.entries.values()) + list(intar.entries.values())


def _spool_tar(src: IO[bytes], tmpdir: str | None) -> IO[bytes]:
    from .compression import decompressing_reader

    spool = tempfile.TemporaryFile(dir=tmpdir)
    try:
        reader = decompressing_reader(src)
        while chunk := reader.read(_COPY):
            spool.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        spool.close()
        raise InvalidArgument(f"cannot decompress the layer: {e}") from None
    except Exception as e:  # zstandard.ZstdError
        spool.close()
        if type(e).__module__.startswith("zstandard"):
            raise InvalidArgument(f"cannot decompress the layer: {e}") from None
        raise
    spool.seek(0)
    return spool


def build(src: IO[bytes], out: BinaryIO, *, chunk_size: int = 0, level: int = DEFAULT_LEVEL,
          prioritized: list[str] | None = None, tmpdir: str | None = None) -> BuildResult:
    """Write an eStargz blob of the layer ``src`` (a plain, gzip or zstd tar stream) to ``out``.

    The decompressed tar is spooled to a temporary file (entries are reordered for prioritised files);
    ``out`` is written strictly sequentially. Like ctr-remote, prioritised paths missing from the layer are
    skipped (listed in ``missed_prioritized``), and existing landmarks and TOCs in the input are dropped.
    """
    if chunk_size <= 0:
        chunk_size = DEFAULT_CHUNK_SIZE
    if not 0 <= level <= 9:
        raise InvalidArgument(f"gzip level {level} is not in 0..9")
    spool = _spool_tar(src, tmpdir)
    try:
        try:
            tar = tarfile.open(fileobj=spool, mode="r:", encoding="utf-8", errors="surrogateescape")
        except tarfile.TarError as e:
            raise InvalidArgument(f"layer is not a tar archive: {e}") from None
        missed: list[str] = []
        try:
            entries = _sorted_entries(tar, prioritized, missed)
        except tarfile.TarError as e:
            raise InvalidArgument(f"layer tar is malformed: {e}") from None
        cw = _Counting(out)
        gz = _Members(cw, level)
        toc_entries: list[dict[str, Any]] = []
        last_uname: dict[int, str] = {}
        last_gname: dict[int, str] = {}
        for e in entries:
            ti = e.info
            if clean_name(ti.name) == TOC_TAR_NAME:
                continue
            kind = _TYPES.get(ti.type)
            if kind is None or ti.issparse():
                raise InvalidArgument(f"layer entry {ti.name!r}: unsupported tar type {ti.type!r}")
            name = ti.name + "/" if ti.type == tarfile.DIRTYPE and not ti.name.endswith("/") else ti.name
            ent: dict[str, Any] = {"name": _text(name), "type": kind}
            if kind == "reg" and ti.size:
                ent["size"] = ti.size
            if mt := format_modtime(ti.mtime):
                ent["modtime"] = mt
            if kind in ("symlink", "hardlink") and ti.linkname:
                ent["linkName"] = _text(ti.linkname)
            if ti.mode:
                ent["mode"] = ti.mode
            if ti.uid:
                ent["uid"] = ti.uid
            if ti.gid:
                ent["gid"] = ti.gid
            if ti.uname and last_uname.get(ti.uid) != ti.uname:
                last_uname[ti.uid] = ti.uname
                ent["userName"] = _text(ti.uname)
            if ti.gname and last_gname.get(ti.gid) != ti.gname:
                last_gname[ti.gid] = ti.gname
                ent["groupName"] = _text(ti.gname)
            if kind in ("char", "block"):
                if ti.devmajor:
                    ent["devMajor"] = ti.devmajor
                if ti.devminor:
                    ent["devMinor"] = ti.devminor
            xattrs = {k[len(_XATTR_PREFIX):]: v for k, v in ti.pax_headers.items() if k.startswith(_XATTR_PREFIX)}
            if xattrs:
                ent["xattrs"] = {k: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
                                 for k, v in sorted(xattrs.items())}
            size = ti.size if kind == "reg" else 0
            if kind != "reg":
                ti.size = 0
            gz.open()
            gz.write(_header_bytes(ti))
            if kind != "reg":
                toc_entries.append(ent)
                continue
            payload = e.payload
            if payload is None:
                spool.seek(ti.offset_data)
                payload = spool
            whole = hashlib.sha256()
            written = 0
            cur = ent
            while written < size:
                gz.close()
                n = min(chunk_size, size - written)
                if size - written >= chunk_size:
                    cur["chunkSize"] = chunk_size
                cur["offset"] = cw.n
                if written:
                    cur["chunkOffset"] = written
                chunk = hashlib.sha256()
                left = n
                while left:
                    data = payload.read(min(_COPY, left))
                    if not data:
                        raise InvalidArgument(f"layer entry {ti.name!r}: tar ends inside the file")
                    chunk.update(data)
                    whole.update(data)
                    gz.write(data)
                    left -= len(data)
                cur["chunkDigest"] = "sha256:" + chunk.hexdigest()
                toc_entries.append(cur)
                written += n
                cur = {"name": ent["name"], "type": "chunk"}
            if not size:
                toc_entries.append(ent)
            ent["digest"] = "sha256:" + whole.hexdigest()
            if size % _BLOCK:
                gz.write(b"\x00" * (_BLOCK - size % _BLOCK))
        gz.close()
        toc_offset = cw.n
        toc = {"version": 1, "entries": [_ordered(x) for x in toc_entries]}
        data = toc_json(toc)
        hdr = tarfile.TarInfo(TOC_TAR_NAME)
        hdr.size, hdr.mode, hdr.mtime, hdr.uname, hdr.gname = len(data), 0, 0, "", ""
        gz.write(hdr.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        gz.write(data)
        if len(data) % _BLOCK:
            gz.write(b"\x00" * (_BLOCK - len(data) % _BLOCK))
        gz.write(b"\x00" * (2 * _BLOCK))
        gz.close()
        cw.write(footer_bytes(toc_offset))
        return BuildResult(digest="sha256:" + cw.sha.hexdigest(), size=cw.n, diff_id="sha256:" + gz.diff.hexdigest(),
                           uncompressed_size=gz.usize, toc_digest="sha256:" + hashlib.sha256(data).hexdigest(),
                           toc_offset=toc_offset, toc=toc, missed_prioritized=missed)
    finally:
        spool.close()


_FIELD_ORDER = ("name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName", "groupName",
                "offset", "innerOffset", "devMajor", "devMinor", "xattrs", "digest", "chunkOffset", "chunkSize",
                "chunkDigest")


def _ordered(ent: dict[str, Any]) -> dict[str, Any]:
    """Fields in the order of Go's TOCEntry struct, so the JSON reads like ctr-remote's."""
    return {k: ent[k] for k in _FIELD_ORDER if k in ent}


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
        raw = z.decompress(member, MAX_TOC_SIZE + 3 * _BLOCK)
    except zlib.error as e:
        raise IntegrityError(f"TOC gzip member is corrupt: {e}") from None
    try:
        hdr = tarfile.TarInfo.frombuf(raw[:_BLOCK], "utf-8", "surrogateescape")
    except tarfile.TarError as e:
        raise InvalidArgument(f"no tar header in the TOC member: {e}") from None
    if hdr.name != TOC_TAR_NAME:
        raise InvalidArgument(f"TOC tar entry is named {hdr.name!r}, expected {TOC_TAR_NAME!r}")
    if hdr.size > MAX_TOC_SIZE or len(raw) < _BLOCK + hdr.size:
        raise InvalidArgument(f"TOC of {hdr.size} bytes is truncated or too large")
    data = raw[_BLOCK:_BLOCK + hdr.size]
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"TOC is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise InvalidArgument("TOC has no entries list")
    return TOC(int(doc.get("version", 0)), doc["entries"], "sha256:" + hashlib.sha256(data).hexdigest(),
               toc_offset, footer_size, bytes(data))


class Reader:
    """Random access to an eStargz blob through ``read_at(offset, size) -> bytes`` (a file, or HTTP Range).

    Opening parses the footer and the TOC; with ``toc_digest`` the TOC must match it (as the snapshotter
    requires the layer annotation). Chunk reads are verified against their ``chunkDigest``.
    """

    def __init__(self, read_at: Any, size: int, toc_digest: str | None = None) -> None:
        self._read_at = read_at
        self.size = size
        tail = read_at(max(0, size - FOOTER_SIZE), min(size, FOOTER_SIZE))
        toc_offset, fsize = parse_footer(tail)
        if not 0 <= toc_offset < size - fsize:
            raise InvalidArgument(f"footer points at TOC offset {toc_offset}, outside the {size}-byte blob")
        # the footer (the blob's maker) says where the TOC starts: its compressed member is read whole, so capped
        limits.check_declared("TOC", size - fsize - toc_offset, f"eStargz TOC member at offset {toc_offset}")
        self.toc = parse_toc_member(read_at(toc_offset, size - fsize - toc_offset), toc_offset, fsize)
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
