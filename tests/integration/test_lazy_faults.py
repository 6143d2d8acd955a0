"""Lazy pulling when things go wrong, end to end (real containerd, registry and ``ctk-pull lazy-serve``): a TOC
digest that does not match the layer annotation, a chunk whose bytes do not match its digest, the registry going
away while a container reads, and the snapshotter (then its layer processes, then containerd) being restarted.

Each test builds an image of its own (busybox plus a layer of seeded random files, several chunks each) and
converts it with a chunk size no other test uses, so the blobs it damages are its alone."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time

import pytest
import requests
from ctk_shared import estargz
from ctk_shared import images as store

from tests.integration.test_lazy_pull import lazy_pull, make_esgz
from tests.support.images import (
    DEFAULT_PATH,
    build_image,
    busybox_layer_tar,
    extra_layer_tar,
    push_layout,
    random_bytes,
)
from tests.support.lazy_fixtures import SNAPSHOTTER
from tests.support.registry_daemon import start_registry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"),
                       reason="needs /dev/fuse and fusermount3"),
]

RUN = ("--rm", "-q", "--network", "none")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EIO_WORDS = ("I/O error", "Input/output error")
FILE_SIZE = 200_000  # a few chunks at ~64 KiB


def source_image(tmp_path, registry, name: str, nfiles: int = 4) -> tuple[str, dict[str, bytes]]:
    """busybox + ``/big/f1.bin``… (random, seeded by ``name``) + ``/small/s.txt``, pushed to the session registry
    as ``faults/<name>-src:v1``; returns the ref and the data layer's files."""
    # hex text: the container's output is compared as text
    files = {f"/big/f{i}.bin": random_bytes(f"{name}/{i}", (FILE_SIZE + 1000 * i) // 2).hex().encode()
             for i in range(1, nfiles + 1)}
    files["/small/s.txt"] = f"small file of {name}\n".encode()
    layout = tmp_path / "src-layout"
    build_image(layout, name, [busybox_layer_tar(), extra_layer_tar(files)],
                config={"Env": [DEFAULT_PATH], "Cmd": ["sh"]})
    ref = f"{registry.host}/faults/{name}-src:v1"
    push_layout(layout, name, ref)
    return ref, files


def blob_path(registry_base, digest: str):
    hexd = digest.split(":", 1)[1]
    return registry_base / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def assert_cache_sound(lazy_snapshotter) -> int:
    """Every cached chunk is named after the sha256 of its bytes (nothing unverified was kept); returns how many."""
    cache = lazy_snapshotter.root / "cache"
    names = [n for n in (os.listdir(cache) if cache.exists() else []) if not n.endswith(".tmp")]
    for n in names:
        got = hashlib.sha256((cache / n).read_bytes()).hexdigest()
        assert got == n, f"cached chunk {n} holds bytes whose sha256 is {got}"
    return len(names)


def assert_eio_no_wrong_bytes(r, good: bytes) -> None:
    """``cat`` failed with an I/O error, and what it printed is at most a prefix of the true contents."""
    assert r.code != 0, "reading the damaged file succeeded"
    assert any(w in r.err for w in EIO_WORDS), r.err
    out = r.out.encode()
    assert good.startswith(out), f"{len(out)} bytes of output are not a prefix of the file"


def cat(lz, ref: str, *paths: str):
    return lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", *paths)


def layer_log(lazy_snapshotter, layer_digest: str) -> str:
    """lazyfs.log of the snapshot(s) serving ``layer_digest`` (found through the daemon's metadata)."""
    meta = json.loads((lazy_snapshotter.root / "metadata.json").read_text())
    texts = []
    for rec in meta["snapshots"].values():
        if (rec.get("remote") or {}).get("digest") == layer_digest:
            log = lazy_snapshotter.root / "snapshots" / str(rec["id"]) / "lazyfs.log"
            texts.append(log.read_text(errors="replace") if log.exists() else "")
    assert texts, f"no snapshot serves {layer_digest}"
    return "\n".join(texts)


# --- 1. a TOC digest that does not match the annotation -----------------------------------------------------------
def test_toc_digest_mismatch_falls_back_to_download(tmp_path, ctk, ctd, registry, lz, lazy_ctd, lazy_snapshotter):
    src, files = source_image(tmp_path, registry, "badtoc")
    ref = make_esgz(ctk, registry, src, "faults/badtoc", chunk_size=65536 + 101)
    layers = store.load_local(ctd, ref).manifest.layers
    repo = "faults/badtoc"
    r = requests.get(f"http://{registry.host}/v2/{repo}/manifests/esgz", headers={"Accept": OCI_MANIFEST},
                     timeout=30)
    r.raise_for_status()
    manifest = r.json()
    bad = 1  # the data layer
    good_toc = manifest["layers"][bad]["annotations"][estargz.TOC_DIGEST_ANNOTATION]
    wrong = "sha256:" + hashlib.sha256(b"not the TOC of " + good_toc.encode()).hexdigest()
    manifest["layers"][bad]["annotations"][estargz.TOC_DIGEST_ANNOTATION] = wrong
    body = json.dumps(manifest).encode()
    r = requests.put(f"http://{registry.host}/v2/{repo}/manifests/badtoc", data=body,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    bad_ref = f"{registry.host}/{repo}:badtoc"

    t = time.monotonic()
    rec = lazy_pull(lz, lazy_snapshotter, bad_ref)
    assert rec["RemoteLayers"] == len(layers) - 1, rec
    # the refused layer was downloaded (and checked against its digest) instead; the others were not
    assert lazy_ctd.content.exists(layers[bad].digest)
    assert not any(lazy_ctd.content.exists(x.digest) for i, x in enumerate(layers) if i != bad)
    log = lazy_snapshotter.log_tail(200)
    assert "TOC digest" in log and layers[bad].digest in log, log
    assert time.monotonic() - t < 30

    r = cat(lz, bad_ref, "/big/f1.bin")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert r.out.encode() == files["/big/f1.bin"]
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, bad_ref, "cat", "/small/s.txt")
    assert r.code == 0 and r.out.encode() == files["/small/s.txt"], r.err
    assert lz("rm", bad_ref, tool="ctk-pull").code == 0


# --- 2. a chunk whose bytes do not match its digest ---------------------------------------------------------------
def test_tampered_chunk_in_registry_gives_eio_and_is_not_cached(tmp_path, ctk, ctd, registry, lz, lazy_ctd,
                                                              lazy_snapshotter):
    src, files = source_image(tmp_path, registry, "badchunk")
    ref = make_esgz(ctk, registry, src, "faults/badchunk", chunk_size=65536 + 102)
    layers = store.load_local(ctd, ref).manifest.layers
    layer = layers[1]
    blob = ctd.content.read_all(layer.digest)
    reader = estargz.Reader.from_bytes(blob)
    name = "big/f1.bin"
    chunks = reader.chunks[name]
    assert len(chunks) >= 3, "the file should span several chunks"
    victim = chunks[len(chunks) // 2]
    lo, hi = int(victim["offset"]), int(victim["_end"])
    path = blob_path(registry.base_dir, layer.digest)
    assert path.read_bytes() == blob
    damaged = bytearray(blob)
    mid = (lo + hi) // 2
    for i in range(mid - 8, mid + 8):  # inside the member's compressed data; the blob keeps its size
        damaged[i] ^= 0xFF
    path.write_bytes(bytes(damaged))

    assert lazy_pull(lz, lazy_snapshotter, ref)["RemoteLayers"] == len(layers)  # the TOC is intact: served lazily

    good = files["/" + name]
    t = time.monotonic()
    r = cat(lz, ref, "/" + name)
    assert time.monotonic() - t < 60
    assert_eio_no_wrong_bytes(r, good)
    # the rest of the layer is fine: another file, and the same file's chunks before the bad one
    r = cat(lz, ref, "/big/f2.bin")
    assert r.code == 0 and r.out.encode() == files["/big/f2.bin"], r.err
    # (up to the page before the bad chunk: the page cache holds whole pages, and the one the bad chunk starts in
    # cannot be filled)
    start = int(victim.get("chunkOffset", 0)) // 4096 * 4096
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "sh", "-c",
           f"head -c {start} /{name} >/tmp/o; echo rc=$?; wc -c </tmp/o; md5sum </tmp/o")
    assert r.code == 0 and r.out.split()[:3] == ["rc=0", str(start), hashlib.md5(good[:start]).hexdigest()], \
        (r.out, r.err, start, len(good))
    # asking again still fails: the bad chunk was not cached (nor remembered) as good
    assert_eio_no_wrong_bytes(cat(lz, ref, "/" + name), good)

    log = layer_log(lazy_snapshotter, layer.digest)
    assert name in log and ("digest" in log or "corrupt" in log), log
    assert not (lazy_snapshotter.root / "cache" / victim["chunkDigest"].split(":", 1)[1]).exists()
    assert assert_cache_sound(lazy_snapshotter) > 0
    assert lz("rm", ref, tool="ctk-pull").code == 0


# --- 3. the registry goes away while containers read --------------------------------------------------------------
def test_registry_gone_mid_read_gives_eio_and_caches_nothing_bad(tmp_path, ctk, ctd, registry, lz, lazy_ctd,
                                                                lazy_snapshotter):
    src, files = source_image(tmp_path, registry, "gone")
    private = start_registry(tmp_path / "private")
    try:
        ref = make_esgz(ctk, private, src, "faults/gone", chunk_size=65536 + 103)
        layers = store.load_local(ctd, ref).manifest.layers
        assert lazy_pull(lz, lazy_snapshotter, ref)["RemoteLayers"] == len(layers)

        # busybox itself is read whole, so that containers still start once the registry is gone
        r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "sh", "-c", "cat /bin/busybox >/dev/null && cat /big/f1.bin")
        assert r.code == 0, r.err + lazy_snapshotter.log_tail()
        assert r.out.encode() == files["/big/f1.bin"]

        private.stop()
        t = time.monotonic()
        r = cat(lz, ref, "/big/f2.bin")
        took = time.monotonic() - t
        assert_eio_no_wrong_bytes(r, files["/big/f2.bin"])
        assert took < 60, took
        assert "retries" in layer_log(lazy_snapshotter, layers[1].digest)
        assert assert_cache_sound(lazy_snapshotter) > 0

        # the registry comes back (same address, same storage): the same read now succeeds
        private = start_registry(tmp_path / "private", port=private.port)
        r = cat(lz, ref, "/big/f2.bin")
        assert r.code == 0, r.err + layer_log(lazy_snapshotter, layers[1].digest)
        assert r.out.encode() == files["/big/f2.bin"]
        assert_cache_sound(lazy_snapshotter)
        assert lz("rm", ref, tool="ctk-pull").code == 0
    finally:
        private.stop()


