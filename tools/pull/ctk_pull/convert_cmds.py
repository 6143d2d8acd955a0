"""``convert``: rewrite an image's layers (eStargz, zstd, uncompressed) into a new image in the store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctk_shared import reference as refs
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

    from .options import ConvertOptions


@dataclass(frozen=True)
class Converted:
    """The image ``convert`` wrote: the cli prints ``DST@DIGEST`` (or the JSON record)."""

    name: str
    digest: str
    media_type: str
    platforms: list[str]
    source: str


def convert(client: Client, gopts: GlobalOptions, opts: ConvertOptions) -> Converted:
    from ctk_shared import estargz
    from ctk_shared.image_convert import ConvertOptions as Converting
    from ctk_shared.image_convert import convert as do_convert
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    chosen = [n for n, on in (("estargz", opts.estargz), ("zstd", opts.zstd), ("uncompressed", opts.uncompressed))
              if on]
    if len(chosen) != 1:
        raise UsageError("choose exactly one of --estargz, --zstd, --uncompressed")
    if opts.platforms and opts.all_platforms:
        raise UsageError("--platform and --all-platforms are mutually exclusive")
    fmt_name, level = chosen[0], opts.level
    if fmt_name != "estargz" and (opts.estargz_record_in or opts.chunk_size):
        raise UsageError("--estargz-record-in and --chunk-size only apply to --estargz")
    dst = str(refs.parse(opts.target))
    if level is not None and fmt_name == "estargz" and level > 9:
        raise UsageError(f"--compression-level {level}: gzip levels are 0-9")
    prioritized = estargz.read_record_file(opts.estargz_record_in) if opts.estargz_record_in else None
    image = find_image(client, opts.source)
    how = Converting(format=fmt_name, oci=opts.oci, chunk_size=opts.chunk_size, level=level, prioritized=prioritized,
                     platforms=list(opts.platforms), all_platforms=opts.all_platforms)
    progress = make_progress(opts.quiet)
    try:
        result = do_convert(client, image, dst, how, progress)
        if result.missed_prioritized and not opts.quiet:
            progress.note(f"{len(result.missed_prioritized)} recorded path(s) are in no layer, e.g. "
                          f"{result.missed_prioritized[0]}")
    finally:
        progress.close()
    return Converted(dst, result.target.digest, result.target.media_type, list(result.platforms), image.name)
