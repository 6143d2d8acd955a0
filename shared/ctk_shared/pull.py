"""Pull: resolve a ref, fetch its documents and layers in parallel into containerd, unpack, record the image.

Everything is written under a lease so nothing is collected before the image record roots it. Layers
download concurrently while the main thread applies them in chain order as each one lands, so fetch and
unpack overlap. Bytes are checked against size and digest while streaming; a blob that fails its check is
aborted, so no bad data stays behind. An interrupted pull leaves its ingests (and its lease, which expires
after a day) so the next pull resumes where this one stopped; the next pull of the same ref takes that lease
over and drops the half-extracted snapshot a killed pull leaves (containerd/leftovers.py).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from . import labels as L
from . import limits, oci
from .errors import CtkError, IntegrityError, Interrupted, InvalidArgument, NotFound, Unavailable
from .images import MAX_STACKED_LAYERS, Unpacker, read_blob
from .progress import NullProgress, Progress
from .reference import Reference

if TYPE_CHECKING:
    from .containerd import Client
    from .decryption_keys import KeySource
    from .registry.client import RegistryClient
    from .registry.mirrors import MirroredClient

LEASE_EXPIRE = timedelta(hours=24)
T = TypeVar("T")
_RETRYABLE_LOCK_WAIT = 0.2
_LOCK_ATTEMPTS = 50
HEAD_START = 5.0  # seconds the first layer of an unpacking pull downloads alone (see _pull_manifest)
_INTERRUPT_CHECK = 0.25  # seconds between looks at Ctrl-C while waiting for a download (see _result)
# containerd's own snapshotters, which cannot serve a layer remotely: no point offering them one
LOCAL_SNAPSHOTTERS = frozenset({"overlayfs", "native", "btrfs", "zfs", "devmapper", "aufs", "blockfile"})


@dataclass(frozen=True)
class PullOptions:
    """How :func:`pull` fetches an image: which platforms, whether and where to unpack, with which keys."""

    platform: oci.Platform | None = None  # None: the host's
    all_platforms: bool = False
    unpack: bool = True
    snapshotter: str = "overlayfs"
    max_concurrent_downloads: int = 3  # in layer order: early layers land first and unpack while the rest download
    decryption_keys: tuple[KeySource, ...] = ()  # for unpacking encrypted layers


@dataclass(frozen=True)
class PullResult:
    """What one pull stored: the image record's name and target, and what was fetched from where."""

    name: str  # the image record's name
    digest: str  # the target's digest (index or manifest)
    media_type: str
    platforms: tuple[str, ...] = field(default=())
    fetched_bytes: int = 0
    remote_layers: int = 0  # served by a remote snapshotter (lazy pulling): not downloaded
    timings: dict[str, float] = field(default_factory=dict, compare=False)  # where the time went (bench)
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # blob digest -> host that sent it

    @property
    def ref(self) -> str:
        """``name@digest`` — what the next tool in a pipe takes."""
        base = self.name.split("@", 1)[0]
        return f"{base}@{self.digest}"