# --- 4. the snapshotter, its layer processes and containerd restarted ---------------------------------------------
def test_running_container_survives_snapshotter_and_containerd_restarts(tmp_path, ctk, ctd, registry, lz, lazy_ctd,
                                                                        lazy_snapshotter):
    src, files = source_image(tmp_path, registry, "restart", nfiles=5)
    ref = make_esgz(ctk, registry, src, "faults/restart", chunk_size=65536 + 104)
    layers = store.load_local(ctd, ref).manifest.layers
    assert lazy_pull(lz, lazy_snapshotter, ref)["RemoteLayers"] == len(layers)

    r = lz("--snapshotter", SNAPSHOTTER, "-d", "--network", "none", ref, "sleep", "300")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    cid = r.out.strip()

    def exec_cat(path: str) -> None:
        r = lz("exec", cid, "cat", path)
        assert r.code == 0, r.err + lazy_snapshotter.log_tail()
        out = r.out.encode()
        if out != files[path]:  # wrong bytes, or the exec's output lost on the way? ask the container too
            h = lz("exec", cid, "sh", "-c", f"sha256sum {path}; wc -c < {path}")
            raise AssertionError(f"{path}: got {len(out)} bytes (a prefix: {files[path].startswith(out)}), want "
                                 f"{len(files[path])} bytes, sha256 {hashlib.sha256(files[path]).hexdigest()}; "
                                 f"in the container: {h.out!r} {h.err!r}; stderr {r.err!r}")

    def new_container_cat(path: str) -> None:
        r = cat(lz, ref, path)
        assert r.code == 0, r.err + lazy_snapshotter.log_tail()
        assert r.out.encode() == files[path], path

    exec_cat("/small/s.txt")
    before = set(lazy_snapshotter.layer_processes())
    assert before, lazy_snapshotter.log_tail()

    # the daemon dies hard: the layers' processes live on, the running container still reads new files
    lazy_snapshotter.restart_snapshotter(signal.SIGKILL)
    assert before <= set(lazy_snapshotter.layer_processes())
    exec_cat("/big/f1.bin")
    new_container_cat("/big/f2.bin")

    # containerd restarts: the running container is untouched and still reads
    assert lazy_snapshotter.containerd is not None
    lazy_snapshotter.containerd.restart()
    lazy_snapshotter.wait_reconnected()
    exec_cat("/big/f3.bin")
    ps = lz("ps", "-q", "--no-trunc")
    assert ps.code == 0 and cid in ps.out, ps.err

    # the layer processes die too: a restarted daemon mounts the layers again and new containers read them
    lazy_snapshotter.stop_snapshotter(signal.SIGKILL)
    lazy_snapshotter.kill_layer_processes()
    deadline = time.monotonic() + 10
    while lazy_snapshotter.layer_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lazy_snapshotter.layer_processes()
    t = time.monotonic()
    lazy_snapshotter.start_snapshotter()
    lazy_snapshotter.wait_reconnected()
    assert lazy_snapshotter.layer_processes(), lazy_snapshotter.log_tail()
    assert time.monotonic() - t < 30
    new_container_cat("/big/f4.bin")
    new_container_cat("/big/f5.bin")
    new_container_cat("/big/f1.bin")
    assert_cache_sound(lazy_snapshotter)
