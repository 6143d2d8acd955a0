"""``save`` and ``load``: image tars in and out of the store, as ``(client, gopts, opts) -> Result``
(docs/CONVENTIONS.md §7). The cli hands over the streams behind ``-`` (stdout for ``save -o -``, the spooled stdin
of ``load``): nothing here touches ``sys.stdin`` or ``sys.stdout``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

    from .options import LoadOptions, SaveOptions


@dataclass(frozen=True)
class Saved:
    """Result of ``save``: the names of the images written to the tar."""

    names: list[str]  # the images written, as stored


@dataclass(frozen=True)
class Loaded:
    """Result of ``load``: each image the archive held, as the ``NAME@DIGEST`` line the cli prints."""

    refs: list[str]  # each loaded image as NAME@DIGEST, the line the cli prints


def save(client: Client, gopts: GlobalOptions, opts: SaveOptions) -> Saved:
    from ctk_shared import archive
    from ctk_shared.images import load_local
    from ctk_shared.outputs import open_output

    imgs = [load_local(client, t, opts.platform) for t in opts.refs]
    if opts.output == "-":
        if opts.stdout is None:
            raise UsageError("save -o -: no output stream was handed over")
        if opts.stdout.isatty():
            raise UsageError("refusing to write a tar to a terminal", )
        archive.save(client, imgs, opts.stdout, opts.all_platforms)
        return Saved([i.image.name for i in imgs])
    # a regular file is replaced whole (never half a tar under the real name); a device, a FIFO or
    # /dev/stdout is streamed into and never renamed over (ctk_shared.outputs)
    with open_output(opts.output) as f:
        archive.save(client, imgs, f, opts.all_platforms)
    return Saved([i.image.name for i in imgs])


def load(client: Client, gopts: GlobalOptions, opts: LoadOptions) -> Loaded:
    from ctk_shared import archive
    from ctk_shared.progress import make_progress

    progress = make_progress(opts.quiet)
    try:
        loaded = archive.load(client, opts.tar, gopts.snapshotter, opts.platform, progress=progress)
    finally:
        progress.close()
    return Loaded([f"{item.name.split('@', 1)[0]}@{item.target.digest}" for item in loaded])
