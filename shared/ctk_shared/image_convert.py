"""Convert an image in containerd's store: eStargz layers (lazy pulling), or recompression (zstd, none).

Like ``ctr-remote image convert`` / ``nerdctl image convert``: every layer of the selected platforms is
rewritten into a new blob, the config gets the new ``rootfs.diff_ids``, and new manifest(s) (and index)
point at them. New blobs are written under a lease with the GC labels that tie them to the new documents;
the destination image record is created only when everything is stored, so a failure leaves no image.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from . import compression as comp
from . import estargz, limits, oci
from . import labels as L
from .errors import CtkError, IntegrityError, InvalidArgument, NotFound, UsageError
from .images import read_blob
from .oci import Platform
from .progress import NullProgress, Progress
from .streams import ChunkReader

if TYPE_CHECKING:
    from .containerd import Client, Image

ESTARGZ = "estargz"
ZSTD = "zstd"
UNCOMPRESSED = "uncompressed"
FORMATS = (ESTARGZ, ZSTD, UNCOMPRESSED)

_STARGZ_ANNOTATIONS = (estargz.TOC_DIGEST_ANNOTATION, estargz.UNCOMPRESSED_SIZE_ANNOTATION)
_COPY = 1 << 20
_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


@dataclass
class ConvertOptions:
    """How :func:`convert` rewrites an image: the new layer format, its settings, and which platforms."""

    format: str  # one of FORMATS
    oci: bool = False  # write OCI media types even for a Docker source
    chunk_size: int = 0  # eStargz chunk size (0: 4 MiB)
    level: int | None = None  # compression level (eStargz default 9, zstd 3)
    prioritized: list[str] | None = None  # eStargz: files to put first (before .prefetch.landmark)
    platforms: list[Platform] = field(default_factory=list)  # empty: the host's
    all_platforms: bool = False
    tmpdir: str | None = None


@dataclass(frozen=True)
class ConvertResult:
    """The converted image: its record's name, new target and platforms, and the prioritized files no layer had."""

    name: str
    target: oci.Descriptor
    platforms: tuple[str, ...]
    missed_prioritized: tuple[str, ...] = ()


class _HashingWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def layer_media_type(src: str, compression: str, oci_out: bool) -> str:
    """The media type of a layer ``src`` rewritten with ``compression`` ('gzip', 'zstd', '')."""
    nondist = "nondistributable" in src or src == oci.DOCKER_LAYER_FOREIGN
    if oci_out:
        base = oci.OCI_LAYER_NONDIST if nondist else oci.OCI_LAYER
        return base + {comp.GZIP: "+gzip", comp.ZSTD: "+zstd", comp.NONE: ""}[compression]
    if compression == comp.GZIP:
        return oci.DOCKER_LAYER_FOREIGN if nondist else oci.DOCKER_LAYER_GZIP
    if compression == comp.NONE:
        return _DOCKER_LAYER_TAR
    raise UsageError("zstd layers need an OCI manifest: a Docker schema 2 manifest cannot name them",
                     hint="add --oci")


