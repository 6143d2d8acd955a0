"""The eStargz format's names and numbers, shared by the writer and the reader (see the package docstring)."""
from __future__ import annotations

import posixpath
import tarfile

from .. import limits

TOC_TAR_NAME = "stargz.index.json"
FOOTER_SIZE = 51
LEGACY_FOOTER_SIZE = 47
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
PREFETCH_LANDMARK = ".prefetch.landmark"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
LANDMARK_CONTENTS = b"\x0f"
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_LEVEL = 9  # gzip.BestCompression, as ctr-remote
MAX_TOC_SIZE = limits.MAX_TOC_SIZE  # refuse absurd TOCs before decompressing them

TAR_BLOCK = tarfile.BLOCKSIZE
FIELD_ORDER = ("name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName", "groupName",
               "offset", "innerOffset", "devMajor", "devMinor", "xattrs", "digest", "chunkOffset", "chunkSize",
               "chunkDigest")  # Go's TOCEntry field order, so the JSON reads like ctr-remote's


def clean_name(name: str) -> str:
    """A tar entry name as the TOC is indexed by: ``./a//b/`` -> ``a/b``, the root -> ``""``."""
    return posixpath.normpath("/" + name).lstrip("/")

