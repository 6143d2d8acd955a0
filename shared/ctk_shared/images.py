"""Operations on images already in containerd: find them, read their documents, unpack their layers.

An image record names a target (index or manifest); everything below it is content in the store,
reachable through GC labels. Unpacking turns layers into committed snapshots named by chain ID.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from . import labels as L
from . import limits, oci
from . import reference as refs
from .errors import AlreadyExists, CtkError, IntegrityError, InvalidArgument, NotFound, UsageError

if TYPE_CHECKING:
    from .containerd import Client, Image, Mount
    from .decryption_keys import KeySource
    from .progress import Progress

EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # of zero bytes


@dataclass(frozen=True)
class LocalImage:
    """One platform's view of an image record: the documents needed to run or push it."""

    image: Image
    manifest_desc: oci.Descriptor
    manifest: oci.Manifest
    config: oci.ImageConfig

    @property
    def chain_ids(self) -> list[str]:
        return oci.chain_ids(self.config.diff_ids)


def document_kind(media_type: str) -> str:
    """The ``ctk_shared.limits`` cap a document of this media type is read under."""
    if media_type in oci.CONFIG_TYPES:
        return "config"
    if media_type in oci.INDEX_TYPES:
        return "index"
    if media_type in oci.MANIFEST_TYPES:
        return "manifest"
    return "document"


def read_blob(client: Client, desc_or_digest: oci.Descriptor | str, kind: str | None = None) -> bytes:
    """A stored document, whole: under the cap of its kind, exactly its declared size, digest verified.

    The store verified the bytes when they were written, but a descriptor can still declare another size
    than the blob has (a hand-made manifest, an archive): the read stops at the declared size either way.
    """
    if isinstance(desc_or_digest, str):
        digest = desc_or_digest
        size = client.content.info(digest).size
        kind = kind or "document"
    else:
        digest, size = desc_or_digest.digest, desc_or_digest.size
        kind = kind or document_kind(desc_or_digest.media_type)
    return limits.read_document(client.content.read(digest), kind, size, digest, f"stored {kind} {digest}")


def require_blob(client: Client, desc: oci.Descriptor, image: str) -> None:
    """Fail clearly when an image's blob is not stored, as the layers of a lazily pulled image never are."""
    if not client.content.exists(desc.digest):
        raise NotFound(f"blob {desc.digest} of image {image} is not in the content store",
                       hint="images pulled with a lazy snapshotter keep their layers in the registry: "
                            "pull it again with --snapshotter overlayfs first")


def find_image(client: Client, text: str) -> Image:
    """Look up by full name, then by normalised ref, then by image-ID prefix (as ``docker rmi`` allows)."""
    try:
        return client.images.get(text)
    except NotFound:
        pass
    try:
        ref = refs.parse(text)
    except UsageError:
        ref = None
    if ref is not None:
        if str(ref) != text:
            try:
                return client.images.get(str(ref))
            except NotFound:
                pass
        if ref.digest:
            # `name:tag@digest` or `name@digest` (what pull prints): any record of that repository
            # pointing at that digest, the tagged one first
            same = [i for i in client.images.list([f'target.digest=="{ref.digest}"'])
                    if i.name.split("@", 1)[0].rsplit(":", 1)[0] == ref.name or i.name.startswith(ref.name + "@")]
            same.sort(key=lambda i: i.name != str(ref.with_digest("")))
            if same:
                return same[0]
    hexpart = text.removeprefix("sha256:").lower()
    if 4 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart):
        hits = [i for i in client.images.list() if i.target.digest.removeprefix("sha256:").startswith(hexpart)]
        if len({h.target.digest for h in hits}) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UsageError(f"image ID {text!r} is ambiguous: it names {len(hits)} images")
    raise NotFound(f"image {text!r} not found", hint="pull it first (ctk-pull REF) or list images with `ctk-pull images`")


def resolve_manifest(client: Client, target: oci.Descriptor, platform: oci.Platform | None = None) -> oci.Descriptor:
    """Walk an index down to the manifest for ``platform`` (host platform by default)."""
    desc = target
    for _ in range(4):  # nested indexes are legal but never deep
        if desc.media_type in oci.MANIFEST_TYPES:
            return desc
        if desc.media_type not in oci.INDEX_TYPES:
            raise InvalidArgument(f"unsupported media type {desc.media_type!r} for an image target")
        index = oci.Index.parse(read_blob(client, desc), desc.media_type)
        desc = oci.select_manifest(index, platform or oci.host_platform())
    raise InvalidArgument("image index nesting is too deep")


