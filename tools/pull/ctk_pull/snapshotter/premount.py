"""Mount all of an image's layers at once when containerd prepares the first one.

containerd prepares an image's layers one after the other (each needs its parent), so mounting them one by one
costs a mount round trip per layer. The first lazy Prepare names the image's manifest
(``containerd.io/snapshot/cri.manifest-digest``) and the layers from it on (``…/stargz.layers``); the manifest
gives each layer's size and TOC digest, so their mounts start at once, in parallel (that layer's too), and the
Prepare of each layer then only adopts its mount. One registry client (one connection pool, one ``/v2/`` ping)
fetches the manifest and each layer's TOC tail (footer and TOC, one Range request for most layers), which the
layer process then checks against the TOC digest as if it had fetched it. A mount nobody adopts within ``ttl``
seconds (an abandoned pull) is dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ctk_shared import estargz, oci
from ctk_shared import labels as L
from ctk_shared.errors import CtkError

from .remote import LazyMounter, MountError, RemoteLayer

if TYPE_CHECKING:
    from ctk_shared.registry.client import RegistryClient

log = logging.getLogger("ctk.snapshotter")

WORKERS = 8  # mounts at once: each mostly waits (on the registry, then on its layer process and the kernel)
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
        wanted = {d for d in (labels.get(L.STARGZ_LAYERS) or labels.get(L.CRI_IMAGE_LAYERS, "")).split(",") if d}
        wanted.add(layer.digest)
        if not manifest:
            return
        with self._lock:  # the image's first Prepare registers its layers; the next ones find them pending
            if any(k in self._pending for k in self._by_manifest.get(manifest, ())):
                return
        self._start_all(layer, manifest, wanted)

    def _start_all(self, layer: RemoteLayer, manifest_digest: str, wanted: set[str]) -> None:
        try:
            client = self._client(layer.host)
            layers = self._layers(client, layer, manifest_digest)
        except (CtkError, OSError, ValueError) as e:
            log.debug("manifest %s: no layers mounted ahead: %s", manifest_digest, e)
            return
        todo = [x for x in layers if x.digest in wanted and not self.served(x.digest)]
        users = _Users(client, len(todo))  # the last mount to be done with the client closes it
        with self._lock:
            for x in todo:
                key = (x.digest, x.toc_digest)
                self._by_manifest.setdefault(manifest_digest, set()).add(key)
                if key in self._pending:
                    users.done()
                    continue
                self._pending[key] = (time.monotonic(), self._pool.submit(self._mount, x, users))
        if not todo:
            client.close()

    def _client(self, host: str) -> RegistryClient:
        from ctk_shared import auth
        from ctk_shared.registry.client import RegistryClient
        from ctk_shared.registry.hosts import DEFAULT_HOSTS_DIRS

        return RegistryClient(host, insecure=self.insecure, credentials=auth.get_credentials,
                              hosts_dirs=self.hosts_dirs or DEFAULT_HOSTS_DIRS)

    @staticmethod
    def _layers(client: RegistryClient, layer: RemoteLayer, manifest_digest: str) -> list[RemoteLayer]:
        """The manifest's eStargz layers (those with a TOC digest), with their sizes, in order."""
        data, media_type = client.get_manifest(layer.repo, manifest_digest)  # verified against the digest
        manifest = oci.Manifest.parse(data, media_type)
        return [RemoteLayer(layer.host, layer.repo, x.digest, x.annotations[estargz.TOC_DIGEST_ANNOTATION], x.size)
                for x in manifest.layers if estargz.TOC_DIGEST_ANNOTATION in x.annotations]

    def _mount(self, layer: RemoteLayer, users: _Users) -> Path:
        scheme = ""
        try:
            d = self.allocate()
            tail = self._fetch_tail(users.client, layer, d / "toc.tail")
            if tail is not None:  # the client has answered: it knows on which scheme
                scheme = users.client.base_url.partition("://")[0]
        finally:
            users.done()
        try:
            self.lazy.mount(layer, d / "fs", d / "lazyfs.log", tail, scheme)
        except BaseException:
            self.release(d)
            raise
        return d

    @staticmethod
    def _fetch_tail(client: RegistryClient, layer: RemoteLayer, path: Path) -> Path | None:
        """The layer's footer and TOC, fetched with the image's client into ``path`` for its layer process; None
        (the process fetches them itself, and reports what is wrong) when that fails. Nothing is checked here
        beyond the footer's bounds: the layer process checks the TOC against its digest."""
        from ctk_shared.outputs import write_owned

        from .lazyfs import RangeReader

        try:
            tail = estargz.read_tail(RangeReader(client, layer.repo, layer.digest, size=layer.size), layer.size)
            write_owned(path, tail, mode=0o600)
        except (CtkError, OSError) as e:
            log.debug("layer %s: TOC not fetched ahead: %s", layer.digest, e)
            return None
        return path

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


class _Users:
    """The registry client an image's mounts share, closed (its connections let go) when the last is done."""

    def __init__(self, client: RegistryClient, n: int) -> None:
        self.client = client
        self._left = n
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self.client.close()
