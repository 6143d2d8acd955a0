"""``--cache-to``: the steps this build used or made, written as a cache artifact to a registry or a directory.

``mode=min`` (BuildKit's default) exports the steps whose layers are in the built image (the target stage and
the stages it starts FROM); ``mode=max`` every step of every stage built. Layers go out gzipped by default: a
layer the build kept uncompressed is compressed once and the gzip form joins the local cache, so the next
export does not compress it again.

As BuildKit, a failed export fails the build (the image is not named), unless ``ignore-error=true``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ctk_shared import labels as L
from ctk_shared import oci
from ctk_shared.errors import CtkError

from . import cacheformat
from .cacheimport import gunzip
from .cachespecs import CacheTo

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

    from .cache import Cache, CacheShare, Used


def export_build(client: Client, gopts: GlobalOptions, share: CacheShare, image: oci.Descriptor,
                 specs: list[CacheTo], warn: Callable[[str], None]) -> list[str]:
    """Export the steps of a finished build whose image (manifest, or index of several platforms) is ``image``."""
    from .cache import Cache

    return export(client, gopts, Cache(client, gopts.snapshotter, share=share), image_chains(client, image),
                  specs, warn)


def image_chains(client: Client, image: oci.Descriptor) -> list[str]:
    """The chain IDs of every layer of the image (of each platform's image, for an index)."""
    from ctk_shared.images import read_blob

    manifests = [image]
    if image.media_type in oci.INDEX_TYPES:
        manifests = list(oci.Index.parse(read_blob(client, image), image.media_type).manifests)
    out: list[str] = []
    for m in manifests:
        manifest = oci.Manifest.parse(read_blob(client, m), m.media_type)
        out += oci.chain_ids(oci.ImageConfig.parse(read_blob(client, manifest.config)).diff_ids)
    return out


def export(client: Client, gopts: GlobalOptions, cache: Cache, image_chain: list[str], specs: list[CacheTo],
           warn: Callable[[str], None]) -> list[str]:
    """Export to every destination; returns one summary line per export done. ``client`` is bound to the build's
    lease (the cache documents are stored under it until pushed or written)."""
    done = []
    for spec in specs:
        try:
            steps = _steps(client, cache, image_chain, spec)
            config, manifest, layers = cacheformat.encode(steps)
            cdigest = oci.sha256_digest(config)
            client.content.write_blob(f"ctk-build-cacheconfig-{cdigest}", config, cdigest)
            mdigest = oci.sha256_digest(manifest)
            client.content.write_blob(f"ctk-build-cachemanifest-{mdigest}", manifest, mdigest,
                                      {**L.gc_config(cdigest), **L.gc_layers([d.digest for d in layers])})
            mdesc = oci.Descriptor(oci.OCI_MANIFEST, mdigest, len(manifest))
            from .cachestores import push_registry, write_layout

            if spec.type == "registry":
                push_registry(client, gopts, spec, mdesc)
            else:
                write_layout(client, spec, mdesc,
                             [oci.Descriptor(cacheformat.CONFIG_MEDIA_TYPE, cdigest, len(config)), *layers])
            done.append(f"exported build cache to {spec} ({len(steps)} steps, {len(layers)} layers, mode={spec.mode})")
        except (CtkError, OSError) as e:
            message = e.message if isinstance(e, CtkError) else f"{e.strerror or e}"
            if spec.ignore_error:
                warn(f"[warning] exporting the build cache to {spec} failed: {message} (ignore-error=true)")
                continue
            fix = e.hint if isinstance(e, CtkError) and e.hint else ""
            raise CtkError(f"exporting the build cache to {spec}: {message}",
                           hint=(fix + "; or " if fix else "") + "add ignore-error=true to --cache-to to keep the "
                           "image when the cache cannot be exported") from None
    return done


def _steps(client: Client, cache: Cache, image_chain: list[str], spec: CacheTo) -> list[cacheformat.CacheStep]:
    in_image = set(image_chain)
    out = []
    for u in cache.used_steps():
        e = u.entry
        if e.layer is None or (spec.mode == "min" and e.chain_id not in in_image):
            continue
        out.append(cacheformat.CacheStep(e.key, u.parent_chain, _form(client, cache, u, spec), e.diff_id,
                                         _plain_size(client, e.layer, e.diff_id), e.created))
    return out


def _form(client: Client, cache: Cache, u: Used, spec: CacheTo) -> oci.Descriptor:
    """The layer as it is exported: gzip unless ``compression=uncompressed``; a layer already in the other form
    is converted only when it is uncompressed and gzip is wanted, or with ``force-compression``."""
    from .layers import convert_layer

    layer = u.entry.layer
    assert layer is not None
    is_gzip = oci.layer_compression(layer.media_type) == "gzip"
    want_gzip = spec.compression == "gzip"
    if is_gzip == want_gzip or (is_gzip and not spec.force_compression):
        return layer
    want = oci.OCI_LAYER_GZIP if want_gzip else oci.OCI_LAYER
    stored = cache.form(u.entry.key, want)
    if stored is not None and stored.layer is not None and stored.diff_id == u.entry.diff_id:
        return stored.layer
    converted = convert_layer(client, layer, u.entry.diff_id, spec.compression)
    cache.store(u.entry.key, u.entry.created, converted, u.entry.diff_id, u.entry.chain_id)
    return converted


def _plain_size(client: Client, layer: oci.Descriptor, diff_id: str) -> int:
    """Bytes of the uncompressed tar: the stored tar's size, else counted through a gunzip of the blob."""
    if layer.media_type == oci.OCI_LAYER:
        return layer.size
    try:
        return client.content.info(diff_id).size
    except CtkError:
        pass
    return sum(len(piece) for piece in gunzip(client.content.read(layer.digest)))