def load_local(client: Client, text: str, platform: oci.Platform | None = None) -> LocalImage:
    image = find_image(client, text)
    mdesc = resolve_manifest(client, image.target, platform)
    try:
        manifest = oci.Manifest.parse(read_blob(client, mdesc), mdesc.media_type)
        config = oci.ImageConfig.parse(read_blob(client, manifest.config))
    except NotFound as e:
        raise NotFound(f"image {image.name}: content missing for platform "
                       f"{platform or oci.host_platform()}: {e}",
                       hint="pull it again, with --platform if it is not the host's") from e
    return LocalImage(image, mdesc, manifest, config)


def is_unpacked(client: Client, config: oci.ImageConfig, snapshotter: str) -> bool:
    chain = oci.chain_ids(config.diff_ids)
    if not chain:
        return True
    try:
        client.snapshots(snapshotter).stat(chain[-1])
        return True
    except NotFound:
        return False


# Linux's overlayfs stacks at most 500 lower layers (OVL_MAX_STACK), and its mount options must fit one page:
# containerd 1.6 shortens the lowerdir paths, which still fails before 500 of its snapshot directories. Above this
# count a container's root filesystem cannot be mounted, and containerd's error (the whole mount, far bigger than
# gRPC's metadata limit) reaches the client as a bare RST_STREAM. Docker caps images at 125 layers.
MAX_STACKED_LAYERS = 400


def check_stackable(name: str, layers: int) -> None:
    """Refuse an image whose layers are too many for a container's overlay root filesystem."""
    if layers > MAX_STACKED_LAYERS:
        raise InvalidArgument(f"image {name} has {layers} layers; a container's root filesystem can stack at most "
                              f"{MAX_STACKED_LAYERS} (the overlayfs limit), so it cannot be unpacked or run",
                              hint="rebuild it with fewer layers (e.g. squash RUN steps, or flatten it)")


def _no_stream_processor(message: str) -> bool:
    """containerd's Apply error when the decoder its config names cannot be run: not on its PATH (``exec:
    "ctd-decoder": executable file not found in $PATH``) or found only relative to its working directory,
    which Go refuses (``ctd-decoder resolves to executable in current directory``)."""
    low = message.lower()
    return "decoder" in low and "executable" in low


