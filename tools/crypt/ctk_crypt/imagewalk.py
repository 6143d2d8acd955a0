"""Rewriting an image with some of its layers transformed: index → manifests → layers, new documents on top.

Encryption, decryption and adding recipients all have the same shape: pick platforms and layers, replace
each picked layer's descriptor by a transformed one, write new manifests (always OCI: encrypted layers
cannot live in a Docker schema2 manifest) and a new index, with the GC labels that keep their children.
Everything is written under the caller's lease; the caller creates the image record at the end, so an
error or Ctrl-C part way leaves no image and nothing the garbage collector will keep.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as L
from ctk_shared import oci
from ctk_shared.errors import InvalidArgument, UsageError
from ctk_shared.images import read_blob

from .envelope import OCI_EQUIVALENT

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

# (layer index, layer count, descriptor) -> new descriptor, or the same one to leave it alone
LayerFn = Callable[[int, int, oci.Descriptor], oci.Descriptor]


@dataclass
class Selection:
    """Which manifests and layers a transformation touches (empty = all)."""

    platforms: list[oci.Platform] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)  # 0-based; negative counts from the top layer

    def wants_platform(self, platform: oci.Platform | None) -> bool:
        if not self.platforms:
            return True
        return platform is not None and any(p.matches(platform) for p in self.platforms)

    def wants_layer(self, i: int, count: int) -> bool:
        if not self.layers:
            return True
        return any(n == i or (n < 0 and count + n == i) for n in self.layers)


@dataclass
class WalkResult:
    """What :func:`rewrite` made: the new target (the old one if unchanged), the layers changed, manifests missing."""

    target: oci.Descriptor
    changed_layers: int = 0
    skipped_manifests: list[str] = field(default_factory=list)  # listed in the index, not in the store


def _write_doc(client: Client, media_type: str, doc: dict[str, Any], labels: dict[str, str],
               template: oci.Descriptor) -> oci.Descriptor:
    data = json.dumps(doc, separators=(",", ":")).encode()
    digest = oci.sha256_digest(data)
    client.content.write_blob(f"ctk-crypt-{digest}", data, digest, labels)
    return oci.Descriptor(media_type, digest, len(data), dict(template.annotations), template.platform, template.urls)


def rewrite(client: Client, target: oci.Descriptor, fn: LayerFn, selection: Selection) -> WalkResult:
    result = WalkResult(target)
    result.target = _walk(client, target, fn, selection, result, depth=0)
    return result


def _walk(client: Client, desc: oci.Descriptor, fn: LayerFn, sel: Selection, result: WalkResult,
          depth: int) -> oci.Descriptor:
    if desc.media_type in oci.MANIFEST_TYPES:
        return _manifest(client, desc, fn, sel, result)
    if desc.media_type not in oci.INDEX_TYPES or depth > 3:
        raise InvalidArgument(f"unsupported image target media type {desc.media_type!r}")
    data = read_blob(client, desc)
    raw = oci.parse_json_document(data, "image index")
    index = oci.Index.parse(data, desc.media_type)
    children: list[oci.Descriptor] = []
    for child in index.manifests:
        if child.media_type in oci.MANIFEST_TYPES and not sel.wants_platform(child.platform):
            children.append(child)
        elif not client.content.exists(child.digest):
            result.skipped_manifests.append(str(child.platform or child.digest))
            children.append(child)
        else:
            children.append(_walk(client, child, fn, sel, result, depth + 1))
    if all(a is b for a, b in zip(children, index.manifests)):
        return desc
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                           "manifests": [c.to_json() for c in children]}
    if raw.get("annotations"):
        doc["annotations"] = raw["annotations"]
    return _write_doc(client, oci.OCI_INDEX, doc, L.gc_manifests([c.digest for c in children]), desc)


def _manifest(client: Client, desc: oci.Descriptor, fn: LayerFn, sel: Selection,
              result: WalkResult) -> oci.Descriptor:
    data = read_blob(client, desc)
    raw = oci.parse_json_document(data, "image manifest")
    manifest = oci.Manifest.parse(data, desc.media_type)
    count = len(manifest.layers)
    layers = []
    for i, layer in enumerate(manifest.layers):
        new = fn(i, count, layer) if sel.wants_layer(i, count) else layer
        if new is not layer:
            result.changed_layers += 1
        layers.append(new)
    if all(a is b for a, b in zip(layers, manifest.layers)):
        return desc
    config = manifest.config
    if config.media_type == oci.DOCKER_CONFIG:
        config = oci.Descriptor(oci.OCI_CONFIG, config.digest, config.size, config.annotations)
    layers = [oci.Descriptor(OCI_EQUIVALENT.get(x.media_type, x.media_type), x.digest, x.size, x.annotations,
                             None, x.urls) for x in layers]
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.to_json(),
                           "layers": [x.to_json() for x in layers]}
    if raw.get("annotations"):
        doc["annotations"] = raw["annotations"]
    labels = {**L.gc_config(config.digest), **L.gc_layers([x.digest for x in layers])}
    return _write_doc(client, oci.OCI_MANIFEST, doc, labels, desc)


def manifests(client: Client, target: oci.Descriptor) -> list[tuple[oci.Descriptor, oci.Manifest | None]]:
    """Every manifest under ``target`` (None when its content is not in the store), for inspect."""
    if target.media_type in oci.MANIFEST_TYPES:
        return [(target, oci.Manifest.parse(read_blob(client, target), target.media_type))]
    if target.media_type not in oci.INDEX_TYPES:
        raise UsageError(f"unsupported image target media type {target.media_type!r}")
    out: list[tuple[oci.Descriptor, oci.Manifest | None]] = []
    for child in oci.Index.parse(read_blob(client, target), target.media_type).manifests:
        if child.media_type in oci.INDEX_TYPES:
            out += manifests(client, child)
        elif child.media_type in oci.MANIFEST_TYPES:
            out.append((child, oci.Manifest.parse(read_blob(client, child), child.media_type)
                        if client.content.exists(child.digest) else None))
    return out
