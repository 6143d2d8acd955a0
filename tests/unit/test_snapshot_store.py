"""The lazy-serve snapshot store: containerd overlayfs semantics, persistence, filters (no mounts, no root)."""
from __future__ import annotations

import pytest
from ctk_pull.snapshotter.store import SnapshotStore
from ctk_shared.errors import AlreadyExists, Conflict, InvalidArgument, NotFound


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "root")


def _chain(store: SnapshotStore, n: int) -> list[str]:
    parent = ""
    names = []
    for i in range(n):
        store.prepare(f"k{i}", parent, {})
        (store.fs_dir(f"k{i}") / f"f{i}").write_text(str(i))
        store.commit(f"c{i}", f"k{i}", {"containerd.io/snapshot.ref": f"c{i}"})
        parent = f"c{i}"
        names.append(parent)
    return names


def test_mounts_follow_containerd_overlayfs(store):
    (m,) = store.prepare("a", "", {})
    assert (m.type, m.options) == ("bind", ("rw", "rbind"))
    store.commit("A", "a", {})
    (v,) = store.view("v1", "A", {})
    assert (v.type, v.source, v.options) == ("bind", str(store.fs_dir("A")), ("ro", "rbind"))
    (o,) = store.prepare("b", "A", {})
    assert o.type == "overlay"
    assert o.options[-1] == f"lowerdir={store.fs_dir('A')}"
    assert f"upperdir={store.fs_dir('b')}" in o.options and "index=off" in o.options
    store.commit("B", "b", {})
    (v2,) = store.view("v2", "B", {})
    assert v2.type == "overlay" and v2.options[-1] == f"lowerdir={store.fs_dir('B')}:{store.fs_dir('A')}"
    assert not any(x.startswith(("upperdir=", "workdir=")) for x in v2.options)
    assert store.mounts("v2") == [v2]
    with pytest.raises(InvalidArgument):
        store.mounts("B")


def test_errors_use_containerd_codes(store):
    store.prepare("a", "", {})
    with pytest.raises(AlreadyExists):
        store.prepare("a", "", {})
    with pytest.raises(NotFound):
        store.stat("nope")
    with pytest.raises(InvalidArgument):
        store.prepare("b", "a", {})  # parent not committed
    store.commit("A", "a", {})
    with pytest.raises(Conflict):
        store.commit("A2", "A", {})  # only active snapshots commit
    store.prepare("x", "", {})
    with pytest.raises(AlreadyExists):
        store.commit("A", "x", {})
    store.prepare("child", "A", {})
    with pytest.raises(Conflict):
        store.remove("A")
    store.remove("child")
    store.remove("A")
    assert {i.name for i in store.walk([])} == {"x"}


def test_commit_renames_and_keeps_files_and_usage(store):
    _chain(store, 2)
    info = store.stat("c1")
    assert (info.kind, info.parent, info.labels) == ("committed", "c0", {"containerd.io/snapshot.ref": "c1"})
    assert (store.fs_dir("c1") / "f1").read_text() == "1"
    with pytest.raises(NotFound):
        store.stat("k1")
    size, inodes = store.usage("c1")
    assert inodes == 2 and size > 0


def test_restart_keeps_everything_and_cleanup_drops_orphans(tmp_path, store):
    _chain(store, 3)
    store.prepare("active", "c2", {"l": "v"})
    orphan = store.root / "snapshots" / "999"
    orphan.mkdir()
    again = SnapshotStore(store.root)
    assert {(i.name, i.parent, i.kind) for i in again.walk([])} == \
        {(i.name, i.parent, i.kind) for i in store.walk([])}
    assert again.mounts("active") == store.mounts("active")
    again.cleanup()
    assert not orphan.exists() and store.fs_dir("c0").exists()
    again.prepare("new", "", {})
    assert store.fs_dir("c0") != again.fs_dir("new")  # ids are not reused


def test_update_labels_only(store):
    _chain(store, 1)
    info = store.update("c0", {"a": "1", "b": "2"}, ["labels.a", "labels.b"])
    assert info.labels == {"containerd.io/snapshot.ref": "c0", "a": "1", "b": "2"}
    assert store.update("c0", {}, ["labels.a"]).labels == {"containerd.io/snapshot.ref": "c0", "b": "2"}
    assert store.update("c0", {"z": "9"}, []).labels == {"z": "9"}
    with pytest.raises(InvalidArgument):
        store.update("c0", {}, ["parent"])


def test_walk_filters(store):
    _chain(store, 2)
    store.prepare("act", "c1", {"containerd.io/gc.root": "x"})
    assert [i.name for i in store.walk(["kind==active"])] == ["act"]
    assert {i.name for i in store.walk(["parent==c0", "name==act"])} == {"c1", "act"}  # OR of filters
    assert [i.name for i in store.walk(['labels."containerd.io/snapshot.ref"==c0'])] == ["c0"]
    assert [i.name for i in store.walk(["labels.containerd.io/gc.root"])] == ["act"]
    assert [i.name for i in store.walk(["kind==committed,name~=1$"])] == ["c1"]
