"""The layer cache, kept inside containerd so it follows the namespace and survives any ctk process.

A step's key is ``sha256(parent key, instruction, inputs)``: the base manifest digest starts the chain;
``RUN`` adds its command, environment, user, directory and network; ``COPY``/``ADD`` add a checksum of the
copied files' names, modes and contents (not their mtimes). A hit needs no work at all.

Each entry is a tiny JSON blob in the content store, found by its ``ctk/build.cache`` label, that names the
layer blob and the committed snapshot. Its ``containerd.io/gc.root`` label keeps it, and through its
``gc.ref`` labels the layer and snapshot, from the garbage collector; ``ctk-build prune`` deletes the entries
and lets the collector take what no image uses.

With ``--cache-from`` a key missing here is looked up in the imported caches (:mod:`cacheimport`), whose hit is
fetched, unpacked and stored here. Every step the build uses or makes is recorded with its parent chain, for
``--cache-to`` (:mod:`cacheexport`).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as L
from ctk_shared import oci
from ctk_shared.errors import CtkError, NotFound, Unavailable
from ctk_shared.limits import read_document

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

    from .cacheimport import RemoteCache

CACHE_LABEL = "ctk/build.cache"
GC_ROOT = "containerd.io/gc.root"
FORMAT = 1


def chain_key(parent: str, *parts: Any) -> str:
    """The next key in a chain: stable JSON of the parts, hashed with the parent key."""
    h = hashlib.sha256()
    h.update(parent.encode())
    h.update(b"\n")
    h.update(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A cached step: its key, the layer it made (None: no file changed), and that layer's diff and chain IDs."""

    key: str
    created: str  # when the layer was first built (history time)
    layer: oci.Descriptor | None  # None: the step changed no file
    diff_id: str = ""
    chain_id: str = ""
    digest: str = ""  # of the entry blob itself


@dataclass(frozen=True)
class Used:
    """A step this build used or made: what ``--cache-to`` exports."""

    parent_chain: str
    entry: CacheEntry


class CacheShare:
    """What the builders of one build share (one per ``--platform``): the imported caches, and the steps used."""

    def __init__(self, remote: RemoteCache | None = None) -> None:
        self.remote = remote  # --cache-from
        self.used: dict[str, Used] = {}  # key -> the step as the image has it
        self.lock = threading.Lock()


class Cache:
    def __init__(self, client: Client, snapshotter: str, *, read: bool = True,
                 share: CacheShare | None = None) -> None:
        self.client = client
        self.snapshotter = snapshotter
        self.read = read
        self.share = share or CacheShare()

    def _entries(self, key: str) -> list[CacheEntry]:
        out = []
        for info in self.client.content.list([f'labels."{CACHE_LABEL}"=="{key}"']):
            try:
                doc = json.loads(read_document(self.client.content.read(info.digest), "document", info.size,
                                               info.digest, f"cache entry {info.digest}"))
                layer = oci.Descriptor.from_json(doc["layer"]) if doc.get("layer") else None
                out.append(CacheEntry(key, str(doc["created"]), layer, str(doc.get("diff_id", "")),
                                      str(doc.get("chain_id", "")), info.digest))
            except (CtkError, ValueError, KeyError):
                continue
        return out

    def lookup(self, key: str, media_type: str = "", parent_chain: str | None = None) -> CacheEntry | None:
        """A usable entry for ``key``, one whose layer has ``media_type`` first; with ``parent_chain`` (the chain
        the step applies on) the imported caches are asked too, and the hit is recorded for export."""
        if not self.read:
            return None
        usable = [e for e in self._entries(key) if e.layer is None or self._usable(e)]
        usable.sort(key=lambda e: e.layer is not None and e.layer.media_type != media_type)
        hit = usable[0] if usable else None
        remote = self.share.remote
        if hit is None and remote is not None and parent_chain is not None:
            step = remote.fetch(self.client, self.snapshotter, key, parent_chain, media_type)
            if step is not None:
                self.store(key, step.created, step.layer, step.diff_id, step.chain_id)
                hit = CacheEntry(key, step.created, step.layer, step.diff_id, step.chain_id)
        if hit is not None and parent_chain is not None:
            self._use(parent_chain, hit)
        return hit

    def form(self, key: str, media_type: str) -> CacheEntry | None:
        """The local entry of ``key`` whose layer is stored as ``media_type`` (an export wants gzip), if any."""
        for e in self._entries(key):
            if e.layer is not None and e.layer.media_type == media_type and self._usable(e):
                return e
        return None

    def used_steps(self) -> list[Used]:
        with self.share.lock:
            return list(self.share.used.values())

    def _use(self, parent_chain: str, entry: CacheEntry) -> None:
        with self.share.lock:
            self.share.used[entry.key] = Used(parent_chain, entry)

    def _usable(self, entry: CacheEntry) -> bool:
        """The layer blob and its snapshot must both still exist (a prune or GC may have taken them)."""
        assert entry.layer is not None
        try:
            self.client.content.info(entry.layer.digest)
            self.client.snapshots(self.snapshotter).stat(entry.chain_id)
        except NotFound:
            return False
        return True

    def store(self, key: str, created: str, layer: oci.Descriptor | None, diff_id: str = "",
              chain_id: str = "", parent_chain: str | None = None) -> None:
        """Remember a step; with ``parent_chain`` it is also the form this build's image uses (for export)."""
        doc = {"v": FORMAT, "key": key, "created": created, "layer": layer.to_json() if layer else None,
               "diff_id": diff_id, "chain_id": chain_id}
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        digest = oci.sha256_digest(data)
        labels = {CACHE_LABEL: key, GC_ROOT: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if layer is not None:
            labels[f"{L.GC_REF_CONTENT}.layer"] = layer.digest
            labels.update(L.gc_snapshot(self.snapshotter, chain_id))
        self._write_entry(digest, data, labels)
        if parent_chain is not None:
            self._use(parent_chain, CacheEntry(key, created, layer, diff_id, chain_id, digest))
        for old in self._entries(key):  # one entry per key and layer form: --no-cache rebuilds replace
            same_form = (old.layer.media_type if old.layer else "") == (layer.media_type if layer else "")
            if old.digest != digest and same_form:
                try:
                    self.client.content.delete(old.digest)
                except NotFound:
                    pass


    def _write_entry(self, digest: str, data: bytes, labels: dict[str, str]) -> None:
        """Stages running at once can store the very same entry (one cached step both use): containerd then
        answers the second writer that the ingest is locked; the first one's entry is as good."""
        for attempt in range(20):
            try:
                with _WRITES:
                    self.client.content.write_blob(f"ctk-build-cache-{digest}", data, digest, labels)
                return
            except Unavailable as e:  # another ctk-build process writes the same entry
                if "locked" not in e.message or attempt == 19:
                    raise
                if self.client.content.exists(digest):
                    return
                time.sleep(0.1)


_WRITES = threading.Lock()  # one entry write at a time in this process


def prune(client: Client) -> tuple[int, int]:
    """Drop every cache entry of the namespace; returns (entries, bytes of layers they referenced).
    containerd's GC then removes the layers and snapshots that no image uses."""
    count = size = 0
    for info in client.content.list([f'labels."{CACHE_LABEL}"']):
        layer = info.labels.get(f"{L.GC_REF_CONTENT}.layer")
        if layer:
            try:
                size += client.content.info(layer).size
            except NotFound:
                pass
        try:
            client.content.delete(info.digest)
            count += 1
        except NotFound:
            pass
    return count, size
