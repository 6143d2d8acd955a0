"""Layer compression: sniff gzip / zstd / plain tar from the first bytes, and stream through either way.

Readers and writers are file objects, so a layer of any size passes through in bounded memory.
"""
from __future__ import annotations

import gzip
import io
from typing import IO, BinaryIO

from .errors import InvalidArgument

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


def decompressing_reader(f: IO[bytes]) -> IO[bytes]:
    """A reader of ``f``'s uncompressed bytes, whatever ``f``'s compression (multi-member gzip and
    multi-frame zstd included). ``f`` only needs ``read``."""
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(_Raw(f), 1 << 20)
    kind = sniff(buffered.peek(4)[:4])
    if kind == GZIP:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True,  # type: ignore[return-value]
                                                          closefd=False)
    return buffered


def compressing_writer(out: BinaryIO, kind: str, level: int | None = None) -> IO[bytes]:
    """A writer that compresses into ``out``; closing it finishes the stream but leaves ``out`` open."""
    if kind == GZIP:
        return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6 if level is None else level,  # type: ignore[return-value]
                             mtime=0, filename="")
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3 if level is None else level).stream_writer(  # type: ignore[return-value]
            out, closefd=False)
    if kind == NONE:
        return _NoClose(out)  # type: ignore[return-value]
    raise InvalidArgument(f"unknown compression {kind!r}")


class _Raw(io.RawIOBase):
    """Adapts any object with ``read`` to RawIOBase so it can be buffered and peeked."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b):  # type: ignore[no-untyped-def]
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class _NoClose(io.RawIOBase):
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b):  # type: ignore[no-untyped-def]
        return self._out.write(b)
