"""OCI image layouts on disk: blobs, configs, manifests, indexes and index.json, built deterministically, and a
validator."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .media import (
    _LAYER_TYPES,
    CREATED,
    DEFAULT_PATH,
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Compression,
    _platform_doc,
    canonical_json,
    host_platform,
    platform_string,
    sha256_digest,
)
from .tars import compress, decompress


# --- OCI layouts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    digest: str  # of the blob as stored (compressed)
    diff_id: str  # of the uncompressed tar
    size: int  # blob size
    uncompressed_size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageInfo:
    """One single-platform image written into a layout."""
    manifest_digest: str
    manifest_size: int
    media_type: str  # of the manifest
    config_digest: str
    config_size: int
    config_media_type: str
    layers: tuple[LayerInfo, ...]
    platform: tuple[str, ...]  # (os, arch[, variant])
    config: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)  # the whole config doc

    @property
    def digest(self) -> str:
        return self.manifest_digest

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def sizes(self) -> list[int]:
        return [layer.size for layer in self.layers]

    @property
    def platform_str(self) -> str:
        return platform_string(self.platform)

    def descriptor(self, *, with_platform: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.manifest_digest, "size": self.manifest_size}
        if with_platform:
            d["platform"] = _platform_doc(self.platform)
        return d


def init_layout(layout_dir: str | os.PathLike[str]) -> Path:
    """Create an empty OCI layout (or keep an existing one)."""
    root = Path(layout_dir)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = root / "oci-layout"
    if not marker.exists():
        marker.write_bytes(canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    if not (root / "index.json").exists():
        _write_index_json(root, [])
    return root


def write_blob(layout_dir: str | os.PathLike[str], data: bytes) -> str:
    """Store ``data`` under ``blobs/sha256/`` (atomically; a blob already there is kept). Returns its digest."""
    digest = sha256_digest(data)
    path = Path(layout_dir) / "blobs" / "sha256" / digest[7:]
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest


def read_blob(layout_dir: str | os.PathLike[str], digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    return (Path(layout_dir) / "blobs" / algo / hexd).read_bytes()


def read_index_json(layout_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads((Path(layout_dir) / "index.json").read_bytes())


def layout_refs(layout_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """ref name -> descriptor, from ``index.json``."""
    return {d["annotations"][REF_NAME_ANNOTATION]: d for d in read_index_json(layout_dir).get("manifests", [])
            if REF_NAME_ANNOTATION in d.get("annotations", {})}


def _write_index_json(root: Path, manifests: list[dict[str, Any]]) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    tmp = root / f".index.json.{os.getpid()}.tmp"
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, root / "index.json")


def tag_in_layout(layout_dir: str | os.PathLike[str], ref_name: str, descriptor: Mapping[str, Any]) -> None:
    """Point ``ref_name`` in ``index.json`` at ``descriptor`` (replacing an entry of the same name)."""
    root = init_layout(layout_dir)
    manifests = [d for d in read_index_json(root).get("manifests", [])
                 if d.get("annotations", {}).get(REF_NAME_ANNOTATION) != ref_name]
    entry = {k: v for k, v in descriptor.items() if k != "annotations"}
    entry["annotations"] = {**descriptor.get("annotations", {}), REF_NAME_ANNOTATION: ref_name}
    manifests.append(entry)
    _write_index_json(root, manifests)


def _make_layer(raw: bytes, compression: Compression, media_type: str) -> tuple[LayerInfo, bytes]:
    blob = compress(raw, compression)
    return LayerInfo(digest=sha256_digest(blob), diff_id=sha256_digest(raw), size=len(blob),
                     uncompressed_size=len(raw), media_type=media_type), blob


def _make_layers(layers: Iterable[bytes], compression: Compression, media_type: str,
                 ) -> list[tuple[LayerInfo, bytes]]:
    """Compress and digest each layer on a worker thread as soon as the iterable yields it (zlib, zstd and
    hashlib release the GIL), so generating the next layer overlaps compressing this one."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = [pool.submit(_make_layer, raw, compression, media_type) for raw in layers]
        return [f.result() for f in futures]


