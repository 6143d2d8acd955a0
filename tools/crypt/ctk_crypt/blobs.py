"""Encrypting and decrypting one layer blob inside containerd's content store, streaming.

Bytes flow content.Read → cipher → content.Write in containerd's ≤1 MiB chunks, so memory stays flat for
any layer size. Callers hold a lease: a new blob is only reachable from the manifest written afterwards.
A decrypted blob is committed only after the HMAC over the whole ciphertext checked out, and containerd
checks its digest against the one in the authenticated private options; a failure drops the ingest, so a
tampered layer leaves nothing behind.
"""
from __future__ import annotations

import base64
import hashlib
import queue
import secrets
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ctk_shared import limits, oci
from ctk_shared.errors import IntegrityError
from ctk_shared.progress import NullProgress, Progress

from . import envelope
from .cipher import LayerDecryptor, LayerEncryptor
from .envelope import Recipients
from .keys import Keyring

if TYPE_CHECKING:
    from ctk_shared.containerd import Client


def prefetch(chunks: Iterator[bytes], depth: int = 8) -> Iterator[bytes]:
    """Iterate ``chunks`` in a background thread, up to ``depth`` ahead: the gRPC read stream then overlaps
    the cipher and the write stream instead of taking turns with them (bounded, so memory stays flat)."""
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def pump() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                q.put(chunk)
            q.put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=pump, name="ctk-crypt-read", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def _source(client: Client, desc: oci.Descriptor) -> Iterator[bytes]:
    """The stored layer, stopped at its declared size and checked against its digest (in the prefetch thread,
    beside the cipher): a descriptor that lies about the blob fails here, not in a reader of the result."""
    return limits.exact(client.content.read(desc.digest), desc.size, f"layer {desc.digest}", digest=desc.digest)


def _key(desc: oci.Descriptor) -> str:
    return desc.digest.split(":", 1)[-1][:12]


def _ref(action: str, desc: oci.Descriptor) -> str:
    # unique per run: a stale ingest of an earlier attempt must never be resumed (its nonce differs)
    return f"ctk-{action}-{desc.digest}-{secrets.token_hex(4)}"


def encrypt_layer(client: Client, desc: oci.Descriptor, recipients: Recipients,
                  progress: Progress | None = None) -> oci.Descriptor:
    """Write the ciphertext of layer ``desc`` and return its descriptor (annotations carry the keys)."""
    progress = progress or NullProgress()
    key = _key(desc)
    progress.task(key, key, desc.size, "encrypting")
    enc = LayerEncryptor(desc.digest)
    sha = hashlib.sha256()
    with client.content.writer(_ref("encrypt", desc), desc.size, "") as w:
        try:
            for chunk in prefetch(_source(client, desc)):
                out = enc.update(chunk)
                sha.update(out)
                w.write(out)
                progress.advance(key, len(chunk))
            public = enc.finalize()
            digest = f"sha256:{sha.hexdigest()}"
            if w.offset != desc.size:
                raise IntegrityError(f"layer {desc.digest}: read {w.offset} bytes, the descriptor says {desc.size}")
            got = w.commit()
        except BaseException:
            w.abort()
            raise
    if got and got != digest:
        raise IntegrityError(f"layer {desc.digest}: containerd stored {got}, we wrote {digest}")
    ann = {k: v for k, v in desc.annotations.items() if not k.startswith(envelope.ANN_PREFIX)}
    ann[envelope.ANN_PUBOPTS] = base64.b64encode(public.to_json()).decode()
    ann = envelope.wrap_annotations(enc.private, recipients, ann)
    progress.status(key, "encrypted")
    return oci.Descriptor(envelope.encrypted_media_type(desc.media_type), digest, desc.size, ann,
                          desc.platform, desc.urls)


def add_recipients(desc: oci.Descriptor, keyring: Keyring, recipients: Recipients) -> oci.Descriptor:
    """An already encrypted layer, opened with ``keyring`` and wrapped again for more recipients."""
    private = envelope.unwrap(desc, keyring)
    ann = envelope.wrap_annotations(private, recipients, desc.annotations)
    return oci.Descriptor(desc.media_type, desc.digest, desc.size, ann, desc.platform, desc.urls)


def decrypt_layer(client: Client, desc: oci.Descriptor, keyring: Keyring,
                  progress: Progress | None = None) -> oci.Descriptor:
    """Write the plaintext of encrypted layer ``desc``; committed only if HMAC and digest check out."""
    progress = progress or NullProgress()
    public = envelope.public_options(desc)
    private = envelope.unwrap(desc, keyring)
    expected = private.digest
    key = _key(desc)
    progress.task(key, key, desc.size, "decrypting")
    dec = LayerDecryptor(private, public)
    with client.content.writer(_ref("decrypt", desc), desc.size, expected) as w:
        try:
            if w.exists or w.offset == desc.size:
                # the plaintext is in the store already (named by the authenticated digest): still check that
                # this ciphertext is intact, so a damaged image is reported the same way every time
                for chunk in prefetch(_source(client, desc)):
                    dec.authenticate(chunk)
                    progress.advance(key, len(chunk))
            else:
                for chunk in prefetch(_source(client, desc)):
                    w.write(dec.update(chunk))
                    progress.advance(key, len(chunk))
            dec.verify(f"layer {desc.digest}")
            try:
                digest = w.commit() or expected
            except IntegrityError as e:
                raise IntegrityError(f"layer {desc.digest}: the decrypted bytes do not have the digest recorded in "
                                     f"its wrapped options ({expected}): {e}") from None
        except BaseException:
            w.abort()
            raise
    progress.status(key, "decrypted")
    ann = envelope.strip_annotations(desc.annotations)
    return oci.Descriptor(envelope.decrypted_media_type(desc.media_type), digest, desc.size, ann, desc.platform,
                          desc.urls)
