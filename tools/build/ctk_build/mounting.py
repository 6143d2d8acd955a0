"""Mount a snapshot's mounts on a temporary directory, so COPY can write into it as a normal filesystem.

Uses mount(2) through ctypes: no ``mount`` process per step, and errors come back as errno. The build
runs as root (containerd's snapshots are root-owned anyway).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError, PermissionDenied

if TYPE_CHECKING:
    from ctk_shared.containerd import Mount

MS_RDONLY = 1
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: find_library("c") runs ldconfig -p
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

_FLAG_OPTIONS = {"ro": MS_RDONLY, "bind": MS_BIND, "rbind": MS_BIND | MS_REC, "rw": 0}


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        msg = f"mounting {fstype or 'bind'} {source} on {target}: {os.strerror(err)}"
        raise PermissionDenied(msg, hint="ctk-build runs as root") if err == 1 else CtkError(msg)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    for m in mounts:
        flags = 0
        data = []
        for opt in m.options:
            if opt in _FLAG_OPTIONS:
                flags |= _FLAG_OPTIONS[opt]
            else:
                data.append(opt)
        if m.type == "bind":
            flags |= MS_BIND
            _mount(m.source, target, "", flags & ~MS_RDONLY, "")
            if flags & MS_RDONLY:  # a bind mount becomes read-only only on a remount
                _mount("", target, "", MS_BIND | MS_RDONLY | 32, "")  # 32 = MS_REMOUNT
        else:
            _mount(m.source, target, m.type, flags, ",".join(data))


def unmount(target: str) -> None:
    if _libc.umount2(target.encode(), 0) != 0:
        _libc.umount2(target.encode(), MNT_DETACH)


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], base: str | None = None) -> Iterator[str]:
    """The mounts on a fresh temporary directory for the duration of the block."""
    target = tempfile.mkdtemp(prefix="ctk-build-", dir=base)
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            unmount(target)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def upper_dir(mounts: Sequence[Mount]) -> str | None:
    """The writable directory of an active snapshot (overlay upperdir or the bind source)."""
    for m in mounts:
        if m.type == "overlay":
            for opt in m.options:
                if opt.startswith("upperdir="):
                    return opt.split("=", 1)[1]
        if m.type == "bind" and "ro" not in m.options:
            return m.source
    return None