class _Fetcher:
    """Copies blobs from one repository into the content store, one ingest per blob."""

    def __init__(self, client: Client, registry: RegistryClient | MirroredClient, ref: Reference, progress: Progress,
                 stop: threading.Event) -> None:
        self.client = client
        self.registry = registry
        self.repo = ref.path
        self.ref = str(ref)
        self.remote_layers = 0  # layers a remote snapshotter serves: never downloaded
        self.source = L.distribution_source(ref.domain, ref.path)
        self.progress = progress
        self.stop = stop
        self.fetched = 0
        self.sources: dict[str, str] = {}  # digest -> the registry or mirror the layer came from
        self.timings = {"fetch_done": 0.0, "apply": 0.0, "apply_wait": 0.0}
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def mark_fetched(self) -> None:
        with self._lock:
            self.timings["fetch_done"] = max(self.timings["fetch_done"], time.monotonic() - self._t0)

    def _present(self, desc: oci.Descriptor, labels: dict[str, str]) -> bool:
        try:
            info = self.client.content.info(desc.digest)
        except NotFound:
            return False
        if info.size != desc.size:
            raise IntegrityError(f"{desc.digest}: stored size {info.size} differs from descriptor size {desc.size}")
        want = {**labels, **self.source}
        if any(info.labels.get(k) != v for k, v in want.items()):
            self.client.content.update_labels(desc.digest, want)
        return True

    def document(self, desc: oci.Descriptor, kind: str, child_labels: dict[str, str] | None = None) -> bytes:
        """An index, manifest or config: small, read whole, verified, then stored with its GC labels.

        Its declared size must be under the cap of its kind, and the read stops at that size: a registry that
        declares a small config and then streams without end fails after one chunk, as an IntegrityError.
        """
        what = f"{kind} {desc.digest}"
        limits.check_declared(kind, desc.size, what)
        try:
            return read_blob(self.client, desc, kind)
        except NotFound:
            pass
        if kind == "config":
            def read_config() -> bytes:
                with self.registry.open_blob(self.repo, desc.digest) as chunks:
                    self.sources[desc.digest] = chunks.host
                    return limits.read_document(chunks, kind, desc.size, desc.digest, what)

            return self._verified(desc.digest, read_config)
        data, _ = self.registry.get_manifest(self.repo, desc.digest, desc.size, kind)
        return data

    def _verified(self, digest: str, fetch: Callable[[], T]) -> T:
        """``fetch()``; when a mirror sent bytes that fail their digest, once more without that mirror (it is not
        asked again in this pull). Bad bytes from the registry itself stay an error."""
        try:
            return fetch()
        except IntegrityError:
            source = self.sources.get(digest, "")
            if not self.registry.distrust(source):
                raise
            self.progress.note(f"{digest}: bad data from mirror {source}; fetching it again without that mirror")
            return fetch()

    def store_document(self, desc: oci.Descriptor, kind: str, data: bytes, labels: dict[str, str]) -> None:
        self._write_unless_present(
            desc, labels, lambda: self.client.content.write_blob(f"{kind}-{desc.digest}", data, desc.digest,
                                                                 {**labels, **self.source}))

    def _write_unless_present(self, desc: oci.Descriptor, labels: dict[str, str], write: Callable[[], None]) -> bool:
        """Run ``write`` unless the blob is already stored; when a concurrent pull of the same image holds the
        ingest (containerd: "… locked"), wait for it and take its result. False when the blob was present."""
        for attempt in range(_LOCK_ATTEMPTS):
            if self._present(desc, labels):
                return False
            try:
                write()
                return True
            except Unavailable as e:
                if "locked" not in str(e) or attempt == _LOCK_ATTEMPTS - 1:
                    raise
                if self.stop.wait(_RETRYABLE_LOCK_WAIT):
                    raise Interrupted("pull interrupted") from None
        return False

    def layer(self, desc: oci.Descriptor, key: str) -> None:
        """Stream one layer into the store, resuming a partial ingest left by an earlier pull."""
        try:
            self._layer(desc, key)
        finally:
            self.mark_fetched()

    def _layer(self, desc: oci.Descriptor, key: str) -> None:
        written = self._verified(desc.digest, lambda: self._write_unless_present(
            desc, {}, lambda: self._copy(f"layer-{desc.digest}", desc, key)))
        if not written:
            self.progress.status(key, "exists", completed=desc.size)

    def _copy(self, ref: str, desc: oci.Descriptor, key: str) -> None:
        with self.client.content.writer(ref, desc.size, desc.digest) as w:
            if w.exists or w.offset == desc.size:
                w.commit(self.source)
                self.progress.status(key, "exists", completed=desc.size)
                return
            offset = w.offset
            self.progress.status(key, "resuming" if offset else "downloading", completed=offset)
            stream = self.registry.open_blob(self.repo, desc.digest, offset, resumable=True)
            self.sources[desc.digest] = stream.host
            if stream.host != self.registry.host:  # a mirror (hosts.toml) serves it: say which
                self.progress.status(key, f"downloading from {stream.host}")

            def bounded() -> Iterator[bytes]:
                """The body, cut off at the declared size; read on grpc's request thread (ContentWriter.write_all)
                so the bytes go from socket to socket without a hand-off per chunk."""
                n = offset
                for chunk in stream:
                    if self.stop.is_set():
                        raise Interrupted("pull interrupted")
                    n += len(chunk)
                    if n > desc.size:
                        raise IntegrityError(f"layer {desc.digest}: registry sent more than the "
                                             f"{desc.size} bytes the manifest declares")
                    yield chunk
                    self.progress.advance(key, len(chunk))

            try:
                n = w.write_all(bounded())
            except IntegrityError:
                w.abort()
                raise
            finally:
                stream.close()
            if n < desc.size:
                w.abort()
                raise IntegrityError(f"layer {desc.digest}: blob is truncated ({n} of {desc.size} bytes)")
            self.progress.status(key, "verifying")
            try:
                # containerd hashes what it ingests and refuses a commit whose digest is not the expected one:
                # hashing here too cost a fifth of the client's CPU per pull (sha256 of every byte, twice)
                w.commit(self.source)
            except IntegrityError as e:
                w.abort()
                raise IntegrityError(f"layer {desc.digest}: content does not match its digest "
                                     f"(containerd: {e.message})") from None
        with self._lock:
            self.fetched += n - offset
        self.progress.status(key, "downloaded")