class Unpacker:
    """Applies layers in chain order; a layer whose snapshot exists is skipped (shared base layers)."""

    def __init__(self, client: Client, snapshotter: str, diff_ids: list[str],
                 progress: Progress | None = None,
                 payloads: Callable[[oci.Descriptor], Mapping[str, tuple[str, bytes]]] | None = None) -> None:
        self.client = client
        # per-layer Diff.Apply payloads for stream processors (e.g. decryption keys for encrypted layers)
        self.payloads = payloads
        self.snapshotter = snapshotter
        self.sn = client.snapshots(snapshotter)
        self.diff_ids = diff_ids
        self.chain = oci.chain_ids(diff_ids)
        self.progress = progress

    def has(self, i: int) -> bool:
        try:
            self.sn.stat(self.chain[i])
            return True
        except NotFound:
            return False

    def prepare(self, i: int, layer: oci.Descriptor, extra_labels: Mapping[str, str] | None = None
                ) -> tuple[str, list[Mount]] | None:
        """Start unpacking layer ``i`` (layers 0..i-1 must be unpacked; the caller has seen that ``i`` is not):
        None when a remote snapshotter just made it from ``extra_labels``, or a concurrent unpack did (both
        answer AlreadyExists: nothing to fetch); else the active snapshot's key and mounts, for
        :meth:`apply_prepared` once the blob is stored."""
        chain_id = self.chain[i]
        parent = self.chain[i - 1] if i else ""
        key = f"extract-{time.time_ns()}-{os.urandom(6).hex()} {chain_id}"
        snap_labels = {k: v for k, v in layer.annotations.items() if k.startswith(L.SNAPSHOT_LABEL_PREFIX)}
        snap_labels.update(extra_labels or {})
        snap_labels[L.SNAPSHOT_REF] = chain_id
        try:
            return key, self.sn.prepare(key, parent, snap_labels)
        except AlreadyExists:
            return None  # a remote snapshotter, or a concurrent unpack, has it

    def apply(self, i: int, layer: oci.Descriptor, key_label: str = "") -> None:
        """Unpack layer ``i`` from the content store; layers 0..i-1 must be unpacked already."""
        if self.has(i):
            return
        prepared = self.prepare(i, layer)
        if prepared is not None:
            self.apply_prepared(i, layer, prepared, key_label)

    def apply_prepared(self, i: int, layer: oci.Descriptor, prepared: tuple[str, list[Mount]],
                       key_label: str = "") -> None:
        """Apply the stored blob of layer ``i`` onto the snapshot :meth:`prepare` made, and commit it."""
        chain_id = self.chain[i]
        key, mounts = prepared
        committed = False
        try:
            if self.progress and key_label:
                self.progress.status(key_label, "extracting")
            try:
                applied = self.client.diff.apply(layer, mounts, self.payloads(layer) if self.payloads else None)
            except CtkError as e:
                if layer.media_type.endswith(oci.ENCRYPTED_SUFFIX) and _no_stream_processor(e.message):
                    e.hint = ("containerd has no usable stream processor for encrypted layers: add the "
                              "[stream_processors] snippet of tools/crypt/README.md to its config and restart it")
                raise
            if applied.digest == EMPTY_DIGEST and layer.media_type.endswith(oci.ENCRYPTED_SUFFIX):
                # containerd 1.6 does not always turn a failed stream processor into a failed Apply: on a
                # busy machine it can read the decoder's empty stdout to EOF first and apply nothing
                raise IntegrityError(f"layer {layer.digest}: the decoder gave no plaintext: none of the keys "
                                     "given opens this layer",
                                     hint="check the --decryption-key file and its password")
            if applied.digest != self.diff_ids[i]:
                raise IntegrityError(f"layer {layer.digest}: unpacked content has digest {applied.digest}, "
                                     f"the image config says {self.diff_ids[i]}")
            try:
                self.sn.commit(chain_id, key, {L.SNAPSHOT_REF: chain_id})
                committed = True  # the active snapshot ``key`` is gone: nothing to discard (two RPCs fewer)
            except AlreadyExists:
                pass  # lost a race with another unpack of the same layer: theirs is as good, ours goes
        finally:
            if not committed:
                self.discard(key)
        self.client.content.update_labels(layer.digest, {L.UNCOMPRESSED: self.diff_ids[i]})
        if self.progress and key_label:
            self.progress.status(key_label, "extracted")

    def discard(self, key: str) -> None:
        """Drop an active snapshot :meth:`prepare` made (a failed or abandoned unpack)."""
        try:
            self.sn.remove(key)
        except NotFound:
            pass

    def finish(self, config_digest: str) -> None:
        """Root the snapshot chain from the config, so it lives as long as the image."""
        if self.chain:
            self.client.content.update_labels(config_digest, L.gc_snapshot(self.snapshotter, self.chain[-1]))


def unpack(client: Client, img: LocalImage, snapshotter: str, progress: Progress | None = None,
           decryption_keys: tuple[KeySource, ...] = ()) -> None:
    """Unpack an image whose content is all present (load, or a pull with --unpack=false earlier)."""
    from .decryption_keys import layer_payloads, require_keys

    check_stackable(img.image.name, len(img.manifest.layers))
    require_keys(img.manifest.layers, decryption_keys)
    if len(img.manifest.layers) != len(img.config.diff_ids):
        raise InvalidArgument(f"image {img.image.name}: {len(img.manifest.layers)} layers but "
                              f"{len(img.config.diff_ids)} diff_ids in its config")
    # under a lease: a committed layer is not referenced from the image until finish() labels the config, and
    # containerd's garbage collector must not take it in between
    lease = client.leases.create(expire=timedelta(hours=1))
    try:
        u = Unpacker(client.with_lease(lease), snapshotter, img.config.diff_ids, progress,
                     layer_payloads(decryption_keys))
        for i, layer in enumerate(img.manifest.layers):
            u.apply(i, layer, layer.digest[7:19])
        u.finish(img.manifest.config.digest)
    finally:
        try:
            client.leases.delete(lease)
        except CtkError:
            pass  # it expires by itself


def image_sizes(client: Client, img: LocalImage, snapshotter: str) -> tuple[int, int]:
    """(unpacked size of the snapshot chain, size of the compressed blobs), as nerdctl's SIZE and BLOB SIZE."""
    blob = img.manifest_desc.size + img.manifest.config.size + sum(layer.size for layer in img.manifest.layers)
    unpacked = 0
    sn = client.snapshots(snapshotter)
    for cid in img.chain_ids:
        try:
            unpacked += sn.usage(cid)[0]
        except NotFound:
            break
    return unpacked, blob

