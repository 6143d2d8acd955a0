"""Where ctk-run keeps per-container files under the data root, and the namespace-wide name lock.

Names must be unique per namespace even when two ``run --name x`` race: both take an ``flock`` on one
lock file before checking and creating, so exactly one wins. The kernel drops an flock when its holder
dies, so a crashed CLI never leaves a stale lock behind (nerdctl#3351).
"""
from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctk_shared import dataroot
from ctk_shared.errors import UsageError
from ctk_shared.outputs import open_owned

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def validate_name(name: str) -> str:
    if len(name) > 128:
        raise UsageError(f"invalid container name {name[:40]!r}…: {len(name)} characters, at most 128 are allowed",
                         hint="choose a shorter --name")
    if not _NAME_RE.match(name):
        raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def namespace_dir(data_root: str, namespace: str) -> Path:
    return Path(data_root) / namespace


def container_dir(data_root: str, namespace: str, container_id: str) -> Path:
    return namespace_dir(data_root, namespace) / "containers" / container_id


def log_path(data_root: str, namespace: str, container_id: str) -> Path:
    return container_dir(data_root, namespace, container_id) / f"{container_id}-json.log"


def make_container_dir(data_root: str, namespace: str, container_id: str) -> Path:
    """Create the new container's directory (logs, /etc files), the data root 0710 first. The ID is fresh,
    so the directory must not exist yet: whatever sits there was not made for this container."""
    d = container_dir(data_root, namespace, container_id)
    dataroot.makedirs(data_root, d.parent)
    d.mkdir(mode=0o755)
    return d


def remove_container_dir(data_root: str, namespace: str, container_id: str) -> None:
    import shutil

    shutil.rmtree(container_dir(data_root, namespace, container_id), ignore_errors=True)


@contextmanager
def name_lock(data_root: str, namespace: str) -> Iterator[None]:
    """Serialise name checks and container creation within a namespace (crash-safe: an flock)."""
    d = namespace_dir(data_root, namespace)
    dataroot.makedirs(data_root, d)
    fd = open_owned(d / "names.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
