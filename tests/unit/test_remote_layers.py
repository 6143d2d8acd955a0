"""The remote-snapshot protocol's pure parts: the labels ctk's client sends, the layer the snapshotter reads from
them, and the store's lazy path (commit under snapshot.ref + AlreadyExists, fall back, unmount on remove) with a
stand-in for the FUSE mounts."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from ctk_pull.snapshotter.remote import MountError, RemoteLayer
from ctk_pull.snapshotter.store import SnapshotStore
from ctk_shared import estargz
from ctk_shared import labels as L
from ctk_shared.errors import AlreadyExists, Conflict

D = ["sha256:" + c * 64 for c in "abcd"]
TOC = "sha256:" + "e" * 64
CHAIN = "sha256:" + "f" * 64


def prepare_labels(i: int = 1, ref: str = "reg.example:5000/app/web:1") -> dict[str, str]:
    return {**L.remote_layer_labels(ref, "sha256:" + "9" * 64, D, i), estargz.TOC_DIGEST_ANNOTATION: TOC,
            L.SNAPSHOT_REF: CHAIN}


def test_client_labels_name_this_layer_and_the_following_ones():
    got = L.remote_layer_labels("reg/app:1", "sha256:m", D, 1)
    assert got[L.STARGZ_DIGEST] == got[L.CRI_LAYER_DIGEST] == D[1]
    assert got[L.STARGZ_LAYERS] == got[L.CRI_IMAGE_LAYERS] == ",".join(D[1:])
    assert got[L.STARGZ_REFERENCE] == got[L.CRI_IMAGE_REF] == "reg/app:1"
    assert got[L.CRI_MANIFEST_DIGEST] == "sha256:m"
    assert all(k.startswith(L.SNAPSHOT_LABEL_PREFIX) for k in got)  # containerd passes only these on


def test_layers_label_stays_under_containerds_label_limit():
    many = [f"sha256:{i:064x}" for i in range(200)]
    got = L.remote_layer_labels("r/a:1", "sha256:m", many, 0)[L.STARGZ_LAYERS]
    assert len(L.STARGZ_LAYERS) + len(got) <= 4096 and got.split(",") == many[:len(got.split(","))]


def test_snapshotter_reads_either_label_set():
    layer = RemoteLayer.from_labels(prepare_labels())
    assert layer == RemoteLayer("reg.example:5000", "app/web", D[1], TOC)
    cri_only = {k: v for k, v in prepare_labels().items() if "stargz." not in k}
    assert RemoteLayer.from_labels(cri_only) == layer
    assert RemoteLayer.from_labels({**prepare_labels(ref="docker.io/library/busybox:1")}).host == "docker.io"
    assert RemoteLayer.from_record(layer.record()) == layer


@pytest.mark.parametrize("drop", [estargz.TOC_DIGEST_ANNOTATION, L.SNAPSHOT_REF])
def test_no_lazy_path_without_toc_digest_or_snapshot_ref(drop):
    labels = prepare_labels()
    del labels[drop]
    assert RemoteLayer.from_labels(labels) is None


def test_bad_reference_is_not_lazy():
    assert RemoteLayer.from_labels({**prepare_labels(), L.STARGZ_REFERENCE: "UPPER/Case::", L.CRI_IMAGE_REF: ""}) is None


class FakeMounter:
    """Stands in for LazyMounter: 'mounts' by writing a marker file, or fails like lazyfs would."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.mounted: set[Path] = set()
        self.unmounted: list[Path] = []
        self.tails: dict[str, Path | None] = {}  # layer digest -> the TOC tail handed to its process
        self.schemes: dict[str, str] = {}

    def mount(self, layer: RemoteLayer, mountpoint: Path, log_path: Path, tail: Path | None = None,
              scheme: str = "") -> None:
        if self.fail:
            raise MountError(self.fail)
        (mountpoint / "marker").write_text(layer.digest)
        self.mounted.add(mountpoint)
        self.tails[layer.digest] = tail
        self.schemes[layer.digest] = scheme

    def unmount(self, mountpoint: Path) -> None:
        if mountpoint in self.mounted:
            self.mounted.discard(mountpoint)
            self.unmounted.append(mountpoint)

    def alive(self, mountpoint: Path) -> bool:
        return mountpoint in self.mounted


def test_lazy_prepare_commits_under_the_chain_id_and_answers_already_exists(tmp_path):
    m = FakeMounter()
    s = SnapshotStore(tmp_path, lazy=m)  # type: ignore[arg-type]
    with pytest.raises(AlreadyExists):
        s.prepare("ns/1/extract-x", "", prepare_labels())
    info = s.stat(CHAIN)
    assert info.kind == "committed" and info.labels[L.REMOTE_SNAPSHOT] and info.labels[L.SNAPSHOT_REF] == CHAIN
    assert (s.fs_dir(CHAIN) / "marker").read_text() == D[1]
    with pytest.raises(AlreadyExists):  # the same layer again: already there, no second mount
        s.prepare("ns/1/extract-y", "", prepare_labels())
    assert len(m.mounted) == 1
    # a container's snapshot stacks on it as on any committed layer
    mounts = s.prepare("ns/2/ctr", CHAIN, {})
    assert mounts[0].type == "overlay" and str(s.fs_dir(CHAIN)) in ",".join(mounts[0].options)
    with pytest.raises(Conflict):
        s.remove(CHAIN)
    s.remove("ns/2/ctr")
    s.remove(CHAIN)
    assert m.unmounted and not m.mounted