def pull(client: Client, registry: RegistryClient | MirroredClient, ref: Reference, opts: PullOptions = PullOptions(),
         progress: Progress | None = None) -> PullResult:
    """Pull ``ref`` into containerd and (by default) unpack it for ``opts.platform``."""
    progress = progress or NullProgress()
    want = opts.platform or oci.host_platform()
    progress.note(f"resolving {ref}")
    target = registry.resolve(ref.path, ref.reference)
    limits.check_declared("index" if target.media_type in oci.INDEX_TYPES else "manifest", target.size, str(ref))
    if target.media_type not in oci.INDEX_TYPES | oci.MANIFEST_TYPES:
        raise InvalidArgument(f"{ref}: unsupported media type {target.media_type!r}",
                              hint="ctk pulls OCI and Docker schema 2 images")
    name = str(ref)
    lease_id = client.leases.create(labels={L.PULL_REF: name}, expire=LEASE_EXPIRE)
    _reclaim_dead_pulls(client, name, lease_id)
    leased = client.with_lease(lease_id)
    stop = threading.Event()
    fetcher = _Fetcher(leased, registry, ref, progress, stop)
    keep_lease = True
    try:
        platforms = _pull_tree(leased, fetcher, target, want, opts, progress, stop)
        from .containerd import Image
        from .cri import put_image

        put_image(leased, Image(name=name, target=target, labels={}, created_at=None, updated_at=None))
        keep_lease = False
        fetcher.timings["total"] = time.monotonic() - fetcher._t0
        return PullResult(name, target.digest, target.media_type, tuple(platforms), fetcher.fetched,
                          fetcher.remote_layers, {k: round(v, 3) for k, v in fetcher.timings.items()},
                          dict(fetcher.sources))
    except (IntegrityError, InvalidArgument):
        keep_lease = False  # bad content was aborted; nothing of this pull is worth keeping
        raise
    except KeyboardInterrupt:
        stop.set()
        raise Interrupted("pull interrupted; run it again to resume") from None
    finally:
        stop.set()
        try:
            if keep_lease:
                _drop_half_extracted(client, lease_id)
            else:
                client.leases.delete(lease_id)
        except CtkError:
            pass


