"""Image tars in both common shapes: an OCI image layout and a docker-archive, in one file.

``save`` writes blobs once under ``blobs/sha256/`` and both indexes (``index.json`` for OCI tools,
``manifest.json`` for ``docker load``), as nerdctl and containerd's exporter do. ``load`` reads either
shape, imports the blobs into containerd under a lease and creates the images only when all is in.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from . import labels as L
from . import limits, oci
from . import reference as refs
from .errors import CtkError, IntegrityError, InvalidArgument, NotFound, UsageError
from .images import LocalImage, Unpacker, document_kind, read_blob, require_blob
from .progress import NullProgress, Progress
from .streams import ChunkReader

if TYPE_CHECKING:
    from .containerd import Client

IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


# --- save ----------------------------------------------------------------------------------------
def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o444
    tar.addfile(info, io.BytesIO(data))


def save(client: Client, images: list[LocalImage], out: BinaryIO, all_platforms: bool = False) -> None:
    """Write ``images`` (one platform each unless ``all_platforms``) to ``out`` as a tar stream."""
    for img in images:  # before the tar stream holds half an image
        for d in (img.manifest.config, *img.manifest.layers):
            require_blob(client, d, img.image.name)
    written: set[str] = set()
    index_entries: list[dict[str, Any]] = []
    docker_entries: list[dict[str, Any]] = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def blob(desc: oci.Descriptor) -> str:
            path = f"blobs/{desc.digest.replace(':', '/')}"
            if desc.digest not in written:
                info = tarfile.TarInfo(path)
                info.size = desc.size
                info.mtime = 0
                info.mode = 0o444
                blob = limits.exact(client.content.read(desc.digest), desc.size, f"blob {desc.digest}")
                tar.addfile(info, io.BufferedReader(ChunkReader(blob), 1 << 20))
                written.add(desc.digest)
            return path

        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        for img in images:
            name = img.image.name
            manifests = [(img.manifest_desc, img.manifest)]
            target = img.manifest_desc
            if all_platforms and img.image.target.media_type in oci.INDEX_TYPES:
                target = img.image.target
                index = oci.Index.parse(read_blob(client, target), target.media_type)
                manifests = [(m, oci.Manifest.parse(read_blob(client, m), m.media_type))
                             for m in index.manifests if m.media_type in oci.MANIFEST_TYPES]
                blob(target)
            for mdesc, manifest in manifests:
                for d in (manifest.config, *manifest.layers):
                    blob(d)
                blob(mdesc)
            entry = target.to_json()
            ann = dict(entry.get("annotations", {}))
            ann[IMAGE_NAME_ANNOTATION] = name
            try:
                r = refs.parse(name, default_tag=False)
                if r.tag:
                    ann[REF_NAME_ANNOTATION] = r.tag
                tag_name = f"{refs.Reference(r.domain, r.path).familiar()}:{r.tag}" if r.tag else None
            except UsageError:
                tag_name = None
            entry["annotations"] = ann
            index_entries.append(entry)
            docker_entries.append({
                "Config": f"blobs/{img.manifest.config.digest.replace(':', '/')}",
                "RepoTags": [tag_name] if tag_name else [],
                "Layers": [f"blobs/{d.digest.replace(':', '/')}" for d in img.manifest.layers],
            })
        _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                                  "manifests": index_entries}).encode())
        _add_bytes(tar, "manifest.json", json.dumps(docker_entries).encode())


# --- load ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedImage:
    """An image ``load`` created from an archive: its record's name and the target it points at."""

    name: str
    target: oci.Descriptor