def build_image(layout_dir: str | os.PathLike[str], ref_name: str | None, layers: Iterable[bytes], *,
                compression: Compression = "gzip", docker_media_types: bool = False,
                config: Mapping[str, Any] | None = None, platform: Sequence[str] | None = None,
                created: str = CREATED, annotations: Mapping[str, str] | None = None,
                history: Sequence[str] | None = None) -> ImageInfo:
    """Write an image (layer blobs, config, manifest) into the OCI layout at ``layout_dir``.

    ``layers`` are uncompressed tars, base first (any iterable: a generator overlaps building and compressing).
    ``config`` is the image's run config (``Cmd``, ``Env``,
    ``WorkingDir``, ``ExposedPorts``, ...); None means ``{"Env": [DEFAULT_PATH]}``. ``platform`` is
    ``(os, arch[, variant])``, default this machine's. ``history`` gives each layer's ``created_by``.
    ``docker_media_types`` writes Docker schema2 (manifest, config and layer types; no annotations, no zstd).
    With a ``ref_name`` the manifest is tagged in ``index.json``; with None it is only stored (for an index).
    """
    if compression not in ("gzip", "zstd", "none"):
        raise ValueError(f"unknown compression {compression!r}")
    if docker_media_types and compression == "zstd":
        raise ValueError("Docker schema2 has no zstd layer media type")
    if docker_media_types and annotations:
        raise ValueError("Docker schema2 manifests have no annotations")
    root = init_layout(layout_dir)
    plat = tuple(platform) if platform else host_platform()
    layer_type = _LAYER_TYPES[(docker_media_types, compression)]
    infos = []
    for layer, blob in _make_layers(layers, compression, layer_type):
        write_blob(root, blob)
        infos.append(layer)
    if history is not None and len(history) != len(infos):
        raise ValueError("history needs one entry per layer")

    cfg: dict[str, Any] = {"created": created, "architecture": plat[1], "os": plat[0]}
    if len(plat) > 2 and plat[2]:
        cfg["variant"] = plat[2]
    cfg["config"] = dict(config) if config is not None else {"Env": [DEFAULT_PATH]}
    cfg["rootfs"] = {"type": "layers", "diff_ids": [x.diff_id for x in infos]}
    cfg["history"] = [{"created": created, "created_by": history[i] if history else f"ctk-test layer {i}"}
                      for i in range(len(infos))]
    cfg_bytes = canonical_json(cfg)
    cfg_type = DOCKER_CONFIG if docker_media_types else OCI_CONFIG
    cfg_digest = write_blob(root, cfg_bytes)

    manifest_type = DOCKER_MANIFEST if docker_media_types else OCI_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": cfg_type, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [x.descriptor() for x in infos],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    m_bytes = canonical_json(manifest)
    info = ImageInfo(manifest_digest=write_blob(root, m_bytes), manifest_size=len(m_bytes), media_type=manifest_type,
                     config_digest=cfg_digest, config_size=len(cfg_bytes), config_media_type=cfg_type,
                     layers=tuple(infos), platform=plat, config=cfg)
    if ref_name is not None:
        tag_in_layout(root, ref_name, info.descriptor())
    return info


def build_index(layout_dir: str | os.PathLike[str], ref_name: str | None, platform_images: Sequence[ImageInfo], *,
                docker_media_types: bool = False, annotations: Mapping[str, str] | None = None) -> str:
    """Write a multi-platform index over images already built (with ``ref_name=None``) into this layout.

    OCI image index by default; ``docker_media_types`` writes a Docker manifest list (whose entries must be
    Docker schema2 manifests). Tags it as ``ref_name`` in ``index.json`` and returns its digest.
    """
    if not platform_images:
        raise ValueError("an index needs at least one image")
    if docker_media_types and any(i.media_type != DOCKER_MANIFEST for i in platform_images):
        raise ValueError("a Docker manifest list may only list Docker schema2 manifests")
    if docker_media_types and annotations:
        raise ValueError("Docker manifest lists have no annotations")
    root = init_layout(layout_dir)
    for img in platform_images:
        if not (root / "blobs" / "sha256" / img.manifest_digest[7:]).exists():
            raise ValueError(f"{img.manifest_digest} is not in {root}")
    media_type = DOCKER_LIST if docker_media_types else OCI_INDEX
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                           "manifests": [i.descriptor(with_platform=True) for i in platform_images]}
    if annotations:
        doc["annotations"] = dict(annotations)
    data = canonical_json(doc)
    digest = write_blob(root, data)
    if ref_name is not None:
        tag_in_layout(root, ref_name, {"mediaType": media_type, "digest": digest, "size": len(data)})
    return digest


