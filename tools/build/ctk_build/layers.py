"""One layer-producing step on containerd: prepare a snapshot on the parent, change it, diff, commit.

The change itself (a RUN task, a COPY into the mounted snapshot) is a callback. The layer is the overlay
upper directory written as a tar by :mod:`upperdiff` (or, with another snapshotter, containerd's diff
service: ``Diff.Diff`` of a view of the parent against the active snapshot), a gzip blob in the content
store, and the snapshot is committed under the new chain ID, so the built image is
already "unpacked" for ctk-run. Everything is created under the build's lease; a failure or Ctrl-C removes
the active snapshot before the error goes on.

With a source date epoch every timestamp in the tar is clamped to the epoch (as upperdiff writes it, or by
rewriting containerd's layer) and the gzip header carries no time, so equal inputs give equal digests.
"""
from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctk_shared import labels as L
from ctk_shared import oci
from ctk_shared.errors import AlreadyExists, CtkError, NotFound
from ctk_shared.limits import exact

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Mount
    from ctk_shared.containerd.snapshots import Snapshotter



@dataclass(frozen=True)
class Layer:
    """The layer a step made: its blob, its diff ID, and the chain ID its snapshot is committed under."""

    desc: oci.Descriptor  # the compressed blob
    diff_id: str
    chain_id: str


def new_key(kind: str) -> str:
    return f"ctk-build-{kind}-{time.time_ns()}-{secrets.token_hex(4)}"


def _remove(sn: Snapshotter, key: str) -> None:
    with contextlib.suppress(NotFound):
        sn.remove(key)


def make_layer(client: Client, snapshotter: str, parent_chain: str, change: Callable[[list[Mount], str], None],
               *, source_date_epoch: int | None = None, compression: str = "gzip") -> Layer:
    """Run ``change(mounts, key)`` on a snapshot of ``parent_chain``; the resulting layer. A step that changed
    nothing still gives a (empty) layer, as buildah and the classic builder do, so history and layers match."""
    sn = client.snapshots(snapshotter)
    key = new_key("step")
    mounts = sn.prepare(key, parent_chain)
    from .runner import settle

    try:
        change(mounts, key)
        from . import upperdiff

        upper = upperdiff.upper_source(mounts, parent_chain)
        if upper is not None:  # the change is the upper directory: tar it (times clamped to an epoch) ourselves
            desc, diff_id = upperdiff.write_layer(client, upper, f"ctk-build-diff-{key}", compression,
                                                  source_date_epoch)
        else:
            settle(key)  # containerd mounts the snapshot to diff it: never while a step's overlay still has it
            desc, diff_id = diff_snapshot(client, snapshotter, parent_chain, mounts, key, compression)
            if source_date_epoch is not None:
                desc, diff_id = normalize_layer(client, desc, source_date_epoch, compression)
        chain_id = oci.chain_ids([parent_chain, diff_id])[1] if parent_chain else diff_id
        settle(key)  # a RUN's step container is deleted while its layer was written: its rootfs unmounted now
        try:
            sn.commit(chain_id, key, {L.SNAPSHOT_REF: chain_id})
        except AlreadyExists:
            _remove(sn, key)  # the same layer on the same parent exists already (an identical earlier build)
        return Layer(desc, diff_id, chain_id)
    except BaseException:
        with contextlib.suppress(Exception):
            settle(key)  # its error, if any, is not the one to report
        _remove(sn, key)
        raise


def diff_snapshot(client: Client, snapshotter: str, parent_chain: str, mounts: list[Mount], key: str,
                  compression: str = "gzip") -> tuple[oci.Descriptor, str]:
    """containerd's diff of the active snapshot ``key`` against a view of its parent: (blob, diffID)."""
    sn = client.snapshots(snapshotter)
    view = new_key("parent")
    lower = sn.view(view, parent_chain)
    media_type = oci.OCI_LAYER_GZIP if compression == "gzip" else oci.OCI_LAYER
    try:
        desc = client.diff.diff(lower, mounts, media_type, ref=f"ctk-build-diff-{key}")
    finally:
        _remove(sn, view)
    if media_type == oci.OCI_LAYER:
        return oci.Descriptor(media_type, desc.digest, desc.size), desc.digest
    diff_id = client.content.info(desc.digest).labels.get(L.UNCOMPRESSED, "")
    if not diff_id:
        raise CtkError(f"containerd's diff gave layer {desc.digest} without an uncompressed digest label")
    return oci.Descriptor(media_type, desc.digest, desc.size), diff_id


def normalize_layer(client: Client, desc: oci.Descriptor, epoch: int,
                    compression: str = "gzip") -> tuple[oci.Descriptor, str]:
    """Rewrite a layer with every time clamped to ``epoch`` (and no gzip timestamp): reproducible bytes."""
    import gzip
    import io
    import tarfile

    raw = _read_blob(client, desc)
    if desc.media_type == oci.OCI_LAYER_GZIP:
        raw = gzip.decompress(raw)
    src = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    out = io.BytesIO()
    dst = tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT)
    for m in src:
        m.mtime = min(int(m.mtime), epoch)
        m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in ("mtime", "atime", "ctime")}
        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    dst.close()
    tar_bytes = out.getvalue()
    diff_id = oci.sha256_digest(tar_bytes)
    if compression != "gzip":
        client.content.write_blob(f"ctk-build-sde-{diff_id}", tar_bytes, diff_id)
        return oci.Descriptor(oci.OCI_LAYER, diff_id, len(tar_bytes)), diff_id
    blob = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    digest = oci.sha256_digest(blob)
    client.content.write_blob(f"ctk-build-sde-{digest}", blob, digest, {L.UNCOMPRESSED: diff_id})
    return oci.Descriptor(oci.OCI_LAYER_GZIP, digest, len(blob)), diff_id


def _read_blob(client: Client, desc: oci.Descriptor) -> bytes:
    """A layer blob, read no further than its declared size and checked against its digest."""
    return b"".join(exact(client.content.read(desc.digest), desc.size, f"layer {desc.digest}",
                          digest=desc.digest))


def compression_of(desc: oci.Descriptor) -> str:
    return "gzip" if oci.layer_compression(desc.media_type) == "gzip" else "uncompressed"


def convert_layer(client: Client, desc: oci.Descriptor, diff_id: str, compression: str) -> oci.Descriptor:
    """The same layer in the other form (a cached layer reused by a build that wants the other compression).
    gzip goes through pigz when installed (all cores), else zlib."""
    import gzip
    import shutil
    import subprocess

    data = _read_blob(client, desc)
    if compression != "gzip":
        raw = gzip.decompress(data)
        client.content.write_blob(f"ctk-build-conv-{diff_id}", raw, diff_id)
        return oci.Descriptor(oci.OCI_LAYER, diff_id, len(raw))
    pigz = shutil.which("pigz")
    if pigz:
        blob = subprocess.run([pigz, "-c", "-n", "-6"], input=data, capture_output=True, check=True).stdout
    else:
        blob = gzip.compress(data, compresslevel=6, mtime=0)
    digest = oci.sha256_digest(blob)
    client.content.write_blob(f"ctk-build-conv-{digest}", blob, digest, {L.UNCOMPRESSED: diff_id})
    return oci.Descriptor(oci.OCI_LAYER_GZIP, digest, len(blob))
