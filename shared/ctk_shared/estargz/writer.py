"""Writing eStargz: :func:`build` turns any layer (plain, gzip or zstd tar) into an eStargz blob."""
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
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from ..errors import InvalidArgument
from .format import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LEVEL,
    FIELD_ORDER,
    FOOTER_SIZE,
    LANDMARK_CONTENTS,
    NO_PREFETCH_LANDMARK,
    PREFETCH_LANDMARK,
    TAR_BLOCK,
    TOC_DIGEST_ANNOTATION,
    TOC_TAR_NAME,
    UNCOMPRESSED_SIZE_ANNOTATION,
    clean_name,
)

_COPY = 1 << 20

_TYPES = {
    tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.CONTTYPE: "reg", tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink", tarfile.DIRTYPE: "dir", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}
_XATTR_PREFIX = "SCHILY.xattr."



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
        blk = len(buf) - TAR_BLOCK
        buf[blk + 100:blk + 108] = b"%07o\x00" % ti.mode
        buf[blk + 148:blk + 156] = b" " * 8
        chk = sum(buf[blk:blk + TAR_BLOCK])
        buf[blk + 148:blk + 156] = b"%06o\x00 " % chk
    return bytes(buf)


@dataclass
class _Entry:
    """One tar entry to write into the eStargz blob: its header, and where its bytes come from."""

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
    tar.getmembers().clear()  # the loop read the whole archive: this is TarFile's own list; headers live in our entries only
    out = _TarFile()
    for p in prioritized or []:
        try:
            _move_rec(p, intar, out)
        except _NotFound:
            missed.append(p)
    out.add(_landmark(PREFETCH_LANDMARK if prioritized else NO_PREFETCH_LANDMARK))
    return list(out.entries.values()) + list(intar.entries.values())


def _spool_tar(src: IO[bytes], tmpdir: str | None) -> IO[bytes]:
    from ..compression import decompressing_reader

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
        missed: list[str] = []
        entries = _read_entries(spool, prioritized, missed)
        cw = _Counting(out)
        gz = _Members(cw, level)
        owners = _OwnerNames()
        toc_entries: list[dict[str, Any]] = []
        for e in entries:
            if clean_name(e.info.name) != TOC_TAR_NAME:
                toc_entries += _write_entry(e, spool, gz, owners, chunk_size)
        gz.close()
        toc_offset = cw.n
        toc = {"version": 1, "entries": [_ordered(x) for x in toc_entries]}
        data = toc_json(toc)
        _write_toc_tar(gz, data)
        cw.write(footer_bytes(toc_offset))
        return BuildResult(digest="sha256:" + cw.sha.hexdigest(), size=cw.n, diff_id="sha256:" + gz.diff.hexdigest(),
                           uncompressed_size=gz.usize, toc_digest="sha256:" + hashlib.sha256(data).hexdigest(),
                           toc_offset=toc_offset, toc=toc, missed_prioritized=missed)
    finally:
        spool.close()


def _read_entries(spool: IO[bytes], prioritized: list[str] | None, missed: list[str]) -> list[_Entry]:
    """The spooled layer's entries in output order (prioritised ones first); a bad tar is the caller's error."""
    try:
        tar = tarfile.open(fileobj=spool, mode="r:", encoding="utf-8", errors="surrogateescape")
    except tarfile.TarError as err:
        raise InvalidArgument(f"layer is not a tar archive: {err}") from None
    try:
        return _sorted_entries(tar, prioritized, missed)
    except tarfile.TarError as err:
        raise InvalidArgument(f"layer tar is malformed: {err}") from None


def _padding(size: int) -> bytes:
    """Zeros that fill ``size`` bytes up to the next tar block."""
    return b"\x00" * (-size % TAR_BLOCK)


class _OwnerNames:
    """A TOC entry names its owner only when the name differs from the last one given for that id (as Go's
    writer does), which keeps the TOC of a layer full of root-owned files small."""

    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}

    def add_to(self, ent: dict[str, Any], ti: tarfile.TarInfo) -> None:
        if ti.uname and self.users.get(ti.uid) != ti.uname:
            self.users[ti.uid] = ti.uname
            ent["userName"] = _text(ti.uname)
        if ti.gname and self.groups.get(ti.gid) != ti.gname:
            self.groups[ti.gid] = ti.gname
            ent["groupName"] = _text(ti.gname)


