"""What a ``create`` killed half-way leaves behind, and taking it back at the next ``create``.

A create makes, in order: the container's directory under the data root (/etc files, log), short-lived
snapshot views of the image (under leases), and the container's own snapshot under a lease until the
container record roots it. A SIGKILL in between would leave a directory without a container, and leases
pinning snapshots for their 24 h expiry. So:

* while a create runs it holds an flock on ``<container dir>/.creating`` (the kernel drops it when the
  process dies) and removes the file once done: a directory whose lock file can be locked belongs to a dead
  create, and is removed unless its container record exists after all (the create died just after);
* the lock file is made and locked under a temp name that names its process (as lease owners are named), so a
  create killed before the move leaves ``.creating.<owner>.tmp``, whose directory is reclaimed once that
  process is certainly gone;
* its leases are labelled ``ctk/lease.purpose=create`` and name their owner (ctk_shared.containerd.owners):
  once a dead create's directory is found, every such lease whose owner is provably gone is deleted, so its
  snapshots go at once (never a live create's).

Anonymous volumes made by a killed create are unused volumes: ``ctk-run volume prune`` takes them.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError, NotFound
from ctk_shared.outputs import rename_owned

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

LEASE_PURPOSE = "ctk/lease.purpose"
LEASE_LABELS = {LEASE_PURPOSE: "create"}
LOCK_NAME = ".creating"


def hold(cdir: Path) -> int:
    """Mark ``cdir`` as being created by this process (until :func:`release`, or its death).

    The lock file appears under its name already locked (made and locked under a temp name, then moved): a
    concurrent create's :func:`reclaim` must never find it unlocked between the open and the flock, and take
    this live create's directory for a dead one's."""
    tmp = cdir / _temp_name()
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rename_owned(tmp, cdir / LOCK_NAME)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd


def release(cdir: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(cdir / LOCK_NAME)
    with contextlib.suppress(OSError):
        os.close(fd)


def reclaim(client: Client, containers_dir: Path) -> None:
    """Take back what dead creates left (best effort: a failure here never stops the create that asks).

    The leases are looked at only when a dead create's directory was found: a create makes its lease after its
    lock file, so a create that died holding a lease left its directory too, and the directories are taken
    back first, so a dead create's lease is listed by whoever finds its directory (its owner is certainly
    gone by then). A create with nothing left over makes no Leases.List call (issue 20)."""
    try:
        entries = list(os.scandir(containers_dir))
    except OSError:
        return
    dead = False
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if os.path.lexists(os.path.join(entry.path, LOCK_NAME)):
            dead |= _reclaim_dir(client, Path(entry.path))
        elif _killed_before_locking(entry.path):
            dead = True
            _remove_unless_recorded(client, Path(entry.path))
    if dead:
        _reclaim_leases(client)


def _reclaim_leases(client: Client) -> None:
    from ctk_shared.containerd.owners import owner_gone

    try:
        for lease in client.leases.list([f'labels."{LEASE_PURPOSE}"=="create"']):
            if owner_gone(lease.labels):
                with contextlib.suppress(NotFound):
                    client.leases.delete(lease.id, sync=True)  # its snapshots go now, not at the next GC
    except CtkError:
        pass


def _owner_keys() -> tuple[str, ...]:
    from ctk_shared.containerd import owners  # not at import: the containerd package costs ~0.15 s

    return owners.OWNER_PID, owners.OWNER_START, owners.OWNER_PIDNS, owners.OWNER_BOOT


def _temp_name() -> str:
    """``.creating.<pid>.<start ticks>.<pid namespace>.<boot id>.tmp``: enough for ``owner_gone`` to judge."""
    from ctk_shared.containerd.owners import owner_labels

    owner = owner_labels()
    return ".".join([LOCK_NAME, *(owner[k] for k in _owner_keys()), "tmp"])


def _killed_before_locking(cdir: str) -> bool:
    """``cdir`` holds the temp lock file of a create that is certainly gone (killed between making the file and
    moving it into place). One of a live create, of another pid namespace or an unreadable name never is."""
    from ctk_shared.containerd.owners import owner_gone

    try:
        names = os.listdir(cdir)
    except OSError:
        return False
    for name in names:
        parts = name.split(".")  # "", "creating", pid, start, pidns, boot, "tmp"
        if len(parts) == 7 and name.startswith(LOCK_NAME + ".") and parts[-1] == "tmp" and \
                owner_gone(dict(zip(_owner_keys(), parts[2:6], strict=True))):
            return True
    return False


def _remove_unless_recorded(client: Client, cdir: Path) -> bool:
    """Remove a dead create's directory unless its container record exists (the create died just after making
    it); True when the container is whole."""
    try:
        client.containers.get(cdir.name)
    except NotFound:
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        return False
    except CtkError:
        return False
    return True


def _reclaim_dir(client: Client, cdir: Path) -> bool:
    """Take back ``cdir`` if its create is dead; True when it was."""
    try:
        fd = os.open(cdir / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a create still running
        if _remove_unless_recorded(client, cdir):
            with contextlib.suppress(OSError):
                os.unlink(cdir / LOCK_NAME)  # its create died just after the record was made: the container is whole
        return True
    finally:
        os.close(fd)
