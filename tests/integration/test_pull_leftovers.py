"""What killed pulls leave behind is taken back by the next pull, and never the work of a pull still running.

A pull SIGKILLed while it unpacks a layer leaves an active ``extract-*`` snapshot (hundreds of MiB for a real
image) and its lease; both used to stay for the lease's 24 h expiry, even after the same image was pulled
again successfully.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from ctk_shared.containerd.owners import OWNER_PID, owner_gone, owner_labels

pytestmark = pytest.mark.integration


def _extracts(ctd) -> list[str]:
    return [s.name for s in ctd.snapshots("overlayfs").list() if s.name.startswith("extract-")]


def _pull_proc(containerd, ctd, ref: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    return subprocess.Popen(["ctk-pull", "--address", containerd.address, "-n", ctd.namespace, "-q", ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _kill_during_unpack(containerd, ctd, ref: str) -> None:
    """Start a pull of ``ref`` and SIGKILL it while a layer is being extracted."""
    for _ in range(3):
        p = _pull_proc(containerd, ctd, ref)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None and not _extracts(ctd):
            time.sleep(0.01)
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=30)
            return
        p.communicate()
        # it finished before we saw an unpack: start over from an empty namespace
        for img in ctd.images.list():
            ctd.images.delete(img.name, sync=True)
    pytest.fail("the pull always finished before it could be killed during unpack")


def test_next_pull_reclaims_what_a_killed_pull_left(containerd, ctd, ctk, real_images):
    ref = real_images["redis"].ref
    _kill_during_unpack(containerd, ctd, ref)
    time.sleep(0.5)  # containerd cancels the Apply of the dead client
    assert _extracts(ctd), "the killed pull should have left a half-extracted snapshot"
    stale = ctd.leases.list()
    assert stale and all(owner_gone(lease.labels) for lease in stale)

    r = ctk("-q", ref)
    assert r.code == 0, r.err
    assert _extracts(ctd) == []
    assert ctd.leases.list() == []
    # and the image is whole: its top layer is unpacked
    assert ctd.images.get(ref).target.digest == real_images["redis"].digest
    r = ctk("inspect", "--format", "{{.Id}}", ref)
    assert r.code == 0, r.err


def test_killed_pull_of_another_image_keeps_its_downloads(containerd, ctd, ctk, real_images, test_images):
    """A pull of some other image drops the dead pull's half-extracted snapshot but keeps its lease, which holds
    what resuming that pull needs."""
    ref = real_images["redis"].ref
    _kill_during_unpack(containerd, ctd, ref)
    time.sleep(0.5)
    before = {lease.id for lease in ctd.leases.list()}
    assert before and _extracts(ctd)

    r = ctk("-q", test_images["busybox"].ref)
    assert r.code == 0, r.err
    assert _extracts(ctd) == []
    assert {lease.id for lease in ctd.leases.list()} == before
    assert all(not res.id.startswith("extract-") for lid in before for res in ctd.leases.list_resources(lid))


def test_concurrent_pulls_of_one_image_both_succeed_and_leave_nothing(containerd, ctd, ctk, real_images):
    """Each pull sees the other's lease as live (its owner runs) and leaves it alone; a dead pull's leftovers are
    taken back by either."""
    ref = real_images["redis"].ref
    _kill_during_unpack(containerd, ctd, ref)
    procs = [_pull_proc(containerd, ctd, ref) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.strip().endswith(real_images["redis"].digest)
    assert _extracts(ctd) == []
    assert ctd.leases.list() == []


def test_a_live_pulls_lease_is_never_reclaimed(ctd, ctk, test_images):
    """A lease whose owner runs (this test process) keeps its half-extracted snapshot through another pull."""
    lease = ctd.leases.create(labels={"ctk/pull.ref": "example.com/other:1"})
    assert ctd.leases.list()[0].labels[OWNER_PID] == str(os.getpid())
    leased = ctd.with_lease(lease)
    key = f"extract-{time.time_ns()}-0 test"
    leased.snapshots("overlayfs").prepare(key)
    r = ctk("-q", test_images["busybox"].ref)
    assert r.code == 0, r.err
    assert key in _extracts(ctd)
    assert [x.id for x in ctd.leases.list()] == [lease]


def test_owner_of_a_recycled_pid_is_gone():
    """A pid reused by a process started at another time is not the lease's owner."""
    mine = owner_labels()
    assert not owner_gone(mine)
    assert owner_gone({**mine, "ctk/owner.start": str(int(mine["ctk/owner.start"]) + 1)})
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert owner_gone({**mine, OWNER_PID: str(dead.pid)}) or os.path.exists(f"/proc/{dead.pid}")
    assert not owner_gone({**mine, "ctk/owner.pidns": "1"})  # another pid namespace: never judged
    assert not owner_gone({})  # no owner labels (an older ctk): never judged


def test_next_pull_takes_over_what_a_failed_pull_kept(ctd, ctk, tmp_path):
    """A pull that fails for a reason worth retrying (here a layer the registry lost) keeps its downloads under its
    lease; once the registry is whole again, the next pull of that ref completes and no lease is left."""
    from tests.integration.test_pull_faults import _blob_file
    from tests.support import images as im
    from tests.support.registry_daemon import start_registry

    reg = start_registry(tmp_path / "registry")
    try:
        info = im.build_image(tmp_path / "layout", "v1",
                              [im.busybox_layer_tar(), im.extra_layer_tar({"x": im.random_bytes("lost", 300_000)})])
        ref = f"{reg.host}/leftovers/failed:v1"
        im.push_layout(tmp_path / "layout", "v1", ref)
        blob = _blob_file(reg, info.layers[-1].digest)
        kept = blob.with_name("kept")
        blob.rename(kept)
        r = ctk("-q", ref)
        assert r.code != 0
        assert len(ctd.leases.list()) == 1 and _extracts(ctd) == []  # downloads kept, no half-extracted layer
        kept.rename(blob)
        r = ctk("-q", ref)
        assert r.code == 0, r.err
        assert ctd.leases.list() == [] and _extracts(ctd) == []
    finally:
        reg.stop()
