"""Reading a snapshot's files without mounting it: straight from the directories behind its mounts.

A snapshot's mounts (from ``Snapshots.view``/``prepare``/``mounts``) are either one bind mount of a directory
(the native snapshotter) or an overlay whose ``upperdir`` and ``lowerdir=a:b:c`` list its layers top first.
Looking a file up in those directories, top first, gives what a mount would show — an overlay whiteout (a
0/0 character device) in a higher layer means the file was deleted. Other mount types are not read.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .containerd import Mount


def layered_dirs(mounts: Sequence[Mount]) -> list[str]:
    """The directories of a snapshot, top first (upper, then lowers)."""
    dirs: list[str] = []
    for m in mounts:
        if m.type == "bind":
            dirs.append(m.source)
        elif m.type == "overlay":
            for opt in m.options:
                if opt.startswith("upperdir="):
                    dirs.insert(0, opt.split("=", 1)[1])
                elif opt.startswith("lowerdir="):
                    dirs.extend(opt.split("=", 1)[1].split(":"))
    return dirs


def read_layered(dirs: Sequence[str], rel: str) -> str | None:
    """The text of the regular file ``rel`` (relative to the root) as the topmost layer has it; None when it is
    missing, deleted by a whiteout, or not a regular file."""
    for d in dirs:
        p = os.path.join(d, rel)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # whiteout: deleted in a later layer
        if stat.S_ISREG(st.st_mode):
            with open(p, errors="replace") as f:
                return f.read()
        return None
    return None
