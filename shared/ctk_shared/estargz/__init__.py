"""eStargz: a tar.gz layer that can be read file by file with HTTP Range requests (lazy pulling).

Format (stargz-snapshotter ``docs/estargz.md``, ``estargz/{estargz,build,gzip,types}.go`` v0.12):

* the blob is a concatenation of gzip members, so it stays a valid ``tar+gzip`` for every runtime;
* a new member starts at the payload of each non-empty regular file and at every ``chunk_size`` bytes
  inside it; the tar headers that follow a payload go into the payload's last member;
* the last tar entry is ``stargz.index.json`` (the TOC), alone in its own member together with the
  tar end-of-archive blocks; its JSON lists every entry with the compressed ``offset`` of the member
  where its data starts and a sha256 ``chunkDigest`` per chunk;
* a 51-byte footer (an empty gzip member whose extra field is ``"%016xSTARGZ"`` % TOC offset) ends the blob;
* a one-byte landmark file (``.prefetch.landmark`` after prioritised files, else ``.no.prefetch.landmark``
  first) tells the snapshotter what to prefetch.

The layer descriptor carries ``containerd.io/snapshot/stargz/toc.digest`` (sha256 of the TOC JSON) and
``io.containers.estargz.uncompressed-size``; the DiffID is the sha256 of the whole decompressed tar.

:func:`build` (writer.py) writes one from any layer (plain, gzip or zstd tar); :class:`Reader` (reader.py)
parses the footer and TOC of one, verifies the TOC digest and reads or verifies chunks, for tests and for a lazy
snapshotter; format.py holds the names and numbers both use.
"""
from __future__ import annotations

from .format import (
                     DEFAULT_CHUNK_SIZE,
                     DEFAULT_LEVEL,
                     FOOTER_SIZE,
                     LANDMARK_CONTENTS,
                     LEGACY_FOOTER_SIZE,
                     MAX_TOC_SIZE,
                     NO_PREFETCH_LANDMARK,
                     PREFETCH_LANDMARK,
                     TOC_DIGEST_ANNOTATION,
                     TOC_TAR_NAME,
                     UNCOMPRESSED_SIZE_ANNOTATION,
                     clean_name,
)
from .reader import (
    TAIL_GUESS,
    TOC,
    Reader,
    decompress_member,
    parse_footer,
    parse_toc_member,
    public_entries,
    read_tail,
    toc_location,
    verify_blob,
)
from .writer import BuildResult, build, footer_bytes, format_modtime, read_record_file, toc_json

# the package's names: the format (format.py), the writer (writer.py) and the reader (reader.py)
__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_LEVEL", "FOOTER_SIZE", "LANDMARK_CONTENTS", "LEGACY_FOOTER_SIZE",
           "MAX_TOC_SIZE", "NO_PREFETCH_LANDMARK", "PREFETCH_LANDMARK", "TAIL_GUESS", "TOC", "TOC_DIGEST_ANNOTATION",
           "TOC_TAR_NAME", "UNCOMPRESSED_SIZE_ANNOTATION", "BuildResult", "Reader", "build", "clean_name",
           "decompress_member", "footer_bytes", "format_modtime", "parse_footer", "parse_toc_member",
           "public_entries", "read_record_file", "read_tail", "toc_json", "toc_location", "verify_blob"]
