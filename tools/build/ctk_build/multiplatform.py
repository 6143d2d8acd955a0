"""One build for each target platform, and the image they make together.

``--platform a,b`` runs the Dockerfile once per platform (a :class:`~ctk_build.builder.Builder` each, one after
the other, under the caller's lease) and ties the manifests together in an OCI image index, each entry
carrying its platform: the index is what gets tagged and pushed. With no ``--platform`` or a single one the
result stays one manifest, as before.

Every platform's emulator is checked before the first step of the first platform runs, so a missing QEMU
fails the build before any work. When a platform was asked for explicitly, its image config carries that
platform (BuildKit does the same, even when a base image of another platform was used with a warning).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ctk_shared import labels as L
from ctk_shared import oci

from .builder import Builder, BuildOptions
from .imagestate import WrittenImage, write_image

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

    from .dockerfile.instructions import BuildPlan
    from .progress import BuildProgress
    from .sources import SourceTree


@dataclass(frozen=True)
class Built:
    """The stored result: ``written.manifest`` is an index when several platforms were built (its
    ``config_digest`` is then "": there is no one config)."""

    written: WrittenImage
    platforms: tuple[oci.Platform, ...]
    cached_steps: int
    steps: int


def build_platforms(client: Client, gopts: GlobalOptions, opts: BuildOptions, plan: BuildPlan,
                    progress: BuildProgress, context: SourceTree | None,
                    platforms: tuple[oci.Platform, ...]) -> Built:
    """Build for each of ``platforms`` (none: the host's, implicitly) and store the manifests (and index)
    under the caller's lease; ``opts.labels`` go into every config."""
    multi = len(platforms) > 1
    targets: tuple[oci.Platform | None, ...] = platforms or (None,)
    builders = [Builder(client, gopts, replace(opts, platform=p, show_platform=multi), plan, progress, context)
                for p in targets]
    for b in builders:  # before any step of any platform
        b.check_emulators(b.needed(b.target_stage()))
    made: list[tuple[oci.Platform, WrittenImage]] = []
    for b, p in zip(builders, targets):
        state = b.build().state
        if p is not None:
            state.platform = p
        if opts.labels:
            state.config["Labels"] = {**(state.config.get("Labels") or {}), **opts.labels}
        made.append((state.platform, write_image(client, state, gopts.snapshotter)))
    cached = sum(b.cached_steps for b in builders)
    steps = sum(b.step_no for b in builders)
    if not multi:
        return Built(made[0][1], (made[0][0],), cached, steps)
    return Built(WrittenImage(write_index(client, made), ""), tuple(p for p, _ in made), cached, steps)


def write_index(client: Client, manifests: list[tuple[oci.Platform, WrittenImage]]) -> oci.Descriptor:
    """An OCI image index of the platforms' manifests, stored with the GC labels that keep them."""
    entries = [{"mediaType": w.manifest.media_type, "digest": w.manifest.digest, "size": w.manifest.size,
                "platform": p.to_json()} for p, w in manifests]
    data = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": entries},
                      separators=(",", ":")).encode()
    digest = oci.sha256_digest(data)
    client.content.write_blob(f"ctk-build-index-{digest}", data, digest,
                              L.gc_manifests([w.manifest.digest for _, w in manifests]))
    return oci.Descriptor(oci.OCI_INDEX, digest, len(data))
