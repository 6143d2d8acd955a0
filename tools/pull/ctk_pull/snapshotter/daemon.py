"""``ctk-pull lazy-serve``: run the snapshot store as a containerd proxy plugin until SIGTERM/SIGINT.

containerd's config names the socket::

    [proxy_plugins.ctk-lazy]
      type = "snapshot"
      address = "/run/ctk-lazy/snapshotter.sock"
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from .store import SnapshotStore

log = logging.getLogger("ctk.snapshotter")


def serve(root: str, socket: str, *, debug: bool = False, ready: threading.Event | None = None) -> None:
    from ctk_shared.containerd.snapshots_server import SnapshotServer

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if debug else logging.INFO,
                        format="ctk-pull lazy-serve: %(levelname)s %(message)s")
    store = SnapshotStore(Path(root))
    store.cleanup()
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
            pass
    finally:
        server.stop()
        for s, h in old.items():
            signal.signal(s, h)
