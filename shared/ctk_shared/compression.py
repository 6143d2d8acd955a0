"""Layer compression: sniff gzip / zstd / plain tar from the first bytes, and stream through either way.

Readers and writers are file objects, so a layer of any size passes through in bounded memory.
"""
from __future__ import annotations

import gzip
import io
from typing import TYPE_CHECKING, Protocol

from .errors import InvalidArgument

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

GZIP = "gzip"
ZSTD = "zstd"
NONE = ""

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff(head: bytes) -> str:
    """'gzip', 'zstd' or '' (treated as an uncompressed tar) from a blob's first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return GZIP
    if head.startswith(_ZSTD_MAGIC):
        return ZSTD
    return NONE


class ByteReader(Protocol):
    """What a layer reader needs: ``read``. gzip, zstandard and plain files all fit, without being ``IO[bytes]``."""

    def read(self, size: int = -1, /) -> bytes: ...


class ByteSink(Protocol):
    """Where compressed bytes go: ``write`` and ``flush`` (what gzip and zstandard call on it)."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> object: ...


class ByteWriter(Protocol):
    """What a layer writer needs: ``write``, and ``close`` to finish the stream."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


def decompressing_reader(f: ByteReader) -> ByteReader:
    """A reader of ``f``'s uncompressed bytes, whatever ``f``'s compression (multi-member gzip and
    multi-frame zstd included). ``f`` only needs ``read``."""
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(_Raw(f), 1 << 20)
    kind = sniff(buffered.peek(4)[:4])
    if kind == GZIP:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True,
                                                          closefd=False)
    return buffered


def compressing_writer(out: ByteSink, kind: str, level: int | None = None) -> ByteWriter:
    """A writer that compresses into ``out``; closing it finishes the stream but leaves ``out`` open."""
    if kind == GZIP:
        return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6 if level is None else level,
                             mtime=0, filename="")
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3 if level is None else level).stream_writer(
            out, closefd=False)  # type: ignore[arg-type]  # zstandard's stubs ask IO[bytes]; it calls write/flush only
    if kind == NONE:
        return _NoClose(out)
    raise InvalidArgument(f"unknown compression {kind!r}")


class _Raw(io.RawIOBase):
    """Adapts any object with ``read`` to RawIOBase so it can be buffered and peeked."""

    def __init__(self, f: ByteReader) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b)
        data = self._f.read(len(view))
        n = len(data)
        view[:n] = data
        return n


class _NoClose:
    """A plain writer whose ``close`` leaves ``out`` open (the ByteWriter of an uncompressed layer)."""

    def __init__(self, out: ByteSink) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:
        return self._out.write(b)

    def close(self) -> None:
        pass
