"""The data root (``--data-root``, default ``/var/lib/ctk``): who may look inside it.

It holds container logs, volumes, hosts/resolv files and network state, so it is created 0710 (owner all,
group traverse, others nothing), as dockerd keeps ``/var/lib/docker/containers``. Inside it, ordinary
modes are fine: nobody but root (and the group, knowing names) gets past the root. Containers are not
affected: runc bind-mounts volumes and /etc files as root, and inside the container only the mounted
file's own mode counts.

Every tool that creates something under the data root calls :func:`ensure` (or :func:`makedirs`) first,
because a plain ``mkdir -p`` of a subdirectory would create the root itself 0755.

An existing root is tightened to 0710 only when ctk evidently made it: it is owned by us and holds nothing
but entries ctk creates (``net``, ``build``, ``cni`` and namespace directories of ``containers``,
``volumes``, ``fifo`` and ``names.lock``). dockerd chmods its root unconditionally; a ctk ``--data-root``
may be a directory the user chose and shares with other things, whose mode is the user's business, so such
a root is left as it is (with a warning on stderr through logging).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InvalidArgument

DATA_ROOT_MODE = 0o710
_TOO_OPEN = 0o027  # group write, or anything for others
_TOP_ENTRIES = frozenset({"net", "build", "cni"})  # made by ctk-net and ctk-build
_NAMESPACE_ENTRIES = frozenset({"containers", "volumes", "fifo", "names.lock"})  # made by ctk-run
_ensured: set[str] = set()


def ensure(data_root: str | os.PathLike[str]) -> Path:
    """Create the data root 0710 if it is missing (its parents get ordinary modes, like /var/lib), or tighten
    a too-open one that ctk made; once per process and root."""
    root = os.path.abspath(data_root)
    if root not in _ensured:
        parent = os.path.dirname(root)
        if parent:
            os.makedirs(parent, exist_ok=True)
        try:
            os.mkdir(root, DATA_ROOT_MODE)
            os.chmod(root, DATA_ROOT_MODE)  # the umask may have taken bits we want (a 077 umask: group x)
        except FileExistsError:
            _tighten(root)
        _ensured.add(root)
    return Path(root)


def makedirs(data_root: str | os.PathLike[str], path: str | os.PathLike[str], mode: int = 0o755) -> Path:
    """``mkdir -p path`` (a directory under ``data_root``) after :func:`ensure`, so the root is never made
    with a subdirectory's mode."""
    ensure(data_root)
    os.makedirs(path, mode, exist_ok=True)
    return Path(path)


def _tighten(root: str) -> None:
    st = os.stat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"the data root {root} is not a directory", hint="point --data-root elsewhere")
    if not st.st_mode & _TOO_OPEN:
        return
    if st.st_uid == os.geteuid() and _made_by_ctk(root):
        os.chmod(root, DATA_ROOT_MODE)
        return
    import logging

    logging.getLogger(__name__).warning(
        "the data root %s is mode %04o (readable by other users); ctk did not make it, so it is left as it is: "
        "chmod 0710 it", root, stat.S_IMODE(st.st_mode))


def _made_by_ctk(root: str) -> bool:
    """True when ``root`` holds something and every entry is one ctk creates (see the module docstring)."""
    try:
        entries = os.listdir(root)
    except OSError:
        return False
    if not entries:
        return False  # an empty directory may be anybody's
    for name in entries:
        if name in _TOP_ENTRIES:
            continue
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            return False
        try:
            inner = os.listdir(path)
        except OSError:
            return False
        if not inner or not set(inner) <= _NAMESPACE_ENTRIES:
            return False
    return True
