"""``save`` and ``load``: image tars in and out of the store."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ctk_shared import output
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.oci import Platform


def save(gopts: GlobalOptions, texts: list[str], dest: str, platform: Platform | None,
         all_platforms: bool) -> None:
    from ctk_shared import archive, connect
    from ctk_shared.images import load_local
    from ctk_shared.outputs import open_output

    client = connect.containerd(gopts)
    imgs = [load_local(client, t, platform) for t in texts]
    if dest == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a tar to a terminal", )
        archive.save(client, imgs, sys.stdout.buffer, all_platforms)
        return
    # a regular file is replaced whole (never half a tar under the real name); a device, a FIFO or
    # /dev/stdout is streamed into and never renamed over (ctk_shared.outputs)
    with open_output(dest) as f:
        archive.save(client, imgs, f, all_platforms)


def load(gopts: GlobalOptions, src: str, platform: Platform | None, quiet: bool) -> None:
    from ctk_shared import archive, connect
    from ctk_shared.progress import make_progress

    client = connect.containerd(gopts)
    progress = make_progress(quiet)
    try:
        with archive.open_input(src) as f:
            loaded = archive.load(client, f, gopts.snapshotter, platform, progress=progress)
    finally:
        progress.close()
    for item in loaded:
        output.emit_line(f"{item.name.split('@', 1)[0]}@{item.target.digest}")