def validate_layout(layout_dir: str | os.PathLike[str]) -> list[str]:
    """Check a layout the way a consumer would; return the problems found (empty when valid).

    Every blob's name matches its content, every descriptor's size and digest match, manifests' configs
    list the diff_ids of their (decompressed) layers, and media types agree with the documents' own.
    """
    root = Path(layout_dir)
    problems: list[str] = []
    try:
        if json.loads((root / "oci-layout").read_bytes()) != {"imageLayoutVersion": OCI_LAYOUT_VERSION}:
            problems.append("oci-layout: unexpected content")
        index = read_index_json(root)
    except (OSError, ValueError) as e:
        return [f"layout unreadable: {e}"]
    if index.get("schemaVersion") != 2:
        problems.append("index.json: schemaVersion is not 2")
    for blob in (root / "blobs" / "sha256").iterdir():
        if not blob.name.startswith(".") and hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            problems.append(f"blob {blob.name}: content does not match its name")

    def check(desc: Mapping[str, Any], where: str) -> bytes | None:
        try:
            data = read_blob(root, desc["digest"])
        except OSError:
            problems.append(f"{where}: blob {desc.get('digest')} missing")
            return None
        if len(data) != desc.get("size"):
            problems.append(f"{where}: size {desc.get('size')} != {len(data)}")
        return data

    def walk(desc: Mapping[str, Any], where: str) -> None:
        data = check(desc, where)
        if data is None:
            return
        doc = json.loads(data)
        mt = desc.get("mediaType")
        if doc.get("mediaType") != mt:
            problems.append(f"{where}: descriptor says {mt}, document says {doc.get('mediaType')}")
        if mt in (OCI_INDEX, DOCKER_LIST):
            for i, sub in enumerate(doc.get("manifests", [])):
                if "platform" not in sub:
                    problems.append(f"{where}.manifests[{i}]: no platform")
                walk(sub, f"{where}.manifests[{i}]")
            return
        if mt not in (OCI_MANIFEST, DOCKER_MANIFEST):
            problems.append(f"{where}: unknown media type {mt}")
            return
        cfg_data = check(doc["config"], f"{where}.config")
        if cfg_data is None:
            return
        cfg = json.loads(cfg_data)
        diff_ids = []
        for i, layer in enumerate(doc.get("layers", [])):
            blob = check(layer, f"{where}.layers[{i}]")
            if blob is not None:
                diff_ids.append(sha256_digest(decompress(blob, layer["mediaType"])))
        if cfg.get("rootfs", {}).get("diff_ids") != diff_ids:
            problems.append(f"{where}: config rootfs.diff_ids do not match the layers")
        if len(cfg.get("history", [])) != len(diff_ids):
            problems.append(f"{where}: history has {len(cfg.get('history', []))} entries for {len(diff_ids)} layers")
        docker = mt == DOCKER_MANIFEST
        if (doc["config"]["mediaType"] == DOCKER_CONFIG) != docker:
            problems.append(f"{where}: config media type {doc['config']['mediaType']} in a {mt}")
        for layer in doc.get("layers", []):
            if layer["mediaType"].startswith("application/vnd.docker.") != docker:
                problems.append(f"{where}: layer media type {layer['mediaType']} in a {mt}")

    for i, desc in enumerate(index.get("manifests", [])):
        walk(desc, f"index.json.manifests[{i}]")
    return problems
