"""Look inside an unpacked image the way runc would see it: a read-only view of its snapshot, mounted."""
from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ctk_shared import images as store


@contextlib.contextmanager
def mounted_image(client, name: str, snapshotter: str = "overlayfs", platform=None) -> Iterator[Path]:
    img = store.load_local(client, name, platform)
    with client.lease_scope() as leased:  # an unleased view is garbage to containerd's GC
        with _mounted(leased.snapshots(snapshotter), img.chain_ids[-1]) as root:
            yield root


@contextlib.contextmanager
def _mounted(sn, parent: str) -> Iterator[Path]:
    key = f"test-view-{secrets.token_hex(6)}"
    mounts = sn.view(key, parent)
    target = Path(tempfile.mkdtemp(prefix="ctk-view-"))
    try:
        for m in mounts:
            opts = ",".join(o for o in m.options if o != "rbind")
            args = ["mount", "-t", m.type, m.source, str(target)]
            if m.type == "bind":
                args = ["mount", "--bind", "-o", "ro", m.source, str(target)]
            elif opts:
                args[3:3] = ["-o", opts]
            subprocess.run(args, check=True, capture_output=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)
        target.rmdir()
        sn.remove(key)