class Converter:
    def __init__(self, client: Client, opts: ConvertOptions, progress: Progress | None = None) -> None:
        if opts.format not in FORMATS:
            raise UsageError(f"unknown conversion {opts.format!r}")
        self.client = client  # bound to a lease by convert()
        self.opts = opts
        self.progress = progress or NullProgress()
        self._layers: dict[tuple[str, str], tuple[oci.Descriptor, str]] = {}  # (src digest, media type) -> new
        self.missed: list[str] = []

    # -- documents --------------------------------------------------------------------------------
    def _store_doc(self, data: bytes, labels: dict[str, str]) -> str:
        digest = oci.sha256_digest(data)
        try:
            self.client.content.info(digest)
            if labels:
                self.client.content.update_labels(digest, labels)
        except NotFound:
            self.client.content.write_blob(f"convert-{digest}", data, digest, labels)
        return digest

    def convert_index(self, desc: oci.Descriptor) -> tuple[oci.Descriptor, list[str]]:
        data = read_blob(self.client, desc)
        doc = oci.parse_json_document(data, "image index")
        index = oci.Index.parse(data, desc.media_type)
        manifests = [m for m in index.manifests if m.media_type in oci.MANIFEST_TYPES]
        if self.opts.all_platforms:
            chosen = manifests
            missing = [m for m in chosen if not self.client.content.exists(m.digest)]
            if missing:
                raise NotFound(f"{len(missing)} of the {len(chosen)} platforms of the image are not in the store "
                               f"(e.g. {missing[0].platform or missing[0].digest})",
                               hint="pull it with --all-platforms first, or convert some with --platform")
        else:
            wants = self.opts.platforms or [oci.host_platform()]
            chosen = []
            for want in wants:
                m = oci.select_manifest(index, want)
                if m not in chosen:
                    chosen.append(m)
            for m in chosen:
                if not self.client.content.exists(m.digest):
                    raise NotFound(f"platform {m.platform or m.digest} of the image is not in the store",
                                   hint="pull that platform first (ctk-pull --platform …)")
        oci_out = self.opts.oci or desc.media_type == oci.OCI_INDEX
        new_children: list[dict[str, Any]] = []
        platforms: list[str] = []
        for m in chosen:
            nd = self.convert_manifest(m)
            entry = nd.to_json()
            if m.platform:
                entry["platform"] = m.platform.to_json()
                platforms.append(str(m.platform))
            if m.annotations:
                entry["annotations"] = dict(m.annotations)
            new_children.append(entry)
        mt = oci.OCI_INDEX if oci_out else desc.media_type
        new: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt, "manifests": new_children}
        if doc.get("annotations"):
            new["annotations"] = doc["annotations"]
        out = json.dumps(new, separators=(",", ":")).encode()
        digest = self._store_doc(out, L.gc_manifests([c["digest"] for c in new_children]))
        return oci.Descriptor(mt, digest, len(out), dict(desc.annotations)), platforms

    def convert_manifest(self, desc: oci.Descriptor) -> oci.Descriptor:
        data = read_blob(self.client, desc)
        doc = oci.parse_json_document(data, "image manifest")
        manifest = oci.Manifest.parse(data, desc.media_type)
        oci_out = self.opts.oci or desc.media_type == oci.OCI_MANIFEST
        config_data = read_blob(self.client, manifest.config)
        config_doc = oci.parse_json_document(config_data, "image config")
        diff_ids = oci.ImageConfig.parse(config_data).diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"manifest {desc.digest}: {len(manifest.layers)} layers but {len(diff_ids)} "
                                  "diff_ids in its config")
        target_comp = {ESTARGZ: comp.GZIP, ZSTD: comp.ZSTD, UNCOMPRESSED: comp.NONE}[self.opts.format]
        for layer in manifest.layers:  # check before any work
            if layer.media_type.endswith(oci.ENCRYPTED_SUFFIX):
                raise InvalidArgument(f"layer {layer.digest} is encrypted; it cannot be converted",
                                      hint="decrypt the image first (ctk-crypt decrypt)")
            if oci.is_layer(layer.media_type):
                layer_media_type(layer.media_type, target_comp, oci_out)
        for layer in manifest.layers:
            key = layer.digest[7:19]
            self.progress.task(key, key, layer.size)
        new_layers: list[oci.Descriptor] = []
        new_diff_ids: list[str] = []
        for layer, diff_id in zip(manifest.layers, diff_ids):
            if not oci.is_layer(layer.media_type) or (layer.urls and not self.client.content.exists(layer.digest)):
                # not a layer, or a foreign layer that lives at its URLs only: kept as it is
                new_layers.append(layer)
                new_diff_ids.append(diff_id)
                continue
            nd, nid = self.convert_layer(layer, diff_id, layer_media_type(layer.media_type, target_comp, oci_out))
            new_layers.append(nd)
            new_diff_ids.append(nid)
        if new_diff_ids == diff_ids:
            new_config_data = config_data  # recompression: the config is byte for byte the same
        else:
            config_doc["rootfs"] = {**config_doc["rootfs"], "diff_ids": new_diff_ids}
            new_config_data = json.dumps(config_doc, separators=(",", ":"), ensure_ascii=False).encode()
        config_mt = oci.OCI_CONFIG if oci_out else manifest.config.media_type
        config_digest = self._store_doc(new_config_data, {})
        config_desc = oci.Descriptor(config_mt, config_digest, len(new_config_data),
                                     dict(manifest.config.annotations))
        mt = oci.OCI_MANIFEST if oci_out else desc.media_type
        new: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt, "config": config_desc.to_json(),
                               "layers": [d.to_json() for d in new_layers]}
        if doc.get("annotations"):
            new["annotations"] = doc["annotations"]
        out = json.dumps(new, separators=(",", ":")).encode()
        digest = self._store_doc(out, {**L.gc_config(config_digest), **L.gc_layers([d.digest for d in new_layers])})
        return oci.Descriptor(mt, digest, len(out), dict(desc.annotations), desc.platform)

    # -- layers -----------------------------------------------------------------------------------
    def convert_layer(self, layer: oci.Descriptor, diff_id: str, media_type: str) -> tuple[oci.Descriptor, str]:
        cached = self._layers.get((layer.digest, media_type))
        if cached:
            return cached
        key = layer.digest[7:19]
        ann = {k: v for k, v in layer.annotations.items() if k not in _STARGZ_ANNOTATIONS}
        src_comp = oci.layer_compression(layer.media_type)
        if self.opts.format != ESTARGZ and src_comp == oci.layer_compression(media_type):
            # already in the wanted compression: the blob is reused as it is
            result = (oci.Descriptor(media_type, layer.digest, layer.size, ann, urls=layer.urls), diff_id)
            self.progress.status(key, "unchanged", completed=layer.size)
            self._layers[(layer.digest, media_type)] = result
            return result
        self.progress.status(key, "converting")
        blob = limits.exact(self.client.content.read(layer.digest), layer.size, f"layer {layer.digest}",
                            digest=layer.digest)
        src = io.BufferedReader(ChunkReader(blob, lambda n: self.progress.advance(key, n)), _COPY)
        with tempfile.TemporaryFile(dir=self.opts.tmpdir) as tmp:
            if self.opts.format == ESTARGZ:
                res = estargz.build(src, tmp, chunk_size=self.opts.chunk_size,
                                    level=estargz.DEFAULT_LEVEL if self.opts.level is None else self.opts.level,
                                    prioritized=self.opts.prioritized, tmpdir=self.opts.tmpdir)
                for p in res.missed_prioritized:
                    if p not in self.missed:
                        self.missed.append(p)
                digest, size, new_diff = res.digest, res.size, res.diff_id
                ann.update(res.annotations)
            else:
                digest, size, new_diff = self._recompress(src, tmp, oci.layer_compression(media_type))
                if new_diff != diff_id:
                    raise IntegrityError(f"layer {layer.digest}: its content has digest {new_diff}, the image config "
                                         f"says {diff_id}")
            tmp.seek(0)
            self._store_file(tmp, size, digest, {L.UNCOMPRESSED: new_diff}, key)
        result = (oci.Descriptor(media_type, digest, size, ann), new_diff)
        self._layers[(layer.digest, media_type)] = result
        self.progress.status(key, "converted", completed=layer.size)
        return result

    def _recompress(self, src: IO[bytes], tmp: IO[bytes], kind: str) -> tuple[str, int, str]:
        hw = _HashingWriter(tmp)
        diff = hashlib.sha256()
        try:
            reader = comp.decompressing_reader(src)
            w = comp.compressing_writer(hw, kind, self.opts.level)
            while chunk := reader.read(_COPY):
                diff.update(chunk)
                w.write(chunk)
            w.close()
        except (OSError, EOFError) as e:
            raise InvalidArgument(f"cannot decompress the layer: {e}") from None
        return "sha256:" + hw.sha.hexdigest(), hw.n, "sha256:" + diff.hexdigest()

    def _store_file(self, f: IO[bytes], size: int, digest: str, labels: dict[str, str], key: str) -> None:
        ref = f"convert-{digest}"
        with self.client.content.writer(ref, size, digest) as w:
            if w.exists:
                self.client.content.update_labels(digest, labels)
                return
            if w.offset:
                w.truncate()
            while chunk := f.read(_COPY):
                w.write(chunk)
            w.commit(labels)


def convert(client: Client, image: Image, dst: str, opts: ConvertOptions,
            progress: Progress | None = None) -> ConvertResult:
    """Convert ``image`` into a new image named ``dst`` (created or repointed only on success)."""
    from .containerd import Image as ImageRecord

    if opts.tmpdir:
        os.makedirs(opts.tmpdir, exist_ok=True)
    with client.lease_scope() as leased:
        conv = Converter(leased, opts, progress)
        target = image.target
        platforms: list[str] = []
        if target.media_type in oci.INDEX_TYPES:
            new_target, platforms = conv.convert_index(target)
        elif target.media_type in oci.MANIFEST_TYPES:
            new_target = conv.convert_manifest(target)
        else:
            raise InvalidArgument(f"image {image.name}: unsupported target media type {target.media_type!r}")
        try:
            from .cri import put_image

            put_image(leased, ImageRecord(name=dst, target=new_target, labels=dict(image.labels),
                                          created_at=None, updated_at=None))
        except CtkError as e:
            raise CtkError(f"creating image {dst}: {e}", hint=e.hint) from e
    return ConvertResult(dst, new_target, tuple(platforms), tuple(conv.missed))
