"""Lazy pulling end to end: an eStargz image in the registry, pulled with ``--snapshotter ctk-lazy`` through a real
containerd whose proxy plugin is ``ctk-pull lazy-serve``. The layers are mounted from the registry (nothing is
downloaded at pull time), containers read them, and only the chunks read are fetched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from ctk_shared import estargz
from ctk_shared import images as store
from ctk_shared import labels as L

from tests.support.lazy_fixtures import SNAPSHOTTER
from tests.support.polling import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"),
                       reason="needs /dev/fuse and fusermount3"),
]

RUN = ("--rm", "-q", "--network", "none")


def make_esgz(ctk, registry, src_ref: str, repo: str, chunk_size: int = 65536) -> str:
    """Convert ``src_ref`` (in the session containerd) to eStargz and push it as ``repo:esgz``; a chunk size of
    its own gives the test blobs no other test shares."""
    assert ctk(src_ref, "-q").code == 0
    dst = f"{registry.host}/{repo}:esgz"
    r = ctk("convert", "--estargz", "--estargz-chunk-size", str(chunk_size), "--oci", src_ref, dst)
    assert r.code == 0, r.err
    p = ctk("push", dst)
    assert p.code == 0, p.err
    return dst


def lazy_pull(lz, lazy_snapshotter, ref: str) -> dict:
    """``ctk-pull --snapshotter ctk-lazy --format json REF``, which must succeed; its JSON record."""
    r = lz("--snapshotter", SNAPSHOTTER, "--format", "json", ref, tool="ctk-pull")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    return json.loads(r.out)


def cached_chunks(lazy_snapshotter, digests: set[str] | None = None) -> int:
    """Chunks in the snapshotter's cache (shared by the session's tests): of ``digests`` only, if given."""
    cache = lazy_snapshotter.root / "cache"
    names = set(os.listdir(cache)) if cache.exists() else set()
    return len(names if digests is None else names & {d.split(":", 1)[1] for d in digests})


def lazy_mounts(lazy_snapshotter) -> list[str]:
    root = str(lazy_snapshotter.root.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(root) and " fuse.ctk-estargz " in ln]


def remote_snapshots(lazy_snapshotter) -> list:
    return [i for i in lazy_snapshotter.direct().snapshots(SNAPSHOTTER).list() if L.REMOTE_SNAPSHOT in i.labels]


def test_lazy_pull_fetches_no_layer_and_run_reads_only_what_it_needs(ctk, ctd, registry, test_images, lz, lazy_ctd,
                                                                      lazy_snapshotter, tmp_path):
    src = test_images["multilayer"]
    ref = make_esgz(ctk, registry, src.ref, "lazy/pull")
    layers = store.load_local(ctd, ref).manifest.layers
    chunk_digests = {c["chunkDigest"] for x in layers
                     for lst in estargz.Reader.from_bytes(ctd.content.read_all(x.digest)).chunks.values() for c in lst}
    chunks_total = len(chunk_digests)

    rec = lazy_pull(lz, lazy_snapshotter, ref)
    assert rec["RemoteLayers"] == len(layers) and rec["FetchedBytes"] == 0, rec
    # no layer blob entered the content store: containerd never downloaded them
    assert not any(lazy_ctd.content.exists(x.digest) for x in layers)
    assert len(remote_snapshots(lazy_snapshotter)) >= len(layers)

    path = next(p for p, data in src.expect_files.items() if data and p.startswith("/data/"))
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", path)
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert r.out.encode() == src.expect_files[path]
    # only the chunks of what the container read (busybox, the file) were fetched, not the image
    assert 0 < cached_chunks(lazy_snapshotter, chunk_digests) < chunks_total

    # every file reads back as it was built (overlay over the lazy layers: whiteouts, opaque dirs)
    for p, data in src.expect_files.items():
        if p.startswith(("/data/", "/opq/")):
            r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", p)
            assert (r.code == 0 and r.out.encode() == data) if data is not None else r.code != 0, (p, r.err)

    # saving needs the blobs, which were never downloaded: a clear one-line error, not a traceback
    r = lz("save", "-o", str(tmp_path / "img.tar"), ref, tool="ctk-pull")
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert "not in the content store" in r.err and "hint:" in r.err and "--snapshotter overlayfs" in r.err
    assert not (tmp_path / "img.tar").exists()

    # removing the image lets containerd's GC remove the snapshots: their layers are unmounted
    mounted = lazy_mounts(lazy_snapshotter)
    assert lz("rm", ref, tool="ctk-pull").code == 0
    assert wait_for(lambda: len(lazy_mounts(lazy_snapshotter)) <= len(mounted) - len(layers)), \
        lazy_snapshotter.log_tail()


CTR_REMOTE = shutil.which("ctr-remote")
needs_ctr_remote = pytest.mark.skipif(CTR_REMOTE is None, reason="ctr-remote (Debian stargz-snapshotter) not installed")


def ctr_remote(address: str, namespace: str, *args: str) -> str:
    p = subprocess.run([CTR_REMOTE, "-a", address, "-n", namespace, *args], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


@needs_ctr_remote
def test_image_converted_by_ctr_remote_is_pulled_lazily(containerd, ctk, ctd, registry, test_images, lz,
                                                        lazy_snapshotter):
    src = test_images["multilayer"]
    assert ctk(src.ref, "-q").code == 0
    ref = f"{registry.host}/lazy/by-ctr-remote:esgz"
    ctr_remote(containerd.address, ctd.namespace, "image", "convert", "--oci", "--estargz", src.ref, ref)
    assert ctk("push", ref).code == 0
    layers = store.load_local(ctd, ref).manifest.layers

    assert lazy_pull(lz, lazy_snapshotter, ref)["RemoteLayers"] == len(layers)
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", "/data/a.txt", "/opq/new.txt")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert r.out.encode() == src.expect_files["/data/a.txt"] + src.expect_files["/opq/new.txt"]


@needs_ctr_remote
def test_containerds_own_unpacker_mounts_lazily_through_ctr_remote_rpull(ctk, ctd, registry, test_images, lz,
                                                                        lazy_ctd, lazy_snapshotter):
    """`ctr-remote images rpull --snapshotter ctk-lazy`: containerd's unpacker (not ctk's) sends the labels, gets
    AlreadyExists from the snapshotter and skips the layers; ctk-run then runs the image it recorded."""
    src = test_images["multilayer"]
    ref = make_esgz(ctk, registry, src.ref, "lazy/rpull", chunk_size=65536 + 1)
    layers = store.load_local(ctd, ref).manifest.layers
    ctr_remote(lazy_snapshotter.address, lazy_ctd.namespace, "images", "rpull", "--plain-http",
               "--snapshotter", SNAPSHOTTER, ref)
    assert not any(lazy_ctd.content.exists(x.digest) for x in layers)
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", "/data/a.txt")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert r.out.encode() == src.expect_files["/data/a.txt"]


def test_ctk_run_pulls_lazily_by_itself(ctk, ctd, registry, test_images, lz, lazy_ctd, lazy_snapshotter):
    src = test_images["multilayer"]
    ref = make_esgz(ctk, registry, src.ref, "lazy/run", chunk_size=65536 + 2)
    layers = store.load_local(ctd, ref).manifest.layers
    r = lz("--snapshotter", SNAPSHOTTER, *RUN, ref, "cat", "/data/run.sh")
    assert r.code == 0, r.err + lazy_snapshotter.log_tail()
    assert r.out.encode() == src.expect_files["/data/run.sh"]
    assert not any(lazy_ctd.content.exists(x.digest) for x in layers)


class _CountingProxy:
    """A plain-HTTP forwarder to the registry that records each request (method, path, Range header)."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        seen: list[tuple[str, str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                seen.append(("BAD", str(code), ""))  # not HTTP: e.g. a TLS handshake tried on this plain port
                super().send_error(code, message, explain)

            def _forward(self) -> None:
                seen.append((self.command, self.path, self.headers.get("Range", "")))
                hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("range", "accept", "authorization")}
                r = requests.request(self.command, f"http://{upstream}{self.path}", headers=hdrs, timeout=30,
                                     allow_redirects=False)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                body = r.content if self.command != "HEAD" else b""
                self.send_header("Content-Length", r.headers.get("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _forward  # noqa: N815 (http.server's naming)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_lazy_pull_mounts_each_layer_with_one_range_request(ctk, ctd, registry, test_images, lz, lazy_ctd,
                                                            lazy_snapshotter):
    """The snapshotter reads the manifest once and fetches every layer's footer and TOC with one Range GET of the
    blob's end, all through one client (one /v2/ ping); a layer process asks the registry nothing until a file
    is read. (Each layer process used to ping, ask the blob's size, then read the footer, then the TOC.)"""
    src = test_images["multilayer"]
    ref = make_esgz(ctk, registry, src.ref, "lazy/count", chunk_size=65536 + 3)
    layers = store.load_local(ctd, ref).manifest.layers
    proxy = _CountingProxy(registry.host)
    try:
        via = ref.replace(registry.host, proxy.host, 1)
        assert lazy_pull(lz, lazy_snapshotter, via)["RemoteLayers"] == len(layers)
        by_layer = {x.digest: [(m, rng) for m, p, rng in proxy.seen if p.endswith("/blobs/" + x.digest)]
                    for x in layers}
        for x in layers:
            assert by_layer[x.digest] == [("GET", f"bytes={x.size - estargz.TAIL_GUESS}-{x.size - 1}")] or \
                by_layer[x.digest] == [("GET", f"bytes=0-{x.size - 1}")], (x, proxy.seen)
        pings = [p for _, p, _ in proxy.seen if p == "/v2/"]
        assert len(pings) <= 2, proxy.seen  # ctk-pull's and the snapshotter's, not one per layer
        n = len(proxy.seen)
        r = lz("--snapshotter", SNAPSHOTTER, *RUN, via, "cat", "/data/a.txt")
        assert r.code == 0 and r.out.encode() == src.expect_files["/data/a.txt"], r.err + lazy_snapshotter.log_tail()
        during_run = proxy.seen[n:]
        assert any(p.endswith("/blobs/" + x.digest) for _, p, _ in during_run for x in layers)  # chunks read
        # the layer processes go straight to plain HTTP, where the snapshotter found the registry: no TLS try first
        assert not [x for x in during_run if x[0] == "BAD"], during_run
    finally:
        proxy.close()
