"""Confined paths for ctk-build: the resolver lives in :mod:`ctk_shared.confined` (ctk-run cp uses it too);
this module keeps the names ctk-build's writers use, plus the build-only :func:`remove_if_empty`."""
from __future__ import annotations

import os
import posixpath
import stat

from ctk_shared.confined import (  # noqa: F401 - ctk-build's writers use these through this module
    O_DIR,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    MakeDir,
    Root,
    at_path,
    default_mkdir,
    lstat_at,
    openat2,
    remove_at,
)

__all__ = ["O_DIR", "RESOLVE_BENEATH", "RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_XDEV",
           "MakeDir", "Root", "at_path", "default_mkdir", "lstat_at", "openat2", "remove_at", "remove_if_empty"]


def remove_if_empty(top: str, rel: str) -> None:
    """Remove ``rel`` under directory ``top`` when it is an empty directory or an empty regular file, not
    following any link on the way: a RUN step may have replaced a parent (``/etc``) with a link to a host
    path, and the mount points runc made are plain entries anyway. Anything else is left alone."""
    parent, name = posixpath.split(rel.strip("/"))
    if not name:
        return
    with Root(top) as root:
        try:
            pfd = root.open_dir(parent, follow=False)
        except OSError:
            return
        try:
            st = lstat_at(pfd, name)
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.rmdir(name, dir_fd=pfd)
            elif st is not None and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(name, dir_fd=pfd)
        except OSError:
            pass  # not empty: the step's own work
        finally:
            os.close(pfd)
