"""The build cache as an OCI artifact (spec: docs/build-cache-format.md): one image manifest whose config lists
the steps and whose layers are the steps' layer blobs.

Reading treats every byte as hostile: the manifest and config are read under the caps of ``ctk_shared.limits``
by the caller; here every field is checked (digests, hex keys, layer indexes, sizes, time strings) and a
document of another kind (an image, a BuildKit cache, a newer version of this format) is refused with a reason
the warning can show.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ctk_shared import oci
from ctk_shared.errors import CtkError, InvalidArgument

ARTIFACT_TYPE = "application/vnd.ctk.build.cache.v1"
CONFIG_MEDIA_TYPE = "application/vnd.ctk.build.cache.config.v1+json"
VERSION = 1
MAX_STEPS = 20_000  # a config of this many steps is ~6 MiB, under the 8 MiB config cap
LAYER_TYPES = frozenset({oci.OCI_LAYER, oci.OCI_LAYER_GZIP, oci.DOCKER_LAYER_GZIP})
BUILDKIT_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class NotACache(InvalidArgument):
    """The document is readable but is not a ctk build cache (another format, or a broken one)."""


@dataclass(frozen=True)
class CacheStep:
    """What a cache hit needs: the layer, its diff ID and unpacked size, the chain it lands on, its history time."""

    key: str  # the step's cache key (cache.chain_key), hex
    parent_chain: str  # the chain ID the layer applies on ("" for the first layer of a scratch stage)
    layer: oci.Descriptor  # the blob as stored in the cache
    diff_id: str  # digest of the uncompressed tar
    size: int  # bytes of the uncompressed tar
    created: str  # the history entry's time (RFC 3339), so a cached step yields the same image

    @property
    def chain_id(self) -> str:
        return oci.chain_ids([self.parent_chain, self.diff_id])[1] if self.parent_chain else self.diff_id


def encode(steps: Iterable[CacheStep]) -> tuple[bytes, bytes, list[oci.Descriptor]]:
    """(config bytes, manifest bytes, layer descriptors in manifest order) for these steps; stable bytes for
    the same steps, so an unchanged cache pushes an unchanged manifest."""
    layers: list[oci.Descriptor] = []
    index: dict[str, int] = {}
    out = []
    unique = {(s.key, s.parent_chain): s for s in steps}
    for s in sorted(unique.values(), key=lambda s: (s.key, s.parent_chain)):
        if s.layer.digest not in index:
            index[s.layer.digest] = len(layers)
            layers.append(oci.Descriptor(s.layer.media_type, s.layer.digest, s.layer.size))
        out.append({"key": s.key, "parent": s.parent_chain, "layer": index[s.layer.digest], "diffID": s.diff_id,
                    "size": s.size, "created": s.created})
    config = _dumps({"version": VERSION, "steps": out})
    manifest = _dumps({
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": oci.sha256_digest(config), "size": len(config)},
        "layers": [d.to_json() for d in layers],
    })
    return config, manifest, layers


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def parse_manifest(data: bytes, media_type: str) -> oci.Manifest:
    """The cache manifest, or NotACache naming what the document is instead."""
    try:
        doc = oci.parse_json_document(data, "cache manifest")
    except CtkError as e:
        raise NotACache(f"corrupt: {e.message}") from None
    mt = media_type if media_type not in ("", "application/octet-stream", "application/json") else \
        str(doc.get("mediaType") or "")
    if mt in oci.INDEX_TYPES or "manifests" in doc:
        kinds = {str(m.get("mediaType")) for m in doc.get("manifests") or [] if isinstance(m, dict)}
        if BUILDKIT_CONFIG in kinds:
            raise NotACache("it is a BuildKit cache (ctk-build reads only its own format)")
        raise NotACache("it is an image index, not a ctk build cache")
    config = doc.get("config")
    config_type = str(config.get("mediaType", "")) if isinstance(config, dict) else ""
    if config_type == BUILDKIT_CONFIG:
        raise NotACache("it is a BuildKit cache (ctk-build reads only its own format)")
    if config_type in oci.CONFIG_TYPES:
        raise NotACache("it is a container image, not a ctk build cache")
    if config_type != CONFIG_MEDIA_TYPE and doc.get("artifactType") != ARTIFACT_TYPE:
        raise NotACache(f"unknown artifact (config media type {config_type!r})")
    if config_type != CONFIG_MEDIA_TYPE:
        raise NotACache(f"a ctk build cache of an unknown config type {config_type!r}")
    try:
        return oci.Manifest.parse(data, oci.OCI_MANIFEST)
    except CtkError as e:
        raise NotACache(f"corrupt: {e.message}") from None


def parse_config(data: bytes, manifest: oci.Manifest) -> list[CacheStep]:
    """The steps of a cache config; NotACache for any field out of shape (nothing of it is used then)."""
    try:
        doc = oci.parse_json_document(data, "cache config")
    except CtkError as e:
        raise NotACache(f"corrupt: {e.message}") from None
    version = doc.get("version")
    if version != VERSION:
        raise NotACache(f"format version {version!r} (this ctk-build reads version {VERSION})")
    raw = doc.get("steps")
    if not isinstance(raw, list) or len(raw) > MAX_STEPS:
        raise NotACache("corrupt: 'steps' is not a list of at most 20000 entries")
    layers = manifest.layers
    for d in layers:
        if d.media_type not in LAYER_TYPES:
            raise NotACache(f"layer {d.digest} has media type {d.media_type!r}")
    steps = []
    try:
        for s in raw:
            if not isinstance(s, dict):
                raise ValueError("a step is not an object")
            key, parent, diff_id = str(s["key"]), str(s["parent"]), oci.validate_digest(str(s["diffID"]))
            li, size, created = s["layer"], s["size"], str(s["created"])
            if not _KEY_RE.match(key):
                raise ValueError(f"key {key[:80]!r} is not 64 hex digits")
            if parent:
                oci.validate_digest(parent)
            if type(li) is not int or not 0 <= li < len(layers):
                raise ValueError(f"layer index {li!r} out of range")
            if type(size) is not int or size < 0:
                raise ValueError(f"size {size!r} is not a byte count")
            if not _TIME_RE.match(created):
                raise ValueError(f"created {created[:80]!r} is not an RFC 3339 time")
            layer = layers[li]
            if layer.media_type == oci.OCI_LAYER and (layer.digest != diff_id or layer.size != size):
                raise ValueError(f"uncompressed layer {layer.digest} is not its diff ID {diff_id}")
            steps.append(CacheStep(key, parent, layer, diff_id, size, created))
    except (KeyError, ValueError, TypeError, CtkError) as e:
        detail = e.message if isinstance(e, CtkError) else (f"a step lacks {e}" if isinstance(e, KeyError) else e)
        raise NotACache(f"corrupt: {detail}") from None
    return steps
