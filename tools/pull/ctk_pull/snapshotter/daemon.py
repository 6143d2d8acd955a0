"""``ctk-pull lazy-serve``: run the snapshot store as a containerd proxy plugin until SIGTERM/SIGINT.

eStargz layers whose Prepare carries the remote-snapshot labels are mounted lazily (:mod:`.remote`); everything
else gets overlay snapshots. containerd's config names the socket::

    [proxy_plugins.ctk-lazy]
      type = "snapshot"
      address = "/run/ctk-lazy/snapshotter.sock"
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import lazyfs
from .remote import LazyMounter
from .store import SnapshotStore

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

    from ..options import LazyServeOptions

log = logging.getLogger("ctk.snapshotter")


def lazy_serve(client: None, gopts: GlobalOptions, opts: LazyServeOptions) -> None:
    """``ctk-pull lazy-serve`` in the shape of docs/CONVENTIONS.md §7: it serves containerd rather than calls it,
    so there is no client (``None``); returns on SIGTERM/SIGINT."""
    serve(opts.root, opts.socket_path, debug=gopts.debug, insecure=gopts.insecure_registry,
          hosts_dirs=gopts.hosts_dir, registry_timeout=gopts.registry_timeout)


def serve(root: str, socket: str, *, debug: bool = False, insecure: bool = False, hosts_dirs: Sequence[str] = (),
          ready: threading.Event | None = None, registry_timeout: Sequence[float] | None = None) -> None:
    """Layers of running containers stay mounted when this returns: their lazyfs processes outlive it."""
    from ctk_shared.containerd.snapshots_server import SnapshotServer

    lazyfs.fuse_binding()  # without ctk-pull's lazy extra: one line with the fix, before anything is made
    # imported now, not inside the first lazy Prepare (requests alone is ~0.1-0.3 s), which fetches the manifest
    from ctk_shared import auth, outputs  # noqa: F401
    from ctk_shared.collector import imports_done
    from ctk_shared.registry import client  # noqa: F401

    imports_done()  # a daemon that never dials containerd: the collector back to normal (ctk_shared.collector)

    # a daemon's lines carry their time (UTC, to the millisecond): what a slow pull spent where is read from them
    fmt = logging.Formatter("ctk-pull lazy-serve: %(asctime)s.%(msecs)03dZ %(levelname)s %(message)s",
                            datefmt="%Y-%m-%dT%H:%M:%S")
    fmt.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    root_path = Path(root).resolve()
    lazy = LazyMounter(root_path / "cache", insecure=insecure, hosts_dirs=hosts_dirs, registry_timeout=registry_timeout)
    lazy.start_zygote()
    store = SnapshotStore(root_path, lazy=lazy, premount=True)
    store.cleanup()
    if (n := store.remount()):
        log.info("mounted %d lazily served layer(s) again", n)
    server = SnapshotServer(store, socket)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("serving snapshots under %s on %s", store.root, server.socket)
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(1.0):
            if store.premounts is not None:
                store.premounts.sweep()
    finally:
        server.stop()
        if store.premounts is not None:
            store.premounts.close()
        lazy.stop_zygote()
        for s, h in old.items():
            signal.signal(s, h)
