"""Mount an image's next layers while containerd is still preparing the first one.

containerd prepares an image's layers one after the other (each needs its parent), so mounting them one by one
costs a mount round trip per layer. The first lazy Prepare names the image's manifest
(``containerd.io/snapshot/cri.manifest-digest``) and the layers that follow (``…/stargz.layers``); the manifest
gives each following layer's TOC digest, so their mounts can start at once, in parallel, and the Prepare of each
layer then only adopts its mount. A mount nobody adopts within ``ttl`` seconds (an abandoned pull) is dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ctk_shared import estargz, oci
from ctk_shared import labels as L
from ctk_shared.errors import CtkError

from .remote import LazyMounter, MountError, RemoteLayer

log = logging.getLogger("ctk.snapshotter")

WORKERS = 3  # mounts at once
TTL = 600.0


class Premounts:
    """``allocate()`` gives a fresh snapshot dir (held back from clean-up) and ``release(dir)`` unmounts and
    deletes one; the store owns both, this class only decides when. The manifest is read before the first
    Prepare returns, so each following Prepare finds its layer's mount (ready or under way) registered."""

    def __init__(self, lazy: LazyMounter, allocate: Callable[[], Path], release: Callable[[Path], None],
                 served: Callable[[str], bool], *, insecure: bool = False, hosts_dirs: Sequence[str] = (),
                 ttl: float = TTL) -> None:
        self.lazy = lazy
        self.allocate, self.release = allocate, release
        self.served = served  # whether a layer (digest) is mounted for a snapshot already
        self.insecure, self.hosts_dirs = insecure, tuple(hosts_dirs)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], tuple[float, Future[Path]]] = {}  # (layer, TOC digest) -> mount
        self._by_manifest: dict[str, set[tuple[str, str]]] = {}  # manifest digest -> its layers mounted ahead
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="premount")

    def start(self, layer: RemoteLayer, labels: Mapping[str, str]) -> None:
        """Begin mounting the layers after ``layer`` (in the background; never fails the caller)."""
        manifest = labels.get(L.CRI_MANIFEST_DIGEST, "")
        following = [d for d in (labels.get(L.STARGZ_LAYERS) or labels.get(L.CRI_IMAGE_LAYERS, "")).split(",")
                     if d and d != layer.digest]
        if not manifest or not following:
            return
        with self._lock:  # the image's first Prepare registers its layers; the next ones find them pending
            if any(k in self._pending for k in self._by_manifest.get(manifest, ())):
                return
        self._start_following(layer, manifest, set(following))

    def _start_following(self, layer: RemoteLayer, manifest_digest: str, following: set[str]) -> None:
        try:
            tocs = self._toc_digests(layer, manifest_digest)
        except (CtkError, OSError, ValueError) as e:
            log.debug("manifest %s: no layers mounted ahead: %s", manifest_digest, e)
            return
        for digest, toc in tocs.items():
            if digest not in following or self.served(digest):
                continue
            nxt = RemoteLayer(layer.host, layer.repo, digest, toc)
            with self._lock:
                self._by_manifest.setdefault(manifest_digest, set()).add((digest, toc))
                if (digest, toc) in self._pending:
                    continue
                self._pending[(digest, toc)] = (time.monotonic(), self._pool.submit(self._mount, nxt))

    def _toc_digests(self, layer: RemoteLayer, manifest_digest: str) -> dict[str, str]:
        from ctk_shared import auth
        from ctk_shared.registry.client import RegistryClient
        from ctk_shared.registry.hosts import DEFAULT_HOSTS_DIRS

        client = RegistryClient(layer.host, insecure=self.insecure, credentials=auth.get_credentials,
                                hosts_dirs=self.hosts_dirs or DEFAULT_HOSTS_DIRS)
        data, media_type = client.get_manifest(layer.repo, manifest_digest)  # verified against the digest
        manifest = oci.Manifest.parse(data, media_type)
        return {x.digest: x.annotations[estargz.TOC_DIGEST_ANNOTATION] for x in manifest.layers
                if estargz.TOC_DIGEST_ANNOTATION in x.annotations}

    def _mount(self, layer: RemoteLayer) -> Path:
        d = self.allocate()
        try:
            self.lazy.mount(layer, d / "fs", d / "lazyfs.log")
        except BaseException:
            self.release(d)
            raise
        return d

    def take(self, layer: RemoteLayer) -> Path | None:
        """The snapshot dir where ``layer`` is (being) mounted ahead, once mounted; None if it is not, or failed
        (then the caller mounts it itself, and reports why if it fails again)."""
        with self._lock:
            entry = self._pending.pop((layer.digest, layer.toc_digest), None)
        if entry is None:
            return None
        try:
            return entry[1].result()
        except (MountError, OSError) as e:
            log.debug("layer %s was not mounted ahead: %s", layer.digest, e)
            return None

    def sweep(self) -> None:
        """Drop mounts nobody adopted within the TTL."""
        now = time.monotonic()
        with self._lock:
            old = [k for k, (t, f) in self._pending.items() if now - t > self.ttl and f.done()]
            stale = [self._pending.pop(k)[1] for k in old]
            for m, keys in list(self._by_manifest.items()):
                if not any(k in self._pending for k in keys):
                    del self._by_manifest[m]
        for f in stale:
            if f.exception() is None:
                log.info("dropping %s: mounted ahead, never prepared", f.result())
                self.release(f.result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
