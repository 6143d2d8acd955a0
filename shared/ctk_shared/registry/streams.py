"""Blob bodies in both directions, bounded: a download as an iterator that detects a stalled body and a registry
that ignores ``Range``, and an upload body that refuses to send more or fewer bytes than it announced."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

import requests

from .. import limits
from ..errors import CtkError, IntegrityError
from . import errors as rerr

BLOB_CHUNK = 1 << 20  # 1 MiB per iteration of a BlobStream


def set_read_timeout(resp: requests.Response, seconds: float) -> None:
    """Let a streamed body wait ``seconds`` per read (the stall limit), not the response limit."""
    sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass



class BlobStream:
    """A blob's bytes from ``offset`` on, as an iterator of chunks; close it (or use ``with``).

    ``size`` is the whole blob's size when the registry said (None otherwise); ``offset`` is where the
    stream starts. A registry that ignores ``Range`` is handled by skipping ``offset`` bytes.
    """

    def __init__(self, resp: requests.Response, offset: int, host: str, what: str, secrets: Sequence[str] = (),
                 chunk_size: int = BLOB_CHUNK, stall: float | None = None, resumable: bool = False) -> None:
        self._resp = resp
        self._stall = stall
        self._resumable = resumable
        self.position = offset  # the next byte of the blob this stream yields
        self._host = host
        self._what = what
        self._secrets = tuple(secrets)
        self._chunk_size = chunk_size
        self.offset = offset
        self._skip = 0
        length = int_header(resp, "Content-Length")
        if resp.status_code == 206:
            start, total = content_range(resp.headers.get("Content-Range", ""))
            if start is not None and start != offset:
                resp.close()
                raise IntegrityError(f"{what}: registry answered from byte {start}, asked for {offset}")
            self.size = total if total is not None else (offset + length if length is not None else None)
        else:
            self._skip = offset  # Range ignored: the whole blob comes back
            self.size = length
        self._iter: Iterator[bytes] | None = None

    @property
    def host(self) -> str:
        """The registry or mirror these bytes come from."""
        return self._host

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iter is None:
            self._iter = self._resp.iter_content(self._chunk_size)
        while True:
            try:
                chunk = next(self._iter)
            except StopIteration:
                self.close()
                raise
            except requests.exceptions.RequestException as e:
                self.close()
                if rerr.timeout_phase(e):
                    raise self._stalled() from None
                raise rerr.from_transport_error(e, self._host, what=self._what, secrets=self._secrets) from None
            if self._skip:
                if len(chunk) <= self._skip:
                    self._skip -= len(chunk)
                    continue
                chunk = chunk[self._skip:]
                self._skip = 0
            if chunk:
                self.position += len(chunk)
                return chunk

    def _stalled(self) -> CtkError:
        of = f" of {limits.human(self.size)}" if self.size else ""
        limit = f" for {self._stall:g} s" if self._stall else ""
        resume = ("; the partial download is kept, and running the command again resumes from there"
                  if self._resumable else "")
        return rerr.make(rerr.RegistryTimeout,
                         f"{self._what}: stalled at {limits.human(self.position)}{of}{limit}{resume}",
                         secrets=self._secrets,
                         hint="a slow registry needs a longer stall limit: --registry-timeout CONNECT,RESPONSE,STALL")

    def read_all(self, kind: str = "document") -> bytes:
        """Everything that is left, under the cap of ``kind`` (DocumentTooLarge past it)."""
        with self:
            return limits.read_capped(self, kind, self._what)

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class SizedBody:
    """An iterable request body with a length, so requests sends Content-Length and not chunked encoding.

    Raises IntegrityError (aborting the request) if the source yields more or fewer bytes than announced.
    """

    def __init__(self, chunks: Iterable[bytes], size: int, what: str) -> None:
        self._chunks = chunks
        self._size = size
        self._what = what
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.sent += len(chunk)
            if self.sent > self._size:
                raise IntegrityError(f"{self._what}: more than the declared {self._size} bytes")
            yield bytes(chunk)
        if self.sent != self._size:
            raise IntegrityError(f"{self._what}: only {self.sent} of the declared {self._size} bytes")



def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for c in chunks:
        buf += c
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)



def int_header(resp: requests.Response, name: str) -> int | None:
    v = resp.headers.get(name)
    if v is None:
        return None
    try:
        n = int(v)
    except ValueError:
        return None
    return n if n >= 0 else None



_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def content_range(value: str) -> tuple[int | None, int | None]:
    """(start, total) of ``bytes start-end/total``; None for what is missing."""
    m = _CONTENT_RANGE_RE.match(value)
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)

