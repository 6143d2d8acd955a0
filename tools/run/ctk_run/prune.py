"""``ctk-run prune``: remove stopped containers, and (on request) data directories of namespaces that are gone.

Docker's ``container prune``: every container that is not running, paused or restarting goes, through the same
removal as ``rm`` (record, snapshot, logs, /etc files; anonymous volumes stay, as Docker keeps them: ``volume
prune`` is their command). The space reported is each container's writable layer plus its files (logs) under
the data root; Docker counts the writable layer only.

Two choices Docker does not face, having a daemon:

* a container ``Created`` less than :data:`CREATED_GRACE` seconds ago is kept: a ``ctk-run run`` in another
  shell may be about to start it;
* ``<data-root>/<namespace>`` directories outlive their containerd namespace (``ctr ns rm``). They are removed
  only with ``--namespace-dirs`` (listed in the prompt), and only when containerd does not know the namespace,
  ctk evidently made the directory (nothing in it but ctk's entries), and no ctk-run holds its name lock.
  Without the flag, prune mentions them on stderr.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ctk_shared import output
from ctk_shared.dataroot import _NAMESPACE_ENTRIES, _TOP_ENTRIES
from ctk_shared.errors import CtkError, NotFound

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.prune import PruneFilter

    from .options import PruneOptions

CREATED_GRACE = 60.0
_KEEP_STATES = frozenset({"running", "paused", "restarting"})
WARNING = "This will remove all stopped containers."


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _prunable(c: Container, status: str, flt: PruneFilter, now: float) -> bool:
    from .listing import _created, user_labels

    if status in _KEEP_STATES:
        return False
    created = _created(c)
    if status == "created" and created is not None and now - created.timestamp() < CREATED_GRACE:
        return False
    return flt.matches(created, user_labels(c))


def prune_containers(client: Client, gopts: GlobalOptions, flt: PruneFilter) -> tuple[list[str], int]:
    """Remove the stopped containers ``flt`` selects; (their IDs, bytes reclaimed)."""
    from . import state
    from .lifecycle import remove
    from .status import state_of

    tasks = {t.id: t for t in client.tasks.list()}
    now = time.time()
    removed: list[str] = []
    total = 0
    for c in client.containers.list():
        if not _prunable(c, state_of(c, tasks.get(c.id)).status, flt, now):
            continue
        size = _tree_bytes(state.container_dir(gopts.data_root, client.namespace, c.id))
        try:
            size += client.snapshots(c.snapshotter or gopts.snapshotter).usage(c.snapshot_key or c.id)[0]
        except CtkError:
            pass
        try:
            remove(client, gopts, c, force=False)
        except NotFound:
            continue  # removed meanwhile (a --rm container's logger)
        except CtkError as e:
            sys.stderr.write(f"ctk-run: warning: not removing {c.id[:12]}: {e}\n")
            continue
        removed.append(c.id)
        total += size
    return removed, total


@dataclass(frozen=True)
class OrphanDir:
    """A data-root directory of a namespace containerd no longer has, with the disk space it holds."""

    namespace: str
    path: Path
    size: int


def orphan_namespace_dirs(client: Client, data_root: str) -> list[OrphanDir]:
    """Directories under the data root of namespaces containerd no longer has (see the module doc)."""
    root = Path(data_root)
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    live = set(client.namespaces.list())
    found = []
    for name in entries:
        path = root / name
        if name in _TOP_ENTRIES or name in live or path.is_symlink() or not path.is_dir():
            continue
        try:
            inner = set(os.listdir(path))
        except OSError:
            continue
        if inner and inner <= _NAMESPACE_ENTRIES:
            found.append(OrphanDir(name, path, _tree_bytes(path)))
    return found


def remove_orphan_dirs(client: Client, orphans: list[OrphanDir]) -> list[OrphanDir]:
    """Remove each directory whose namespace is still absent while we hold its name lock (a ctk-run creating
    a container there holds it, and its namespace exists once the container does)."""
    done = []
    for o in orphans:
        lock = o.path / "names.lock"
        fd = None
        try:
            if lock.exists():
                fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a ctk-run is at work in it
            if o.namespace in client.namespaces.list():
                continue
            shutil.rmtree(o.path)
            done.append(o)
        except OSError as e:
            sys.stderr.write(f"ctk-run: warning: removing {o.path}: {e}\n")
        finally:
            if fd is not None:
                os.close(fd)
    return done


def orphan_warning(orphans: list[OrphanDir]) -> str:
    names = ", ".join(o.namespace for o in orphans)
    size = output.human_size(sum(o.size for o in orphans))
    return (f"{WARNING}\nIt will also remove the data directories ({size}: logs, volumes) of namespaces that no "
            f"longer exist in containerd: {names}.")


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed: the cli prints Docker's ``Deleted Containers:`` report from it."""

    removed: list[str]  # container IDs
    dirs: list[OrphanDir]  # namespace directories removed (--namespace-dirs)
    reclaimed: int  # bytes, the directories included


def prune(client: Client, gopts: GlobalOptions, opts: PruneOptions) -> Pruned:
    """The prompt is the cli's (it lists ``opts.orphans``); this removes at once."""
    from ctk_shared.prune import PruneFilter

    removed, total = prune_containers(client, gopts, opts.filters or PruneFilter())
    dirs = remove_orphan_dirs(client, list(opts.orphans)) if opts.namespace_dirs else []
    return Pruned(removed, dirs, total + sum(d.size for d in dirs))


def mention_orphans(orphans: list[OrphanDir]) -> None:
    """Without --namespace-dirs: say that there are some, and how to remove them."""
    if orphans:
        size = output.human_size(sum(o.size for o in orphans))
        sys.stderr.write(f"ctk-run: note: {len(orphans)} data director{'y' if len(orphans) == 1 else 'ies'} "
                         f"({size}) belong to namespaces that no longer exist "
                         f"({', '.join(o.namespace for o in orphans)}): `ctk-run prune --namespace-dirs` "
                         "removes them\n")
