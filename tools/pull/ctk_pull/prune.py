"""``ctk-pull prune``: remove dangling images (``-a``: every image no container uses), and what killed pulls left.

Docker's ``image prune``. What "dangling" means in containerd, where every image record has a name:

* ``ctk-build``'s untagged results (records named ``ctk-build-dangling@sha256:…``), and records named by a
  bare digest (``sha256:…``, as some tools make them): images nobody can name by a tag;
* not an image pulled by digest (``repo@sha256:…``): Docker keeps those too (they have a repo digest).

With ``-a``, every image whose name and target no container of the namespace refers to. The space reported
is what the removed images held alone: blobs and unpacked layers that no remaining image shares.

A pull killed mid-way leaves a half-extracted snapshot and a lease (containerd/leftovers.py): prune removes
the snapshots of pulls whose process is gone; with ``-a`` also their partial downloads, which otherwise stay
for the next pull of that image to resume from (until the lease expires, after a day).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError, NotFound

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Image

    from .options import PruneOptions

BUILD_DANGLING_PREFIX = "ctk-build-dangling@"  # ctk-build's name for an untagged result (ctk_build.ops.DANGLING)


def is_dangling(name: str) -> bool:
    return name.startswith(BUILD_DANGLING_PREFIX) or (name.startswith("sha256:") and "/" not in name)


def warning(all_images: bool) -> str:
    """Docker's prompt text for ``image prune`` (``-a`` or not)."""
    if all_images:
        return "This will remove all images without at least one container associated to them."
    return "This will remove all dangling images."


@dataclass
class _Footprint:
    """What one image holds: its blobs (digest → size) and its snapshot chain."""

    blobs: dict[str, int] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)
    created: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)


def _footprint(client: Client, image: Image) -> _Footprint:
    from ctk_shared import images as store
    from ctk_shared.prune import parse_until

    fp = _Footprint(blobs={image.target.digest: image.target.size}, created=image.created_at,
                    labels=dict(image.labels))
    try:
        img = store.load_local(client, image.name)
    except CtkError:
        return fp  # content missing (another platform, another tool): only its record and target count
    fp.blobs[img.manifest_desc.digest] = img.manifest_desc.size
    fp.blobs[img.manifest.config.digest] = img.manifest.config.size
    fp.blobs.update({layer.digest: layer.size for layer in img.manifest.layers})
    fp.chain = img.chain_ids
    labels = img.config.config.get("Labels")
    if isinstance(labels, dict):
        fp.labels.update({str(k): str(v) for k, v in labels.items()})
    if img.config.created:
        try:
            fp.created = parse_until(img.config.created)
        except CtkError:
            pass
    return fp


def _used(client: Client, images: list[Image]) -> set[str]:
    """Names and target digests of the images that containers refer to."""
    by_name = {i.name: i.target.digest for i in images}
    used: set[str] = set()
    for c in client.containers.list():
        if not c.image:
            continue
        used.add(c.image)
        if c.image in by_name:
            used.add(by_name[c.image])
        elif "@" in c.image:
            used.add(c.image.rsplit("@", 1)[1])
    return used


def _exclusive_bytes(client: Client, snapshotter: str, doomed: list[_Footprint], kept_blobs: set[str],
                     kept_chain: set[str]) -> int:
    """Bytes of the blobs and unpacked layers of ``doomed`` that no kept image shares (measured before removal)."""
    sn = client.snapshots(snapshotter)
    total = 0
    counted: set[str] = set()
    for fp in doomed:
        for digest, size in fp.blobs.items():
            if digest not in kept_blobs and digest not in counted:
                counted.add(digest)
                total += size
        for chain_id in fp.chain:
            if chain_id not in kept_chain and chain_id not in counted:
                counted.add(chain_id)
                try:
                    total += sn.usage(chain_id)[0]
                except CtkError:
                    pass
    return total


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed, in the order the cli prints it (as Docker's ``image prune``)."""

    images: list[str]  # "untagged: NAME" and "deleted: DIGEST" lines
    snapshots: list[str]  # the pull leftovers removed
    leases: list[str]
    reclaimed: int  # bytes


def prune(client: Client, gopts: GlobalOptions, opts: PruneOptions) -> Pruned:
    """The prompt is the cli's; this removes at once."""
    from ctk_shared.containerd.leftovers import reclaim_pulls
    from ctk_shared.prune import PruneFilter

    all_images, flt = opts.all_images, opts.filters or PruneFilter()
    images = client.images.list()
    used = _used(client, images)  # never an image a container refers to, dangling or not (as Docker)
    footprints = {i.name: _footprint(client, i) for i in images}
    doomed = [i for i in images
              if (all_images or is_dangling(i.name)) and i.name not in used and i.target.digest not in used
              and flt.matches(footprints[i.name].created, footprints[i.name].labels)]
    kept = [i for i in images if i not in doomed]
    kept_blobs = {d for i in kept for d in footprints[i.name].blobs}
    kept_chain = {c for i in kept for c in footprints[i.name].chain}

    total = _exclusive_bytes(client, gopts.snapshotter, [footprints[i.name] for i in doomed], kept_blobs, kept_chain)
    lines: list[str] = []
    kept_targets = {i.target.digest for i in kept}
    groups: dict[str, list[Image]] = {}  # as Docker: every name of one image untagged, then the image deleted once
    for image in doomed:
        groups.setdefault(image.target.digest, []).append(image)
    order = [image for group in groups.values() for image in group]
    last = order[-1].name if order else ""
    for digest, group in groups.items():
        gone = False
        for image in group:
            try:
                client.images.delete(image.name, sync=image.name == last)  # the last one collects at once
            except NotFound:
                continue
            gone = True
            if not is_dangling(image.name):
                lines.append(f"untagged: {image.name}")
        if gone and digest not in kept_targets:
            lines.append(f"deleted: {digest}")
    left = reclaim_pulls(client, drop_downloads=all_images)
    total += left.snapshot_bytes + left.download_bytes
    return Pruned(lines, list(left.snapshots), list(left.leases), total)
