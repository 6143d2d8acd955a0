"""``convert``: rewrite an image's layers (eStargz, zstd, uncompressed) into a new image in the store."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ctk_shared import output
from ctk_shared import reference as refs
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.oci import Platform


def convert(gopts: GlobalOptions, source: str, target: str, fmt_name: str, *, record_in: str | None,
            chunk_size: int, level: int | None, oci: bool, platforms: list[Platform], all_platforms: bool,
            quiet: bool, fmt: str) -> None:
    from ctk_shared import connect, estargz
    from ctk_shared.image_convert import ConvertOptions
    from ctk_shared.image_convert import convert as do_convert
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    dst = str(refs.parse(target))
    if level is not None and fmt_name == "estargz" and level > 9:
        raise UsageError(f"--compression-level {level}: gzip levels are 0-9")
    prioritized = estargz.read_record_file(record_in) if record_in else None
    client = connect.containerd(gopts)
    image = find_image(client, source)
    opts = ConvertOptions(format=fmt_name, oci=oci, chunk_size=chunk_size, level=level, prioritized=prioritized,
                          platforms=platforms, all_platforms=all_platforms)
    progress = make_progress(quiet)
    try:
        result = do_convert(client, image, dst, opts, progress)
        if result.missed_prioritized and not quiet:
            progress.note(f"{len(result.missed_prioritized)} recorded path(s) are in no layer, e.g. "
                          f"{result.missed_prioritized[0]}")
    finally:
        progress.close()
    output.emit_image(fmt, dst, result.target.digest, MediaType=result.target.media_type,
                      Platforms=list(result.platforms), Source=image.name)