def _result(future: Future[None]) -> None:
    """``future.result()`` in short waits: Ctrl-C is handled in the main thread once it runs Python again, and a
    SIGINT the kernel hands to another thread (a download's, one of grpc's) does not wake a wait without a
    timeout, which would then last until that layer's download ends."""
    while not future.done():
        wait([future], timeout=_INTERRUPT_CHECK)
    future.result()


def _reclaim_dead_pulls(client: Client, name: str, lease_id: str) -> None:
    """Take back what killed pulls left (half-extracted snapshots; a dead pull of ``name`` hands its partial
    downloads to this pull's lease). Best effort: a pull never fails over another pull's leftovers."""
    from .containerd.leftovers import reclaim_pulls

    try:
        reclaim_pulls(client, ref=name, adopt_into=lease_id)
    except CtkError:
        pass


def _drop_half_extracted(client: Client, lease_id: str) -> None:
    """A failed pull keeps its lease (downloads to resume from) but not a layer it was unpacking, and no lease
    that holds nothing (a pull refused before any download: encrypted layers without keys, a bad manifest)."""
    from .containerd.leftovers import Reclaimed, remove_half_extracted

    if not remove_half_extracted(client, lease_id, Reclaimed()):
        client.leases.delete(lease_id)


def _pull_tree(client: Client, fetcher: _Fetcher, target: oci.Descriptor, want: oci.Platform,
               opts: PullOptions, progress: Progress, stop: threading.Event) -> list[str]:
    if target.media_type in oci.INDEX_TYPES:
        data = fetcher.document(target, "index")
        index = oci.Index.parse(data, target.media_type)
        chosen = oci.select_manifest(index, want)
        if opts.all_platforms:
            children = [m for m in index.manifests if m.media_type in oci.MANIFEST_TYPES]
        else:
            children = [chosen]
        platforms: list[str] = []
        for child in children:
            _pull_manifest(client, fetcher, child, opts, progress, stop, unpack=opts.unpack and child == chosen)
            platforms.append(str(child.platform or want))
        # every child, as containerd labels an index: a platform pulled earlier stays referenced (GC skips the
        # children that are not in the store)
        fetcher.store_document(target, "index", data, L.gc_manifests([m.digest for m in index.manifests]))
        return platforms
    plat = _pull_manifest(client, fetcher, target, opts, progress, stop, unpack=opts.unpack)
    return [plat]