def test_layer_that_cannot_be_mounted_falls_back_to_an_ordinary_snapshot(tmp_path):
    s = SnapshotStore(tmp_path, lazy=FakeMounter(fail="TOC digest is sha256:1, the layer annotation says …"))  # type: ignore[arg-type]
    mounts = s.prepare("ns/1/extract-x", "", prepare_labels())
    assert s.stat("ns/1/extract-x").kind == "active" and mounts[0].type == "bind"
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [str(s._snaps["ns/1/extract-x"]["id"])]


def test_remount_brings_back_dead_layers_after_a_restart(tmp_path):
    m = FakeMounter()
    s = SnapshotStore(tmp_path, lazy=m)  # type: ignore[arg-type]
    with pytest.raises(AlreadyExists):
        s.prepare("k", "", prepare_labels())
    m.mounted.clear()  # the layer process died
    s2 = SnapshotStore(tmp_path, lazy=m)  # type: ignore[arg-type]
    assert s2.remount() == 1 and s2.remount() == 0
    s2.cleanup()
    assert s2.stat(CHAIN).kind == "committed"


class FakeClient:
    closed = 0
    base_url = "http://reg.example:5000"  # what the manifest read found answering

    def close(self) -> None:
        FakeClient.closed += 1


def test_following_layers_are_mounted_ahead_and_adopted(tmp_path, monkeypatch):
    from ctk_pull.snapshotter import premount

    m = FakeMounter()
    m.insecure, m.hosts_dirs = False, ()
    s = SnapshotStore(tmp_path, lazy=m, premount=True)  # type: ignore[arg-type]
    assert s.premounts is not None
    tocs = {D[0]: TOC, D[1]: TOC, D[2]: "sha256:" + "7" * 64}  # D[3] is not eStargz
    layers = [RemoteLayer("reg.example:5000", "app/web", d, t, 1000 + i) for i, (d, t) in enumerate(tocs.items())]
    fetched: list[tuple[str, int]] = []

    def fetch_tail(client: FakeClient, layer: RemoteLayer, path: Path) -> Path:
        fetched.append((layer.digest, layer.size))
        path.write_bytes(b"tail")
        return path

    FakeClient.closed = 0
    monkeypatch.setattr(premount.Premounts, "_client", lambda self, host: FakeClient())
    monkeypatch.setattr(premount.Premounts, "_layers", staticmethod(lambda client, layer, manifest: layers))
    monkeypatch.setattr(premount.Premounts, "_fetch_tail", staticmethod(fetch_tail))
    first = {**prepare_labels(0), L.SNAPSHOT_REF: "sha256:" + "1" * 64}
    with pytest.raises(AlreadyExists):
        s.prepare("k0", "", first)
    deadline = time.monotonic() + 5
    while len(m.mounted) < 3 and time.monotonic() < deadline:  # all three at once, layer 0 among them
        time.sleep(0.01)
    assert len(m.mounted) == 3
    ahead = {k[0] for k in s.premounts._pending}
    assert ahead == {D[1], D[2]}
    # every layer's TOC was fetched ahead with the image's one client (sizes from the manifest), handed to its
    # layer process, and the client closed once all were fetched
    assert sorted(fetched) == sorted((x.digest, x.size) for x in layers)
    assert all(t is not None and t.name == "toc.tail" for t in m.tails.values()) and len(m.tails) == 3
    assert set(m.schemes.values()) == {"http"}  # layer processes skip the TLS attempt the image's client made
    assert FakeClient.closed == 1
    with pytest.raises(AlreadyExists):
        s.prepare("k1", "sha256:" + "1" * 64, prepare_labels(1))
    assert len(m.mounted) == 3  # adopted, not mounted again
    assert (s.fs_dir(CHAIN) / "marker").read_text() == D[1]
    s.cleanup()  # a mount made ahead and not yet adopted survives clean-up
    assert len(m.mounted) == 3
    s.premounts.ttl = 0  # never adopted: dropped
    s.premounts.sweep()
    assert len(m.mounted) == 2 and not s.premounts._pending
    assert sorted(int(p.name) for p in (tmp_path / "snapshots").iterdir()) == sorted(
        r["id"] for r in s._snaps.values())
    s.premounts.close()


def test_a_dir_allocated_for_a_mount_and_never_recorded_is_cleaned_up_and_its_id_not_reused(tmp_path):
    """A lazy mount's dir is allocated without a synced metadata write (the commit writes it); after a crash in
    between, the restarted store removes the dir and hands out ids after it."""
    m = FakeMounter()
    s = SnapshotStore(tmp_path, lazy=m)  # type: ignore[arg-type]
    s.prepare("a", "", {})  # id 1, saved
    saves: list[int] = []
    save = s._save
    s._save = lambda: (saves.append(1), save())[1]  # type: ignore[method-assign]
    d = s._allocate_dir()  # id 2, not saved (each layer of a pull used to pay a synced write here)
    assert saves == []
    m.mounted.add(d / "fs")
    s2 = SnapshotStore(tmp_path, lazy=m)  # the daemon restarted: next_id on disk is still 2
    s2.cleanup()
    assert not d.exists() and d / "fs" in m.unmounted
    s2.prepare("b", "", {})
    assert s2._snaps["b"]["id"] > int(d.name)
