"""Contract test: every wrapper of ``ctk_shared.containerd`` against a live containerd 1.6.

Each test runs in its own namespace (``ctd`` fixture); anything that must survive garbage collection
while the test looks at it is created under a lease, as product code must do.
"""
from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from ctk_shared import oci
from ctk_shared.containerd import Client, Image, Mount
from ctk_shared.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidArgument,
    NotFound,
    Unavailable,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.containerd_fixtures"]

MiB = 1 << 20


def blob(n: int, seed: bytes = b"") -> tuple[bytes, str]:
    data = (seed + os.urandom(n))[:n] if seed else os.urandom(n)
    return data, oci.sha256_digest(data)


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mount_all(mounts: list[Mount], target: Path) -> None:
    for m in mounts:
        subprocess.run(["mount", "-t", m.type, "-o", ",".join(m.options), m.source, str(target)], check=True,
                       capture_output=True)


def umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True, capture_output=True)


# --- daemon, namespaces, introspection -------------------------------------------------------------
def test_version(ctd: Client) -> None:
    version, revision = ctd.version()
    assert version.startswith("1.6.") and revision


def test_namespaces(ctd: Client) -> None:
    assert ctd.namespace in ctd.namespaces.list()
    other = ctd.namespace[:60] + "-other"
    ctd.namespaces.create(other, labels={"containerd.io/defaults/snapshotter": "overlayfs"})
    try:
        with pytest.raises(AlreadyExists):
            ctd.namespaces.create(other)
        assert ctd.namespaces.labels(other) == {"containerd.io/defaults/snapshotter": "overlayfs"}
        # a namespace holding objects cannot be deleted: FAILED_PRECONDITION -> Conflict. The blob is written
        # under a lease: unreferenced, a GC that another test's delete starts could take it before its delete
        data, digest = blob(100)
        with ctd.with_namespace(other).lease_scope() as leased:
            leased.content.write_blob("ns-blob", data, digest)
            with pytest.raises(Conflict):
                ctd.namespaces.delete(other)
            leased.content.delete(digest)
    finally:
        ctd.namespaces.delete(other)
    assert other not in ctd.namespaces.list()
    with pytest.raises(NotFound):
        ctd.namespaces.delete(other)


def test_introspection_lists_overlayfs(ctd: Client) -> None:
    plugins = ctd.introspection.plugins(["type==io.containerd.snapshotter.v1"])
    by_id = {p.id: p for p in plugins}
    assert "overlayfs" in by_id and by_id["overlayfs"].init_error == ""
    assert by_id["overlayfs"].exports["root"].endswith("io.containerd.snapshotter.v1.overlayfs")
    assert all(p.type == "io.containerd.snapshotter.v1" for p in plugins)
    assert any(p.init_error for p in plugins)  # aufs/btrfs/zfs are skipped here
    assert ctd.introspection.server_uuid()