class _Archive:
    """Random access to a tar's members by name (the input is spooled to disk when it is a pipe).

    A member's size is what its tar header declares, which the archive's maker chose: documents are refused
    when that size is over the cap of their kind, and every read stops at the declared size and fails when
    the archive ends before it (IntegrityError), so a hostile tar costs at most one chunk of memory.
    """

    def __init__(self, f: IO[bytes]) -> None:
        try:
            self.tar = tarfile.open(fileobj=f, mode="r:")
        except tarfile.TarError as e:
            raise InvalidArgument(f"not a tar archive: {e}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        last: tarfile.TarInfo | None = None
        try:
            while (m := self.tar.next()) is not None:
                last = m
                if m.isfile() or m.issym():
                    self.members[m.name.removeprefix("./")] = m
        except tarfile.TarError as e:  # tarfile checks each header's size against the file while listing
            if last is None:
                raise InvalidArgument(f"not a tar archive: {e}") from None
            raise IntegrityError(f"archive member {last.name}: {e} (its header declares {last.size} bytes; "
                                 "the archive is cut short or corrupt)") from None

    def has(self, name: str) -> bool:
        return name in self.members

    def member(self, name: str) -> tarfile.TarInfo:
        """The regular-file member ``name`` stands for, following symlinks inside the archive."""
        asked = name
        for _ in range(16):
            m = self.members.get(name)
            if m is None:
                raise InvalidArgument(f"archive is missing {name}")
            if not m.issym():
                return m
            name = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname))
        raise InvalidArgument(f"archive member {asked}: too many levels of symbolic links (a symlink loop?)",
                              hint="the archive is corrupt or hostile; save the image again (ctk-pull save)")

    def open(self, name: str) -> IO[bytes]:
        f = self.tar.extractfile(self.member(name))
        if f is None:
            raise InvalidArgument(f"archive member {name} is not a file")
        return f

    def chunks(self, name: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The member's bytes; a tar that ends before the size its header declares is an IntegrityError."""
        f = self.open(name)
        try:
            while chunk := f.read(chunk_size):
                yield chunk
        except (tarfile.TarError, EOFError, OSError) as e:
            raise IntegrityError(f"archive member {name}: {e} (its header declares {self.member(name).size} bytes; "
                                 "the archive is cut short or corrupt)") from None

    def read(self, name: str, kind: str) -> bytes:
        """A document member whole, refused unread when its declared size is over the cap of ``kind``."""
        what = f"archive member {name}"
        limits.check_declared(kind, self.member(name).size, what)
        return limits.read_capped(self.chunks(name), kind, what)

    def size(self, name: str) -> int:
        return self.member(name).size


def open_input(path: str) -> IO[bytes]:
    if path != "-":
        try:
            return open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot open {path}: {e.strerror}") from None
    import sys

    spool = tempfile.TemporaryFile()
    while chunk := sys.stdin.buffer.read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool


def load(client: Client, f: IO[bytes], snapshotter: str, platform: oci.Platform | None = None,
         unpack: bool = True, progress: Progress | None = None) -> list[LoadedImage]:
    progress = progress or NullProgress()
    arc = _Archive(f)
    if arc.has("index.json"):
        plan = _plan_oci(arc)
    elif arc.has("manifest.json"):
        plan = _plan_docker(arc)
    else:
        raise InvalidArgument("archive has neither index.json (OCI layout) nor manifest.json (docker-archive)")
    if not plan:
        raise InvalidArgument("archive contains no images")
    lease = client.leases.create(labels={L.PULL_REF: "load"})
    leased = client.with_lease(lease)
    try:
        loaded: list[LoadedImage] = []
        for name, target, docs, paths in plan:
            _import_tree(leased, arc, target, docs, paths, snapshotter, platform, unpack, progress)
            loaded.append(LoadedImage(name, target))
        from .containerd import Image
        from .cri import put_image

        for item in loaded:
            put_image(leased, Image(name=item.name, target=item.target, labels={}, created_at=None, updated_at=None))
        return loaded
    finally:
        try:
            client.leases.delete(lease)
        except CtkError:
            pass


def _check_member_size(arc: _Archive, path: str, desc: oci.Descriptor, what: str) -> None:
    """A blob's tar member must be exactly as long as the descriptor that names it says."""
    size = arc.size(path)
    if size != desc.size:
        raise IntegrityError(f"{what}: the archive holds {size} bytes, its descriptor declares {desc.size}")


def _blob_path(digest: str) -> str:
    oci.validate_digest(digest)
    return f"blobs/{digest.replace(':', '/')}"


# (image name, target, documents made up for a docker-archive, archive paths of blobs not named by digest)
Plan = list[tuple[str, oci.Descriptor, dict[str, bytes], dict[str, str]]]


def _plan_oci(arc: _Archive) -> Plan:
    index = oci.Index.parse(arc.read("index.json", "archive index"))
    plan: Plan = []
    for desc in index.manifests:
        name = desc.annotations.get(IMAGE_NAME_ANNOTATION, "")
        if not name:
            # a bare ref name (skopeo's oci-archive:FILE:NAME) is read as a ref, as `docker load` does
            try:
                name = str(refs.parse(desc.annotations.get(REF_NAME_ANNOTATION, "") or f"import@{desc.digest}"))
            except UsageError:
                name = str(refs.parse(f"import@{desc.digest}"))
        plan.append((name, desc, {}, {}))
    return plan


def _plan_docker(arc: _Archive) -> Plan:
    try:
        entries = json.loads(arc.read("manifest.json", "archive index"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"manifest.json is not valid JSON: {err}") from None
    if not isinstance(entries, list):
        raise InvalidArgument("manifest.json is not a list")
    plan: Plan = []
    for e in entries:
        if not isinstance(e, dict):
            raise InvalidArgument("manifest.json: an entry is not a JSON object")
        config_path = str(e.get("Config", ""))
        config_data = arc.read(config_path, "config")
        config = oci.ImageConfig.parse(config_data)
        config_desc = oci.Descriptor(oci.DOCKER_CONFIG, oci.sha256_digest(config_data), len(config_data))
        layers: list[dict[str, Any]] = []
        for path, diff_id in zip(e.get("Layers") or [], config.diff_ids):
            digest, mt = _layer_identity(arc, str(path), diff_id)
            layers.append({"mediaType": mt, "digest": digest, "size": arc.size(str(path)), "_path": str(path)})
        if len(layers) != len(config.diff_ids):
            raise InvalidArgument(f"{config_path}: {len(config.diff_ids)} diff_ids but {len(layers)} layers listed")
        docs = {config_desc.digest: config_data}
        paths = {layer["digest"]: layer.pop("_path") for layer in layers}
        manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
                               "config": config_desc.to_json(), "layers": layers}).encode()
        mdesc = oci.Descriptor(oci.DOCKER_MANIFEST, oci.sha256_digest(manifest), len(manifest))
        docs[mdesc.digest] = manifest
        for tag in e.get("RepoTags") or [f"import@{mdesc.digest}"]:
            plan.append((str(refs.parse(tag)), mdesc, docs, paths))
    return plan


