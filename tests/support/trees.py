"""Fingerprints of host trees, for tests that prove a hostile build or image wrote nothing outside its root."""
from __future__ import annotations

import hashlib
import os
import stat


def tree_hash(top: str | os.PathLike[str]) -> str:
    """Names, types, modes, owners, mtimes, link targets and contents of everything under ``top``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in [".", *sorted(dirnames), *sorted(filenames)]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0{st.st_mtime_ns}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()