def _toc_entry(ti: tarfile.TarInfo, kind: str, owners: _OwnerNames) -> dict[str, Any]:
    """The TOC entry of one tar entry's metadata (zero values left out, as Go's ``omitempty``)."""
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
    owners.add_to(ent, ti)
    if kind in ("char", "block"):
        if ti.devmajor:
            ent["devMajor"] = ti.devmajor
        if ti.devminor:
            ent["devMinor"] = ti.devminor
    xattrs = {k[len(_XATTR_PREFIX):]: v for k, v in ti.pax_headers.items() if k.startswith(_XATTR_PREFIX)}
    if xattrs:
        ent["xattrs"] = {k: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
                         for k, v in sorted(xattrs.items())}
    return ent


def _write_entry(e: _Entry, spool: IO[bytes], gz: _Members, owners: _OwnerNames,
                 chunk_size: int) -> list[dict[str, Any]]:
    """Write one entry (tar header, then a regular file's contents) and return its TOC entries: one, or for a
    regular file one per chunk. The header opens a gzip member; every chunk starts a member of its own."""
    ti = e.info
    kind = _TYPES.get(ti.type)
    if kind is None or ti.issparse():
        raise InvalidArgument(f"layer entry {ti.name!r}: unsupported tar type {ti.type!r}")
    ent = _toc_entry(ti, kind, owners)
    size = ti.size if kind == "reg" else 0
    if kind != "reg":
        ti.size = 0
    gz.open()
    gz.write(_header_bytes(ti))
    if kind != "reg":
        return [ent]
    payload = e.payload
    if payload is None:
        spool.seek(ti.offset_data)
        payload = spool
    chunks = _write_chunks(payload, size, ent, gz, chunk_size, ti.name)
    gz.write(_padding(size))
    return chunks


def _write_chunks(payload: IO[bytes], size: int, ent: dict[str, Any], gz: _Members, chunk_size: int,
                  name: str) -> list[dict[str, Any]]:
    """A regular file's ``size`` bytes from ``payload`` in chunks: the first chunk's TOC entry is the file's own
    ``ent`` (which also gets the whole file's digest), each further one a ``chunk`` entry."""
    whole = hashlib.sha256()
    out: list[dict[str, Any]] = []
    written = 0
    cur = ent
    while written < size:
        gz.close()
        n = min(chunk_size, size - written)
        if size - written >= chunk_size:
            cur["chunkSize"] = chunk_size
        cur["offset"] = gz.out.n
        if written:
            cur["chunkOffset"] = written
        cur["chunkDigest"] = _copy_chunk(payload, n, gz, whole, name)
        out.append(cur)
        written += n
        cur = {"name": ent["name"], "type": "chunk"}
    if not size:
        out.append(ent)
    ent["digest"] = "sha256:" + whole.hexdigest()
    return out


def _copy_chunk(payload: IO[bytes], n: int, gz: _Members, whole: hashlib._Hash, name: str) -> str:
    """Copy ``n`` bytes of ``payload`` into ``gz`` (and ``whole``, the file's hash); the chunk's digest."""
    chunk = hashlib.sha256()
    left = n
    while left:
        data = payload.read(min(_COPY, left))
        if not data:
            raise InvalidArgument(f"layer entry {name!r}: tar ends inside the file")
        chunk.update(data)
        whole.update(data)
        gz.write(data)
        left -= len(data)
    return "sha256:" + chunk.hexdigest()


def _write_toc_tar(gz: _Members, data: bytes) -> None:
    """The TOC as the tar's last entry, then the end-of-archive blocks, in a gzip member of its own."""
    hdr = tarfile.TarInfo(TOC_TAR_NAME)
    hdr.size, hdr.mode, hdr.mtime, hdr.uname, hdr.gname = len(data), 0, 0, "", ""
    gz.write(hdr.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
    gz.write(data)
    gz.write(_padding(len(data)))
    gz.write(b"\x00" * (2 * TAR_BLOCK))
    gz.close()


def _ordered(ent: dict[str, Any]) -> dict[str, Any]:
    """Fields in the order of Go's TOCEntry struct, so the JSON reads like ctr-remote's."""
    return {k: ent[k] for k in FIELD_ORDER if k in ent}