def _pull_manifest(client: Client, fetcher: _Fetcher, desc: oci.Descriptor, opts: PullOptions,
                   progress: Progress, stop: threading.Event, unpack: bool) -> str:
    data = fetcher.document(desc, "manifest")
    manifest = oci.Manifest.parse(data, desc.media_type)
    if manifest.config.media_type not in oci.CONFIG_TYPES:
        raise InvalidArgument(f"manifest {desc.digest}: unsupported config media type {manifest.config.media_type!r}")
    for layer in manifest.layers:
        if not oci.is_layer(layer.media_type):
            raise InvalidArgument(f"manifest {desc.digest}: unsupported layer media type {layer.media_type!r}")
    config_data = fetcher.document(manifest.config, "config")
    config = oci.ImageConfig.parse(config_data)
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(f"manifest {desc.digest}: {len(manifest.layers)} layers but the config lists "
                              f"{len(config.diff_ids)} diff_ids")
    unpacker = None
    if unpack and len(manifest.layers) > MAX_STACKED_LAYERS and opts.snapshotter in LOCAL_SNAPSHOTTERS:
        import logging

        logging.getLogger(__name__).warning(
            "%s has %d layers, more than the %d a container can stack: fetched without unpacking (push, save and "
            "inspect work; run refuses it)", fetcher.ref, len(manifest.layers), MAX_STACKED_LAYERS)
        unpack = False
    if unpack:
        from .decryption_keys import layer_payloads, require_keys

        require_keys(manifest.layers, opts.decryption_keys)
        unpacker = Unpacker(client, opts.snapshotter, config.diff_ids, progress,
                            layer_payloads(opts.decryption_keys))
    keys = [layer.digest.split(":", 1)[1][:12] for layer in manifest.layers]
    for layer, key in zip(manifest.layers, keys):
        progress.task(key, key, layer.size)
    # a layer a remote snapshotter may serve from the registry is offered to it before anything is downloaded
    remote = [unpacker is not None and opts.snapshotter not in LOCAL_SNAPSHOTTERS
              and any(k.startswith(L.SNAPSHOT_LABEL_PREFIX) for k in layer.annotations) for layer in manifest.layers]
    digests = [layer.digest for layer in manifest.layers]
    pool = ThreadPoolExecutor(max_workers=max(1, opts.max_concurrent_downloads), thread_name_prefix="ctk-fetch")
    interrupted = False
    try:
        futures: dict[int, Future[None]] = {}

        def fetch(i: int) -> Future[None]:
            if i not in futures:
                futures[i] = pool.submit(fetcher.layer, manifest.layers[i], keys[i])
            return futures[i]

        local = [i for i in range(len(manifest.layers)) if not remote[i]]
        window = max(1, opts.max_concurrent_downloads)

        def fetch_through(last: int) -> None:
            for j in local:
                if j > last:
                    break
                fetch(j)

        try:
            if unpacker is None:
                fetch_through(len(manifest.layers))  # nothing waits for one layer more than another
            elif local:
                # The unpack is one Diff.Apply after another in chain order, and on a fast link it is the longer
                # part of a pull: the first layer downloads alone, so it lands (and its Apply starts) as early as
                # it can; one still downloading after HEAD_START seconds (a slow link) gets company. After that a
                # download starts at most ``window`` layers past the one being unpacked: where the link is faster
                # than the unpack, downloads far ahead of it only took CPU from containerd's Applies; where it is
                # slower, the window never fills and ``window`` downloads run at once as before.
                wait([fetch(local[0])], timeout=HEAD_START)
            for i, layer in enumerate(manifest.layers):
                if unpacker is not None:
                    fetch_through(i + window)
                prepared = None
                if unpacker is not None and remote[i]:
                    if unpacker.has(i):
                        progress.status(keys[i], "exists")
                        continue
                    t = time.monotonic()
                    prepared = unpacker.prepare(i, layer, L.remote_layer_labels(fetcher.ref, desc.digest, digests, i))
                    fetcher.timings["apply"] += time.monotonic() - t
                    if prepared is None:
                        fetcher.remote_layers += 1
                        progress.status(keys[i], "lazy (remote)")
                        continue
                try:
                    t = time.monotonic()
                    _result(fetch(i))
                    fetcher.timings["apply_wait"] += time.monotonic() - t
                    if unpacker is not None:
                        t = time.monotonic()
                        if prepared is not None:
                            unpacker.apply_prepared(i, layer, prepared, keys[i])
                            prepared = None
                        else:
                            unpacker.apply(i, layer, keys[i])
                        fetcher.timings["apply"] += time.monotonic() - t
                finally:
                    if prepared is not None and unpacker is not None:
                        unpacker.discard(prepared[0])
                progress.status(keys[i], "done")
        except BaseException as e:
            stop.set()
            for f in futures.values():
                f.cancel()
            interrupted = isinstance(e, KeyboardInterrupt)
            raise
    finally:
        # Ctrl-C does not wait for the downloads to notice ``stop``: one blocked in a read of a stalled registry
        # would hold the exit for the whole stall limit (the CLI leaves such threads behind: ctk_shared.exiting)
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    # configs root the snapshot chain; manifests root config and layers
    config_labels = dict(L.gc_snapshot(opts.snapshotter, unpacker.chain[-1])) if unpacker and unpacker.chain else {}
    fetcher.store_document(manifest.config, "config", config_data, config_labels)
    fetcher.store_document(desc, "manifest", data,
                           {**L.gc_config(manifest.config.digest), **L.gc_layers([x.digest for x in manifest.layers])})
    return str(config.platform)
