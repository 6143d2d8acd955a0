"""Push: copy an image from containerd's store to a registry, blobs in parallel, manifests last.

A blob the registry already has is skipped; one it has under another repository (known from the
``distribution.source`` label written at pull time) is mounted instead of uploaded.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import labels as L
from . import oci
from .errors import CtkError
from .images import read_blob, require_blob, resolve_manifest
from .progress import NullProgress, Progress
from .reference import Reference

if TYPE_CHECKING:
    from .containerd import Client, Image
    from .registry.client import RegistryClient
    from .registry.mirrors import MirroredClient

MAX_PARALLEL_UPLOADS = 4


def push(client: Client, registry: RegistryClient | MirroredClient, image: Image, ref: Reference,
         platform: oci.Platform | None = None, progress: Progress | None = None) -> str:
    """Push ``image`` as ``ref``; returns the digest of the pushed target (index or manifest)."""
    progress = progress or NullProgress()
    target = image.target
    if target.media_type in oci.INDEX_TYPES:
        index_data = read_blob(client, target)
        index = oci.Index.parse(index_data, target.media_type)
        children = [m for m in index.manifests if m.media_type in oci.MANIFEST_TYPES]
        present = [m for m in children if client.content.exists(m.digest)]
        if platform is not None or len(present) < len(children):
            # push what we have: the one platform's manifest, like `ctr push` with --platform
            target = resolve_manifest(client, target, platform)
            if platform is None:
                progress.note(f"only {target.platform or 'the host platform'} of {image.name} is in the store; "
                              "pushing that manifest")
        else:
            for child in children:
                _push_manifest(client, registry, ref, child, progress)
            registry.put_manifest(ref.path, ref.tag or target.digest, index_data, target.media_type)
            return target.digest
    _push_manifest(client, registry, ref, target, progress, tag=ref.tag or target.digest)
    return target.digest


def _push_manifest(client: Client, registry: RegistryClient | MirroredClient, ref: Reference, desc: oci.Descriptor,
                   progress: Progress, tag: str | None = None) -> None:
    data = read_blob(client, desc)
    manifest = oci.Manifest.parse(data, desc.media_type)
    blobs = [manifest.config, *manifest.layers]
    for b in blobs:
        progress.task(b.digest[7:19], b.digest[7:19], b.size)
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_UPLOADS, thread_name_prefix="ctk-push") as pool:
        for fut in [pool.submit(_push_blob, client, registry, ref, b, progress) for b in blobs]:
            fut.result()
    registry.put_manifest(ref.path, tag or desc.digest, data, desc.media_type)


def _push_blob(client: Client, registry: RegistryClient | MirroredClient, ref: Reference, desc: oci.Descriptor,
               progress: Progress) -> None:
    key = desc.digest[7:19]
    if registry.blob_exists(ref.path, desc.digest):
        progress.status(key, "exists", completed=desc.size)
        return
    require_blob(client, desc, str(ref))
    info = client.content.info(desc.digest)
    source = info.labels.get(f"{L.DISTRIBUTION_SOURCE}.{ref.domain}")
    if source:
        for repo in source.split(","):
            if repo and repo != ref.path:
                try:
                    if registry.mount_blob(ref.path, desc.digest, repo):
                        progress.status(key, "mounted", completed=desc.size)
                        return
                except CtkError:
                    pass  # mount is an optimisation: fall back to uploading
    progress.status(key, "uploading")

    def chunks() -> Iterator[bytes]:
        for chunk in client.content.read(desc.digest):
            progress.advance(key, len(chunk))
            yield chunk

    registry.upload_blob(ref.path, desc.digest, desc.size, chunks())
    progress.status(key, "pushed")