def _layer_identity(arc: _Archive, path: str, diff_id: str) -> tuple[str, str]:
    """A docker-archive names layers by path; find each one's digest and compression."""
    magic = b""
    h = oci.hasher(diff_id)
    for chunk in arc.chunks(path):
        if len(magic) < 4:
            magic += chunk[:4 - len(magic)]
        h.update(chunk)
    digest = f"sha256:{h.hexdigest()}"
    if magic[:2] == b"\x1f\x8b":
        return digest, oci.DOCKER_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return digest, oci.OCI_LAYER_ZSTD
    return digest, DOCKER_LAYER_TAR


def _import_tree(client: Client, arc: _Archive, target: oci.Descriptor, docs: dict[str, bytes],
                 paths: dict[str, str], snapshotter: str,
                 platform: oci.Platform | None, unpack: bool, progress: Progress) -> None:
    def doc(desc: oci.Descriptor) -> bytes:
        data = docs.get(desc.digest)
        kind = document_kind(desc.media_type)
        what = f"archive {kind} {desc.digest}"
        if data is None:
            limits.check_declared(kind, desc.size, what)
            path = _blob_path(desc.digest)
            _check_member_size(arc, path, desc, what)
            data = limits.read_document(arc.chunks(path), kind, desc.size, desc.digest, what)
        oci.verify_bytes(data, desc.digest, what)
        return data

    def put(desc: oci.Descriptor, data: bytes | None, labels: dict[str, str]) -> None:
        try:
            info = client.content.info(desc.digest)
            if labels and any(info.labels.get(k) != v for k, v in labels.items()):
                client.content.update_labels(desc.digest, labels)
            return
        except NotFound:
            pass
        if data is not None:
            client.content.write_blob(f"load-{desc.digest}", data, desc.digest, labels)
            return
        path = paths.get(desc.digest) or _blob_path(desc.digest)
        _check_member_size(arc, path, desc, f"archive blob {desc.digest}")
        key = desc.digest[7:19]
        progress.task(key, key, desc.size, "loading")
        with client.content.writer(f"load-{desc.digest}", desc.size, desc.digest) as w:
            if not (w.exists or w.offset == desc.size):
                if w.offset:
                    w.abort()
                    w = client.content.writer(f"load-{desc.digest}", desc.size, desc.digest)
                try:
                    for chunk in limits.exact(arc.chunks(path), desc.size, f"archive blob {desc.digest}",
                                              digest=desc.digest):
                        w.write(chunk)
                        progress.advance(key, len(chunk))
                except IntegrityError:
                    w.abort()  # bad bytes are not worth resuming
                    raise
            w.commit(labels)
        progress.status(key, "loaded")

    want = platform or oci.host_platform()
    if target.media_type in oci.INDEX_TYPES:
        data = doc(target)
        index = oci.Index.parse(data, target.media_type)
        present = [m for m in index.manifests if m.media_type in oci.MANIFEST_TYPES
                   and arc.has(_blob_path(m.digest))]
        if not present:
            raise InvalidArgument(f"index {target.digest} references no manifest present in the archive")
        try:
            chosen = oci.select_manifest(index, want).digest
        except CtkError:
            chosen = ""
        for m in present:
            _import_manifest(client, m, doc, put, snapshotter, unpack and m.digest == chosen, progress)
        put(target, data, L.gc_manifests([m.digest for m in present]))
    elif target.media_type in oci.MANIFEST_TYPES:
        _import_manifest(client, target, doc, put, snapshotter, unpack, progress)
    else:
        raise InvalidArgument(f"unsupported media type {target.media_type!r} in the archive index")


def _import_manifest(client: Client, desc: oci.Descriptor, doc: Any, put: Any, snapshotter: str, unpack: bool,
                     progress: Progress) -> None:
    data = doc(desc)
    manifest = oci.Manifest.parse(data, desc.media_type)
    config_data = doc(manifest.config)
    config = oci.ImageConfig.parse(config_data)
    for layer in manifest.layers:
        put(layer, None, {})
    labels: dict[str, str] = {}
    if unpack:
        u = Unpacker(client, snapshotter, config.diff_ids, progress)
        for i, layer in enumerate(manifest.layers):
            u.apply(i, layer, layer.digest[7:19])
        if u.chain:
            labels = L.gc_snapshot(snapshotter, u.chain[-1])
    put(manifest.config, config_data, labels)
    put(desc, data, {**L.gc_config(manifest.config.digest), **L.gc_layers([x.digest for x in manifest.layers])})
