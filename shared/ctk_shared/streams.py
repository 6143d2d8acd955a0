"""File objects over chunk iterators: a content-store blob (``client.content.read``) read by code that wants a
file (tarfile, gzip, hashing copies) without loading the blob whole."""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any


class ChunkReader(io.RawIOBase):
    """``io.BufferedReader(ChunkReader(chunks))`` is a readable binary file; ``on_read(n)`` sees each chunk's
    size as it arrives (for progress)."""

    def __init__(self, chunks: Iterator[bytes], on_read: Callable[[int], Any] | None = None) -> None:
        self._chunks = chunks
        self._buf = b""
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
            if self._on_read:
                self._on_read(len(self._buf))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
