"""Reading registry response bodies without trusting their length.

Every request the registry client sends is streamed, so a body is only read here, chunk by chunk, up to
the cap of what it is (``ctk_shared.limits``). ``response.content``, ``.json()`` and ``.text`` are never
used on a registry answer: a server that streams without end would have them buffer it all.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import limits

if TYPE_CHECKING:
    import requests

READ_CHUNK = 64 << 10


def chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body, as it arrives; a response built in memory (no ``raw``) yields its content at once."""
    if resp.raw is None:
        yield resp.content or b""
        return
    yield from resp.iter_content(READ_CHUNK)


def declared_length(resp: requests.Response) -> int | None:
    v = resp.headers.get("Content-Length")
    try:
        n = int(v) if v is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 0 else None


def read(resp: requests.Response, kind: str, what: str) -> bytes:
    """The whole body, refused before reading when Content-Length is over the cap of ``kind`` and cut off
    (DocumentTooLarge) as soon as the bytes pass it. Transport errors propagate to the caller."""
    length = declared_length(resp)
    if length is not None:
        limits.check_declared(kind, length, what)
    return limits.read_capped(chunks(resp), kind, what)


def read_prefix(resp: requests.Response, cap: int) -> bytes:
    """At most ``cap`` bytes of the body, for best-effort reads (error bodies) that must never fail."""
    import requests as _requests

    buf = bytearray()
    try:
        for chunk in chunks(resp):
            buf += chunk
            if len(buf) >= cap:
                break
    except (_requests.exceptions.RequestException, OSError, RuntimeError):
        pass
    return bytes(buf[:cap])


def read_json(resp: requests.Response, kind: str, what: str) -> Any:
    """The body parsed as JSON (None when it is not JSON), read under the cap of ``kind``."""
    data = read(resp, kind, what)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
