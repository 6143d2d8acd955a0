"""How many bytes ctk reads for each kind of document, and the readers that hold to those caps.

A registry or an image tar decides how many bytes it sends; ctk decides how many it reads. Every JSON
document (manifest, index, config, token response, error body, tag list, an archive's ``manifest.json`` …)
is read through :func:`read_capped` or :func:`read_document`, so a peer that declares 213 bytes and then
streams without end costs one chunk of memory, not all of it. Every blob (layers too) is read through
:func:`exact`, which stops the moment the bytes pass the descriptor's size: more than declared and fewer
than declared are both integrity errors, and the digest is checked at the end.

The caps, and why these values:

* manifests and indexes: 4 MiB — containerd's resolver, distribution's manifest handler
  (``maxManifestBodySize``) and containers/image (``iolimits.MaxManifestBodySize``) all stop there, so
  no registry serves a bigger one that other clients could pull.
* image configs: 8 MiB — containers/image caps configs at 4 MiB; twice that leaves room for the long
  ``history`` some build tools write while still bounding memory.
* token responses and error bodies: 1 MiB — containers/image's ``MaxAuthTokenBodySize`` and
  ``MaxErrorBodySize``; a token is a few KiB.
* one page of a tag list or catalog: 4 MiB — a few hundred thousand names per page.
* an eStargz TOC: 256 MiB, compressed member and JSON alike — a TOC lists every file and chunk of a layer,
  so it grows with the layer; this bounds a footer that points at the start of a huge blob.
* the index files of an image tar (``manifest.json``, ``index.json``, ``oci-layout``, ``repositories``):
  4 MiB, as the documents they stand for.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import IntegrityError, InvalidArgument
from .hashers import hasher

MiB = 1 << 20

MAX_MANIFEST_SIZE = 4 * MiB
MAX_INDEX_SIZE = 4 * MiB
MAX_CONFIG_SIZE = 8 * MiB
MAX_TOKEN_RESPONSE_SIZE = 1 * MiB
MAX_ERROR_BODY_SIZE = 1 * MiB
MAX_LISTING_PAGE_SIZE = 4 * MiB
MAX_ARCHIVE_INDEX_SIZE = 4 * MiB
MAX_TOC_SIZE = 256 * MiB
MAX_DOCUMENT_SIZE = 4 * MiB  # any other small JSON document (an encryption annotation's target, a TOC's owner …)

# the cap for each kind of document, by the name messages use
CAPS: dict[str, int] = {
    "manifest": MAX_MANIFEST_SIZE,
    "index": MAX_INDEX_SIZE,
    "config": MAX_CONFIG_SIZE,
    "token response": MAX_TOKEN_RESPONSE_SIZE,
    "error body": MAX_ERROR_BODY_SIZE,
    "tag list": MAX_LISTING_PAGE_SIZE,
    "archive index": MAX_ARCHIVE_INDEX_SIZE,
    "TOC": MAX_TOC_SIZE,
    "document": MAX_DOCUMENT_SIZE,
}


class DocumentTooLarge(InvalidArgument):
    """A document is (or is declared) bigger than ctk will hold in memory for its kind."""


def cap_for(kind: str) -> int:
    """The cap of a document kind (``manifest``, ``config`` …); unknown kinds get the generic one."""
    return CAPS.get(kind, MAX_DOCUMENT_SIZE)


def human(n: int) -> str:
    """``8 MiB``, ``1.5 MiB``, ``213 bytes``: sizes as messages show them."""
    if n >= MiB and n % (MiB // 2) == 0:
        v = n / MiB
        return f"{v:g} MiB"
    if n >= MiB:
        return f"{n} bytes ({n / MiB:.1f} MiB)"
    return f"{n} bytes"


def check_declared(kind: str, size: int, what: str) -> None:
    """Refuse a document whose declared size (descriptor, Content-Length, tar header) is over its cap,
    before a byte of it is read."""
    cap = cap_for(kind)
    if size > cap:
        raise DocumentTooLarge(f"{what}: the {kind} is declared as {human(size)}, over the {human(cap)} cap "
                               f"for {_a(kind)}")


def read_capped(chunks: Iterable[bytes], kind: str, what: str, *, cap: int | None = None) -> bytes:
    """A document of unknown size, whole; DocumentTooLarge as soon as it passes the cap of ``kind``.

    The caller closes the source (a response, a stream): reading stops at the first chunk past the cap.
    """
    limit = cap_for(kind) if cap is None else cap
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise DocumentTooLarge(f"{what}: the {kind} is over the {human(limit)} cap for {_a(kind)} "
                                   "(stopped reading)")
    return bytes(buf)


def exact(chunks: Iterable[bytes], size: int, what: str, *, digest: str | None = None,
          offset: int = 0) -> Iterator[bytes]:
    """The chunks of a blob that starts at ``offset`` and must end at exactly ``size`` bytes.

    Stops with IntegrityError at the first chunk that goes past ``size`` (nothing past it is yielded, and
    the caller's source is not read further) and when the source ends early. With ``digest`` (and
    ``offset`` 0, since a resumed read does not see the first bytes) the digest is checked after the last
    chunk, before the generator finishes.
    """
    h = hasher(digest, size) if digest and offset == 0 else None
    n = offset
    for chunk in chunks:
        if not chunk:
            continue
        n += len(chunk)
        if n > size:
            raise IntegrityError(f"{what}: more bytes than the {size} declared (stopped reading at {n})")
        if h is not None:
            h.update(chunk)
        yield chunk
    if n < size:
        raise IntegrityError(f"{what}: truncated, {n} of the {size} bytes declared")
    if h is not None and digest is not None:
        got = f"{digest.split(':', 1)[0]}:{h.hexdigest()}"
        if got != digest:
            raise IntegrityError(f"{what}: content does not match its digest (expected {digest}, got {got})")


def read_document(chunks: Iterable[bytes], kind: str, size: int, digest: str, what: str) -> bytes:
    """A document named by a descriptor: its declared size checked against the cap of ``kind`` first,
    then exactly ``size`` bytes read and their digest verified."""
    check_declared(kind, size, what)
    return b"".join(exact(chunks, size, what, digest=digest))


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
