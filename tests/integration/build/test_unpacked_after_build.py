"""After a build the image is unpacked for the default snapshotter, as nerdctl's ``build`` leaves it (issue 18's
"Outputs"): its layers are the build's committed snapshots under their chain IDs, rooted from the image itself
(the config's ``containerd.io/gc.ref.snapshot.overlayfs`` label), so ``ctk-run`` starts it without unpacking,
also once the build cache is pruned and containerd's garbage collector has run."""
from __future__ import annotations

import pytest
from ctk_shared import images

from .conftest import write

pytestmark = pytest.mark.integration

SNAPSHOTTER = "overlayfs"  # the default (GlobalOptions.snapshotter)


def collect_garbage(client) -> None:  # type: ignore[no-untyped-def]
    """One synchronous GC pass of containerd (deleting a lease with sync waits for the collector)."""
    lease = client.leases.create()
    client.leases.delete(lease, sync=True)


def committed(client) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.name for s in client.snapshots(SNAPSHOTTER).list() if s.kind == "committed"}


def test_built_image_runs_without_an_unpack_after_cache_prune_and_gc(build, run, bb, tmp_path, ctd):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo built > /built\nCOPY f /f\n", "f": "copied"})
    r = build("-q", "-t", "unpacked:1", str(ctx))
    assert r.code == 0, r.err
    pruned = build("prune")  # the cache entries rooted the layers too: now only the image does
    assert pruned.code == 0, pruned.err
    collect_garbage(ctd)

    img = images.load_local(ctd, "unpacked:1")
    sn = ctd.snapshots(SNAPSHOTTER)
    for chain_id in img.chain_ids:  # every layer's snapshot, under the chain ID an unpack would use
        assert sn.stat(chain_id).kind == "committed"
    assert images.is_unpacked(ctd, img.config, SNAPSHOTTER)

    before = committed(ctd)
    out = run("--rm", "--network", "none", "unpacked:1", "cat", "/built", "/f")
    assert out.code == 0, out.err
    assert out.out.split() == ["built", "copied"]
    assert committed(ctd) == before  # ctk-run committed no layer: nothing was unpacked
