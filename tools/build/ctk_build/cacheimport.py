"""``--cache-from``: steps found in caches elsewhere (a registry, an OCI layout directory), fetched only when used.

At the start of a build only each cache's manifest and config (the step list, a few KiB) are read. A step's
layer is fetched when the build reaches that step and finds its key there with the same parent chain: then the
blob is streamed into containerd's content store (verified against its digest, and when the build keeps layers
uncompressed, gunzipped on the way and verified against its diff ID), applied on the parent snapshot and
committed under the step's chain ID, exactly as if the step had run here. The step then joins the local cache.

A cache that is missing, unreadable or of another format costs one warning line and is not used; a layer that
fails later (the registry went away, bad bytes) costs one warning and the step is built instead.
"""
from __future__ import annotations

import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ctk_shared import labels as L
from ctk_shared import limits, oci
from ctk_shared.errors import AlreadyExists, CtkError, IntegrityError, NotFound

from .cacheformat import CacheStep, NotACache, parse_config, parse_manifest
from .cachespecs import CacheFrom
from .cachestores import CacheReader, open_reader

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client
    from ctk_shared.containerd.snapshots import Snapshotter


class _Source:
    def __init__(self, reader: CacheReader, steps: list[CacheStep]) -> None:
        self.reader = reader
        self.steps: dict[tuple[str, str], CacheStep] = {(s.key, s.parent_chain): s for s in steps}
        self.broken = False


class RemoteCache:
    """The steps of every ``--cache-from`` that could be read, first source first."""

    def __init__(self, sources: list[_Source], warn: Callable[[str], None]) -> None:
        self.sources = sources
        self.warn = warn
        self.fetched = 0  # layers fetched (for tests and the summary)
        self._lock = threading.Lock()
        self._layer_locks: dict[str, threading.Lock] = {}  # two stages with the same step fetch it once

    def find(self, key: str, parent_chain: str) -> tuple[_Source, CacheStep] | None:
        for src in self.sources:
            step = src.steps.get((key, parent_chain))
            if step is not None and not src.broken:
                return src, step
        return None

    def fetch(self, client: Client, snapshotter: str, key: str, parent_chain: str,
              media_type: str) -> CacheStep | None:
        """The step for ``key`` on ``parent_chain``, its layer stored and unpacked here; None when no cache has
        it or the fetch failed (then its source is dropped, with one warning)."""
        while True:
            found = self.find(key, parent_chain)
            if found is None:
                return None
            src, step = found
            with self._lock:
                layer_lock = self._layer_locks.setdefault(step.layer.digest, threading.Lock())
            try:
                with layer_lock:  # the second one finds the blob and the snapshot there
                    layer = _store_layer(client, src.reader, step, media_type)
                    _unpack(client, snapshotter, layer, step)
            except CtkError as e:
                with self._lock:
                    if not src.broken:
                        src.broken = True
                        self.warn(f"cache from {src.reader.name}: layer {step.layer.digest[7:19]}: {e.message}; "
                                  "building the step instead (this cache is not used further)")
                continue
            with self._lock:
                self.fetched += 1
            return CacheStep(step.key, step.parent_chain, layer, step.diff_id, step.size, step.created)

    def close(self) -> None:
        for src in self.sources:
            src.reader.close()


def load(specs: Iterable[CacheFrom], gopts: GlobalOptions, warn: Callable[[str], None]) -> RemoteCache:
    """Read each cache's manifest and step list; a cache that cannot be used gives one warning and is skipped."""
    sources = []
    for spec in specs:
        reader: CacheReader | None = None
        try:
            reader = open_reader(spec, gopts)
            data, media_type = reader.manifest()
            manifest = parse_manifest(data, media_type)
            cfg = manifest.config
            limits.check_declared("config", cfg.size, f"cache config {cfg.digest}")
            with reader.blob(cfg) as chunks:
                config = limits.read_document(chunks, "config", cfg.size, cfg.digest, f"cache config {cfg.digest}")
            sources.append(_Source(reader, parse_config(config, manifest)))
            reader = None
        except NotFound as e:
            warn(f"cache from {spec} not used: not found ({e.message})")
        except NotACache as e:
            warn(f"cache from {spec} not used: {e.message}")
        except CtkError as e:
            warn(f"cache from {spec} not used: {e.message}")
        finally:
            if reader is not None:
                reader.close()
    return RemoteCache(sources, warn)


def gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream (several members allowed) in bounded pieces: at most 1 MiB of output per step,
    so a small hostile input cannot expand in one go; the caller bounds the total."""
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    started = False
    for chunk in chunks:
        data = chunk
        while data:
            started = True
            try:
                out = d.decompress(data, 1 << 20)
            except zlib.error as e:
                raise IntegrityError(f"layer is not valid gzip: {e}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                started = False
            else:
                data = d.unconsumed_tail
    if started and not d.eof:
        raise IntegrityError("layer's gzip stream is truncated")


def _store_layer(client: Client, reader: CacheReader, step: CacheStep, media_type: str) -> oci.Descriptor:
    """The step's layer in the content store, in the form the build keeps (``media_type``) when the cache has it
    gzipped and the build wants it plain (gunzipped while streaming); else as the cache has it."""
    src = step.layer
    plain = media_type == oci.OCI_LAYER and src.media_type != oci.OCI_LAYER
    want = oci.Descriptor(oci.OCI_LAYER, step.diff_id, step.size) if plain else \
        oci.Descriptor(src.media_type, src.digest, src.size)
    if client.content.exists(want.digest):
        return want
    what = f"layer {src.digest}"
    with reader.blob(src) as chunks:
        body: Iterator[bytes] = limits.exact(chunks, src.size, what, digest=src.digest)
        if plain:
            body = limits.exact(gunzip(body), step.size, f"{what} (uncompressed)", digest=step.diff_id)
        labels = {} if want.media_type == oci.OCI_LAYER else {L.UNCOMPRESSED: step.diff_id}
        with client.content.writer(f"ctk-build-cache-import-{want.digest}", want.size, want.digest) as w:
            if w.exists:
                return want
            w.truncate()
            try:
                for piece in body:
                    w.write(piece)
                w.commit(labels)
            except BaseException:
                w.abort()
                raise
    return want


def _unpack(client: Client, snapshotter: str, layer: oci.Descriptor, step: CacheStep) -> None:
    """Apply the layer on the parent's snapshot and commit it under the step's chain ID (skipped when that
    snapshot exists: the same layer on the same parent from an earlier build)."""
    sn = client.snapshots(snapshotter)
    chain_id = step.chain_id
    try:
        sn.stat(chain_id)
        return
    except NotFound:
        pass
    key = f"ctk-build-import-{time.time_ns()}-{secrets.token_hex(4)}"
    mounts = sn.prepare(key, step.parent_chain)
    try:
        applied = client.diff.apply(layer, mounts)
        if applied.digest != step.diff_id:
            raise IntegrityError(f"unpacked content has digest {applied.digest}, the cache says {step.diff_id}")
        try:
            sn.commit(chain_id, key, {L.SNAPSHOT_REF: chain_id})
        except AlreadyExists:
            _remove(sn, key)
    except BaseException:
        _remove(sn, key)
        raise


def _remove(sn: Snapshotter, key: str) -> None:
    try:
        sn.remove(key)
    except NotFound:
        pass
