"""ctk's snapshotter daemon as a containerd proxy plugin (phase 2a: plain overlay snapshots, no lazy fetching).

containerd (the ``lazy_snapshotter`` fixture's own) knows it as ``ctk-lazy``; ctk-pull unpacks into it and ctk-run
runs containers on it, exactly as with the built-in overlayfs snapshotter.
"""
from __future__ import annotations

import pytest

from tests.support.lazy_fixtures import SNAPSHOTTER

pytestmark = pytest.mark.integration


def _chain(ctd, ref):
    """The committed snapshots containerd has in ctk-lazy for this namespace."""
    return {i.name: i for i in ctd.snapshots(SNAPSHOTTER).list() if i.kind == "committed"}


def test_pull_unpacks_into_the_proxy_snapshotter_and_run_reads_files(lz, lazy_ctd, lazy_snapshotter, test_images):
    ref = test_images["busybox"].ref
    r = lz("--snapshotter", SNAPSHOTTER, "-q", ref, tool="ctk-pull")
    assert r.code == 0, r.err
    committed = _chain(lazy_ctd, ref)
    assert committed, "no committed snapshot in ctk-lazy after the pull"
    # containerd's metadata keys map onto backend snapshots; the daemon holds committed ones with fs dirs
    backend = lazy_snapshotter.direct().snapshots(SNAPSHOTTER).list()
    assert any(i.kind == "committed" for i in backend)

    r = lz("--snapshotter", SNAPSHOTTER, "--rm", "-q", "--network", "none", ref, "cat", "/etc/passwd")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert "root:x:0:0" in r.out

    # a container's writes land in its own active snapshot, not in the image's layers
    r = lz("--snapshotter", SNAPSHOTTER, "--rm", "-q", "--network", "none", ref, "sh", "-c",
           "echo hi > /etc/passwd && cat /etc/passwd")
    assert r.code == 0 and r.out.strip() == "hi", r.err
    r = lz("--snapshotter", SNAPSHOTTER, "--rm", "-q", "--network", "none", ref, "cat", "/etc/passwd")
    assert "root:x:0:0" in r.out, r.err
    # --rm left no active snapshots behind
    assert not [i for i in lazy_ctd.snapshots(SNAPSHOTTER).list() if i.kind == "active"]

    r = lz("rm", ref, tool="ctk-pull")
    assert r.code == 0, r.err
    assert not lazy_ctd.images.list()


def test_restarting_the_snapshotter_keeps_committed_snapshots(lz, lazy_ctd, lazy_snapshotter, test_images):
    ref = test_images["busybox"].ref
    assert lz("--snapshotter", SNAPSHOTTER, "-q", ref, tool="ctk-pull").code == 0
    before = {i.name: (i.parent, i.kind, i.labels) for i in lazy_snapshotter.direct().snapshots(SNAPSHOTTER).list()}
    assert before

    top = set(_chain(lazy_ctd, ref))

    lazy_snapshotter.restart_snapshotter()  # returns once containerd has redialled the socket

    after = {i.name: (i.parent, i.kind, i.labels) for i in lazy_snapshotter.direct().snapshots(SNAPSHOTTER).list()}
    assert after == before
    assert set(_chain(lazy_ctd, ref)) == top
    r = lz("--snapshotter", SNAPSHOTTER, "--rm", "-q", "--network", "none", ref, "cat", "/etc/group")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert "root:x:0:" in r.out


def test_layers_stack_with_whiteouts_and_opaque_dirs(lz, lazy_ctd, lazy_snapshotter, test_images):
    """Three layers: overlay mounts with several lowerdirs; whiteouts and an opaque dir applied by containerd."""
    img = test_images["multilayer"]
    assert lz("--snapshotter", SNAPSHOTTER, "-q", img.ref, tool="ctk-pull").code == 0
    assert len(_chain(lazy_ctd, img.ref)) == 3
    paths = sorted(p for p in img.expect_files if p.startswith(("/data/", "/opq/")))
    script = "; ".join(f"if [ -e {p} ]; then echo Y {p}; else echo N {p}; fi" for p in paths)
    present = [p for p in paths if img.expect_files[p] is not None]
    r = lz("--snapshotter", SNAPSHOTTER, "--rm", "-q", "--network", "none", img.ref, "sh", "-c",
           f"{script}; cat {' '.join(present)}")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    lines = r.out.splitlines()
    assert lines[:len(paths)] == [f"{'Y' if img.expect_files[p] is not None else 'N'} {p}" for p in paths]
    assert "\n".join(lines[len(paths):]) + "\n" == b"".join(img.expect_files[p] for p in present).decode()