def test_unavailable_when_socket_missing(tmp_path: Path) -> None:
    missing = f"/tmp/ctk-missing-{os.getpid()}/containerd.sock"
    for address in (missing, f"unix://{missing}"):
        client = Client(address, "default")
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as ei:
            client.version()
        assert time.monotonic() - t0 < 2
        assert str(ei.value) == f"containerd is not running at {address}"
        assert ei.value.hint == "start containerd, or point --address / CONTAINERD_ADDRESS at its socket"
        with pytest.raises(Unavailable):
            client.content.info("sha256:" + "0" * 64)
    # a plain file, and a stale socket nobody listens on, fail the same way, fast
    plain = tmp_path / "not-a-socket"
    plain.write_text("")
    with pytest.raises(Unavailable, match="not running"):
        Client(str(plain), "default").version()
    with tempfile.TemporaryDirectory(prefix="ctk-", dir="/tmp") as d:
        stale = os.path.join(d, "stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="not running") as ei:
            Client(stale, "default").images.list()
        assert ei.value.hint and time.monotonic() - t0 < 5


# --- content ---------------------------------------------------------------------------------------
def test_content_roundtrip(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        data, digest = blob(3 * MiB + 17)
        c.content.write_blob(f"test-{digest}", data, digest, {"ctk.test/a": "1", "ctk.test/b": "2"})
        info = c.content.info(digest)
        assert (info.digest, info.size) == (digest, len(data))
        assert info.labels == {"ctk.test/a": "1", "ctk.test/b": "2"}
        assert info.created_at is not None and info.created_at.tzinfo == UTC
        assert c.content.read_all(digest) == data
        assert b"".join(c.content.read(digest, offset=MiB, size=10)) == data[MiB:MiB + 10]
        assert [i.digest for i in c.content.list(['labels."ctk.test/a"==1'])] == [digest]
        assert c.content.list(['labels."ctk.test/a"==nope']) == []
        # update only the named keys; "" removes one
        info = c.content.update_labels(digest, {"ctk.test/b": "", "ctk.test/c": "3"})
        assert info.labels == {"ctk.test/a": "1", "ctk.test/c": "3"}
        assert c.content.update_labels(digest, {}).labels == info.labels
        c.content.delete(digest)
        with pytest.raises(NotFound):
            c.content.info(digest)
        with pytest.raises(NotFound):
            c.content.read_all(digest)
        with pytest.raises(NotFound):
            c.content.delete(digest)


def test_writer_resume(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        data, digest = blob(20 * MiB + 123)  # more messages than the pipelining window
        half = len(data) // 2
        ref = "layer-resume"
        with c.content.writer(ref, len(data), digest) as w:
            assert (w.offset, w.exists) == (0, False)
            w.write(data[:half])
            assert w.offset == half
        # the ingest stays, resumable; the lease holds it
        [st] = c.content.statuses([f'ref=="{ref}"'])
        assert (st.ref, st.offset, st.total) == (ref, half, len(data))  # 1.6 leaves st.expected empty
        assert c.content.status(ref).offset == half
        assert (ref, "ingests") in c.leases.list_resources(c.lease or "")
        with c.content.writer(ref, len(data), digest) as w:
            assert w.offset == half
            w.write(data[half:])
            assert w.commit({"ctk.test/resumed": "yes"}) == digest
        assert c.content.info(digest).labels == {"ctk.test/resumed": "yes"}
        assert c.content.read_all(digest) == data
        assert c.content.statuses([f'ref=="{ref}"']) == []


def test_write_blob_overwrites_stale_ingests(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        for stale_len in (1000, 4096):  # partial, and complete but with other bytes
            data, digest = blob(4096)
            with c.content.writer("stale", len(data), digest) as w:
                w.write(os.urandom(stale_len))
            assert c.content.status("stale").offset == stale_len
            c.content.write_blob("stale", data, digest)
            assert c.content.read_all(digest) == data
            assert c.content.statuses() == []
        # a caller's wrong digest fails and leaves no ingest behind
        with pytest.raises(IntegrityError):
            c.content.write_blob("wrong", b"data", oci.sha256_digest(b"other"))
        assert c.content.statuses() == []
        # truncate() restarts an ingest from zero on the same stream
        data, digest = blob(3000)
        with c.content.writer("restart", len(data), digest) as w:
            w.write(os.urandom(2000))
            w.truncate()
            assert w.offset == 0
            w.write(data)
            w.commit()
        assert c.content.read_all(digest) == data


def test_writer_lock_and_abort(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        data, digest = blob(2 * MiB)
        with c.content.writer("locked-ref", len(data), digest) as w:
            w.write(data[:MiB])
            with pytest.raises(Unavailable, match="locked"):
                c.content.writer("locked-ref", len(data), digest)
            w.abort()
        assert c.content.statuses(['ref=="locked-ref"']) == []
        with pytest.raises(NotFound):
            c.content.abort("locked-ref")
        # the ref is free again at once, and starts from zero
        with c.content.writer("locked-ref", len(data), digest) as w:
            assert w.offset == 0
            w.write(data)
            w.commit()
        assert c.content.info(digest).size == len(data)


def test_commit_with_wrong_digest_commits_nothing(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        data, real = blob(MiB + 5)
        _, wrong = blob(16)
        with c.content.writer("bad-digest", len(data), wrong) as w:
            w.write(data)
            with pytest.raises(IntegrityError, match="unexpected commit digest"):
                w.commit()
            w.abort()
        for d in (wrong, real):
            with pytest.raises(NotFound):
                c.content.info(d)
        assert c.content.statuses(['ref=="bad-digest"']) == []
        # a short blob fails the size check the same way
        with c.content.writer("bad-size", len(data), real) as w:
            w.write(data[:-1])
            with pytest.raises(IntegrityError):
                w.commit()
            w.abort()
        # and writing past the declared size is refused before anything is sent
        with c.content.writer("too-long", 4, oci.sha256_digest(b"abcd")) as w, pytest.raises(IntegrityError):
            w.write(b"abcde")


def test_rewrite_is_already_exists(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        data, digest = blob(1000)
        c.content.write_blob("first", data, digest, {"ctk.test/x": "1"})
        c.content.write_blob("second", data, digest)  # ALREADY_EXISTS is success
        with c.content.writer("third", len(data), digest) as w:
            assert w.exists and w.offset == len(data)
            with pytest.raises(Conflict):
                w.write(data)
            assert w.commit({"ctk.test/ignored": "1"}) == digest
        assert c.content.info(digest).labels == {"ctk.test/x": "1"}
        assert c.content.statuses() == []


def test_shared_fast_path_across_namespaces(ctd: Client) -> None:
    data, digest = blob(2 * MiB + 1)
    other = ctd.with_namespace(ctd.namespace[:60] + "-shared")
    other.namespaces.create(other.namespace)
    try:
        with ctd.lease_scope() as c, other.lease_scope() as o:
            c.content.write_blob("src", data, digest)
            with pytest.raises(NotFound):
                o.content.info(digest)
            with o.content.writer(f"layer-{digest}", len(data), digest) as w:
                assert not w.exists and w.offset == len(data)  # nothing to send
                w.commit({"ctk.test/shared": "1"})
            assert o.content.info(digest).labels == {"ctk.test/shared": "1"}
            assert o.content.read_all(digest) == data
            o.content.delete(digest)
    finally:
        other.namespaces.delete(other.namespace)


def test_concurrent_calls_from_threads(ctd: Client) -> None:
    blobs = [blob(64 * 1024 + i) for i in range(24)]
    with ctd.lease_scope() as c:
        def put(item: tuple[bytes, str]) -> int:
            data, digest = item
            c.content.write_blob(f"par-{digest}", data, digest)
            return c.content.info(digest).size

        with ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(put, blobs))
        assert sizes == [len(d) for d, _ in blobs]
        assert {d for _, d in blobs} <= {i.digest for i in c.content.list()}


# --- leases and GC ---------------------------------------------------------------------------------
def _run_gc(client: Client) -> None:
    """Deleting a lease with sync=True runs the garbage collector inline."""
    client.leases.delete(client.leases.create(), sync=True)


def test_lease_keeps_blob_until_deleted(ctd: Client) -> None:
    lid = ctd.leases.create(labels={"ctk.test/purpose": "gc"}, expire=timedelta(minutes=5))
    leased = ctd.with_lease(lid)
    assert leased.lease == lid and leased.namespace == ctd.namespace
    kept, kept_digest = blob(4096)
    leased.content.write_blob("kept", kept, kept_digest)
    loose, loose_digest = blob(4096)
    ctd.content.write_blob("loose", loose, loose_digest)

    [lease] = ctd.leases.list([f'id=="{lid}"'])
    assert lease.labels["ctk.test/purpose"] == "gc" and "containerd.io/gc.expire" in lease.labels
    assert (kept_digest, "content") in ctd.leases.list_resources(lid)

    _run_gc(ctd)
    assert ctd.content.info(kept_digest).size == 4096
    with pytest.raises(NotFound):
        ctd.content.info(loose_digest)

    ctd.leases.delete(lid, sync=True)
    with pytest.raises(NotFound):
        ctd.content.info(kept_digest)
    assert ctd.leases.list([f'id=="{lid}"']) == []


def test_lease_resources_and_scope(ctd: Client) -> None:
    data, digest = blob(512)
    lid = ctd.leases.create("ctk-test-lease", expire=None)
    assert lid == "ctk-test-lease"
    with pytest.raises(AlreadyExists):
        ctd.leases.create("ctk-test-lease")
    ctd.content.write_blob("res", data, digest)
    ctd.leases.add_resource(lid, digest, "content")
    assert ctd.leases.list_resources(lid) == [(digest, "content")]
    ctd.leases.delete_resource(lid, digest, "content")
    assert ctd.leases.list_resources(lid) == []
    ctd.leases.delete(lid)
    with pytest.raises(NotFound):
        ctd.leases.delete(lid)

    before = {le.id for le in ctd.leases.list()}
    with ctd.lease_scope() as c:
        assert c.lease and c.lease not in before and c.lease in {le.id for le in ctd.leases.list()}
    assert {le.id for le in ctd.leases.list()} == before
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), ctd.lease_scope() as c:
            raise exc
        assert {le.id for le in ctd.leases.list()} == before


# --- images ----------------------------------------------------------------------------------------
def test_images_crud(ctd: Client) -> None:
    manifest = b'{"schemaVersion":2}'
    target = oci.Descriptor(oci.OCI_MANIFEST, oci.sha256_digest(manifest), len(manifest),
                            {"org.opencontainers.image.ref.name": "v1"})
    name = "registry.test/ctk/app:v1"
    created = ctd.images.create(Image(name, target, {"ctk.test/a": "1"}))
    assert created.target == target and created.target.annotations == target.annotations
    assert created.created_at is not None and created.created_at.tzinfo == UTC
    assert ctd.images.get(name) == created
    with pytest.raises(AlreadyExists):
        ctd.images.create(Image(name, target))
    assert [i.name for i in ctd.images.list([f'name=="{name}"'])] == [name]
    assert ctd.images.list(['name=="nope"']) == []

    updated = ctd.images.update(Image(name, target, {"ctk.test/b": "2"}), ["labels.ctk.test/b"])
    assert updated.labels == {"ctk.test/a": "1", "ctk.test/b": "2"}

    other = oci.Descriptor(oci.OCI_INDEX, oci.sha256_digest(b"{}"), 2)
    put = ctd.images.put(Image(name, other, {"ctk.test/c": "3"}))
    assert put.target == other and put.labels == {"ctk.test/c": "3"}
    assert ctd.images.put(Image("registry.test/ctk/app:v2", target)).name == "registry.test/ctk/app:v2"
    assert {i.name for i in ctd.images.list()} == {name, "registry.test/ctk/app:v2"}

    with pytest.raises(InvalidArgument):
        ctd.images.create(Image("bad", oci.Descriptor("", "", 0)))
    ctd.images.delete(name)
    ctd.images.delete("registry.test/ctk/app:v2", sync=True)
    with pytest.raises(NotFound):
        ctd.images.get(name)
    with pytest.raises(NotFound):
        ctd.images.delete(name)


# --- snapshots and diff ----------------------------------------------------------------------------
def test_snapshots(ctd: Client) -> None:
    with ctd.lease_scope() as c:
        sn = c.snapshots()
        [m] = sn.prepare("base-active", labels={"ctk.test/a": "1"})
        assert m.type == "bind" and "rw" in m.options
        Path(m.source, "base.txt").write_bytes(b"x" * 10_000)
        assert sn.stat("base-active").kind == "active"
        assert sn.mounts("base-active") == [m]
        sn.commit("base", "base-active", labels={"ctk.test/b": "2"})
        with pytest.raises(NotFound):
            sn.stat("base-active")
        info = sn.stat("base")
        assert (info.name, info.parent, info.kind) == ("base", "", "committed")
        assert info.labels == {"ctk.test/b": "2"} and info.created_at is not None
        size, inodes = sn.usage("base")
        assert size >= 10_000 and inodes >= 1

        child = sn.prepare("child", "base")
        assert child[0].type == "overlay"
        assert any(o.startswith("lowerdir=") for o in child[0].options)
        [view] = sn.view("base-view", "base")
        assert view.type == "bind" and "ro" in view.options
        assert Path(view.source, "base.txt").read_bytes() == b"x" * 10_000
        with pytest.raises(AlreadyExists):
            sn.prepare("child", "base")
        with pytest.raises(NotFound):
            sn.prepare("orphan", "no-such-parent")

        assert {(i.name, i.kind) for i in sn.list()} == {("base", "committed"), ("child", "active"),
                                                          ("base-view", "view")}
        assert {i.name for i in sn.list(['parent=="base"'])} == {"child", "base-view"}
        assert [i.name for i in sn.list(['kind=="view"'])] == ["base-view"]
        assert sn.update_labels("base", {"ctk.test/b": "", "ctk.test/c": "3"}).labels == {"ctk.test/c": "3"}

        with pytest.raises(Conflict):
            sn.remove("base")  # still has children
        for key in ("child", "base-view", "base"):
            sn.remove(key)
        with pytest.raises(NotFound):
            sn.stat("base")
        assert sn.list() == []


def test_diff_apply_then_view_and_diff(ctd: Client, tmp_path: Path) -> None:
    tar = layer_tar({"hello.txt": b"hello from ctk\n", "etc/conf": b"a=1\n"})
    gz = gzip.compress(tar, mtime=0)
    desc = oci.Descriptor(oci.OCI_LAYER_GZIP, oci.sha256_digest(gz), len(gz))
    diff_id = oci.sha256_digest(tar)
    with ctd.lease_scope() as c:
        c.content.write_blob(f"layer-{desc.digest}", gz, desc.digest)
        sn = c.snapshots()
        key = f"extract-{time.time_ns()} {diff_id}"
        mounts = sn.prepare(key, labels={"containerd.io/snapshot.ref": diff_id})
        applied = c.diff.apply(desc, mounts)
        assert applied.digest == diff_id and applied.size == len(tar)
        assert applied.media_type == oci.OCI_LAYER
        sn.commit(diff_id, key)

        [view] = sn.view("layer-view", diff_id)
        assert view.type == "bind"
        assert Path(view.source, "hello.txt").read_bytes() == b"hello from ctk\n"

        # a child layer: write into the overlay's upperdir, diff against the parent's view
        [upper] = sn.prepare("upper", diff_id)
        upperdir = next(o.split("=", 1)[1] for o in upper.options if o.startswith("upperdir="))
        Path(upperdir, "new.txt").write_bytes(b"added\n")
        out = c.diff.diff([view], [upper], media_type=oci.OCI_LAYER_GZIP, ref="diff-upper",
                          labels={"ctk.test/diff": "1"})
        assert out.media_type == oci.OCI_LAYER_GZIP
        info = c.content.info(out.digest)
        assert info.labels["ctk.test/diff"] == "1"
        raw = gzip.decompress(c.content.read_all(out.digest))
        assert info.labels["containerd.io/uncompressed"] == oci.sha256_digest(raw)
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            names = {n.lstrip("./") for n in t.getnames()}
        assert "new.txt" in names and "hello.txt" not in names

        # mounting the returned mounts shows both layers
        target = tmp_path / "rootfs"
        target.mkdir()
        mount_all([upper], target)
        try:
            assert (target / "hello.txt").read_bytes() == b"hello from ctk\n"
            assert (target / "new.txt").read_bytes() == b"added\n"
        finally:
            umount(target)

        # a payload map travels as Any with the type URL verbatim (no processor uses it here)
        mounts2 = sn.prepare("extract-again")
        again = c.diff.apply(desc, mounts2, payloads={"ctk.test": ("ctk.test.Payload", b"\x01")})
        assert again.digest == diff_id
