"""Deterministic test images, built locally from Debian's static busybox: no network, same digests every run.

Images are written as OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/...``) and pushed to a
test registry with skopeo. Every byte is fixed: tar entries carry a fixed mtime, uid/gid 0 and ``root`` names;
gzip has mtime 0; zstd runs single-threaded; JSON is written compactly in a fixed key order. So two builds on
the same machine give the same digests (the busybox binary, zlib and zstd of the machine are inputs).

Building blocks:
  busybox_layer_tar()                     a runnable root filesystem (busybox + applet symlinks, /etc, /tmp)
  extra_layer_tar(files, ...)             small layers: files, dirs, symlinks, hardlinks, whiteouts
  random_layer_tar / many_files_layer_tar  bulk layers for benchmarks (random_bytes, text_bytes)
  build_image(layout, ref, layers, ...)   blobs + config + manifest (OCI or Docker schema2), tagged in index.json
  build_index(layout, ref, images, ...)   OCI image index or Docker manifest list over built images
  push_layout(layout, ref, dest, ...)     skopeo copy to a registry, checking the pushed digest is the layout's
  standard_images(workdir, host)          the catalogue the integration tests use (fixture ``test_images``)

Modules: media (types, fixed inputs), tars (layers), layouts (OCI layouts), push (skopeo), catalogue. Their
public names are all importable from this package.
"""
from __future__ import annotations

from .catalogue import (  # noqa: F401
    BUSYBOX_CONFIG,
    OTHER_ARCH,
    STANDARD_REPOS,
    WEB_PAGE,
    CatalogImage,
    build_standard_layouts,
    busybox_image,
    standard_images,
    web_image,
)
from .layouts import (  # noqa: F401
    ImageInfo,
    LayerInfo,
    build_image,
    build_index,
    init_layout,
    layout_refs,
    read_blob,
    read_index_json,
    tag_in_layout,
    validate_layout,
    write_blob,
)
from .media import (  # noqa: F401
    BUSYBOX_APPLETS,
    BUSYBOX_PATH,
    CREATED,
    DEFAULT_PATH,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    GROUP,
    GZIP_LEVEL,
    MTIME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    PASSWD,
    REF_NAME_ANNOTATION,
    ZSTD_LEVEL,
    Compression,
    canonical_json,
    host_platform,
    platform_string,
    sha256_digest,
)
from .push import PushError, push_layout, remote_manifest  # noqa: F401
from .tars import (  # noqa: F401
    FileSpec,
    LayerTar,
    busybox_layer_tar,
    compress,
    decompress,
    extra_layer_tar,
    many_files_layer_tar,
    random_bytes,
    random_layer_tar,
    text_bytes,
)
