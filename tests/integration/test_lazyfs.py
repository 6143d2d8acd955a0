"""The lazy eStargz FUSE filesystem (``ctk_pull.snapshotter.lazyfs``) on a real layer: an image converted with
``ctk-pull convert --estargz`` and pushed to the test registry, one layer mounted with libfuse3 in a subprocess,
its files read through HTTP Range requests; and a tampered local copy of the blob, whose bad chunk must give EIO."""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ctk_shared import estargz
from ctk_shared import images as store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"),
                       reason="needs /dev/fuse and fusermount3"),
]

MOUNT_TIMEOUT = 15.0


class Mount:
    def __init__(self, base: Path, *args: str) -> None:
        self.dir = base / "mnt"
        self.dir.mkdir()
        self.stats_path = base / "stats.json"
        self.cache = base / "cache"
        self.log = base / "lazyfs.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ctk_pull.snapshotter.lazyfs", *args, "--cache", str(self.cache),
                 "--stats", str(self.stats_path), str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.dir):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"lazyfs did not mount:\n{self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stats(self) -> dict[str, int]:
        return json.loads(self.stats_path.read_text())

    def close(self) -> None:
        if os.path.ismount(self.dir):
            subprocess.run(["fusermount3", "-u", str(self.dir)], check=False, capture_output=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", str(self.dir)], check=False, capture_output=True)
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def mounts(tmp_path):
    made: list[Mount] = []

    def mount(*args: str) -> Mount:
        base = tmp_path / f"m{len(made)}"
        base.mkdir()
        m = Mount(base, *args)
        made.append(m)
        return m

    yield mount
    for m in reversed(made):
        m.close()


@pytest.fixture
def esgz_image(ctk, ctd, registry, test_images):
    """The multilayer image converted to eStargz and pushed: (registry repo path, its layer descriptors)."""
    src = test_images["multilayer"]
    assert ctk(src.ref, "-q").code == 0
    repo = "lazyfs/multilayer"
    dst = f"{registry.host}/{repo}:esgz"
    r = ctk("convert", "--estargz", "--estargz-chunk-size", "65536", "--oci", src.ref, dst)
    assert r.code == 0, r.err
    p = ctk("push", dst)
    assert p.code == 0, p.err
    return f"{registry.host}/{repo}", store.load_local(ctd, dst).manifest.layers, src


def _remote(ref: str, layer) -> tuple[str, ...]:
    return ("--ref", ref, "--insecure", "--digest", layer.digest,
            "--toc-digest", layer.annotations[estargz.TOC_DIGEST_ANNOTATION])


def test_lazy_read_fetches_a_fraction(esgz_image, mounts):
    ref, layers, src = esgz_image
    base = layers[0]  # busybox: a ~1 MB binary and small /etc files
    m = mounts(*_remote(ref, base))
    root = m.dir
    before = m.stats()
    assert before["size"] == base.size and before["chunks_fetched"] == 0

    # listing and stat need no content
    assert {"bin", "etc", "tmp", "root", "usr"} <= set(os.listdir(root))
    assert not (root / estargz.NO_PREFETCH_LANDMARK).exists()
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(root / "root").st_mode) == 0o700
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert os.lstat(root / "bin" / "busybox").st_size == len(src.expect_files["/bin/busybox"])
    assert m.stats()["requests"] == before["requests"]

    assert (root / "etc" / "passwd").read_bytes() == src.expect_files["/etc/passwd"]
    after = m.stats()
    assert after["chunks_fetched"] == 1 and after["requests"] == before["requests"] + 1
    fetched = after["bytes"] - before["bytes"]
    assert 0 < fetched < base.size // 20, (fetched, base.size)

    # the whole binary, chunk by chunk; then a second read comes from the kernel page cache or the chunk cache
    assert (root / "bin" / "busybox").read_bytes() == src.expect_files["/bin/busybox"]
    # read-ahead threads may still be storing a chunk when the read returns, and the stats file is written after
    # each fetch: the two agree once they are done
    deadline = time.monotonic() + 10
    while True:
        full, cached = m.stats(), len(list(m.cache.iterdir()))
        if cached == full["chunks_fetched"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # (what opening fetched, the end of the blob with the TOC, may overlap the last chunks: count reads only)
    assert full["chunks_fetched"] > 1 and full["bytes"] - before["bytes"] < base.size
    assert cached == full["chunks_fetched"]
    assert (root / "bin" / "busybox").read_bytes() == src.expect_files["/bin/busybox"]
    assert m.stats()["bytes"] == full["bytes"]
    with pytest.raises(OSError) as ei:
        (root / "etc" / "passwd").write_bytes(b"x")
    assert ei.value.errno in (errno.EROFS, errno.EACCES)


def test_whiteouts_are_overlay_ready(esgz_image, mounts):
    ref, layers, src = esgz_image
    m = mounts(*_remote(ref, layers[2]))
    wh = os.lstat(m.dir / "data" / "b.txt")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(m.dir / "opq", "trusted.overlay.opaque") == b"y"
    assert (m.dir / "opq" / "new.txt").read_bytes() == b"new\n"
    assert (m.dir / "data" / "c.txt").read_bytes() == b"c\n"
    assert not (m.dir / "data" / ".wh.b.txt").exists()


def test_tampered_chunk_gives_eio(esgz_image, ctd, mounts, tmp_path):
    ref, layers, src = esgz_image
    base = layers[0]
    blob = bytearray(ctd.content.read_all(base.digest))
    r = estargz.Reader.from_bytes(bytes(blob))
    chunk = r.chunks["bin/busybox"][len(r.chunks["bin/busybox"]) // 2]
    blob[(int(chunk["offset"]) + int(chunk["_end"])) // 2] ^= 0xFF
    path = tmp_path / "tampered.blob"
    path.write_bytes(bytes(blob))
    m = mounts("--blob", str(path), "--toc-digest", base.annotations[estargz.TOC_DIGEST_ANNOTATION])
    assert (m.dir / "etc" / "passwd").read_bytes() == src.expect_files["/etc/passwd"]
    with open(m.dir / "bin" / "busybox", "rb") as f:
        size = int(chunk["_chunk_size"])
        good = src.expect_files["/bin/busybox"]
        start = int(chunk.get("chunkOffset", 0))
        assert f.read(start) == good[:start]  # the chunks before are fine
        with pytest.raises(OSError) as ei:
            f.read(size)
        assert ei.value.errno == errno.EIO
    assert "bin/busybox" in m.log_text()
    assert not any("tmp" in p.name for p in m.cache.iterdir())


def test_registry_unreachable_after_mount_gives_eio(esgz_image, registry, mounts):
    """The TOC is read at mount time; a registry that goes away afterwards makes reads fail with EIO (retried
    first), not hang or return junk. Simulated with a one-shot TCP proxy in front of the registry."""
    import socket
    import threading

    ref, layers, src = esgz_image
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    rhost, rport = registry.host.rsplit(":", 1)
    alive = threading.Event()
    alive.set()
    conns: list[socket.socket] = []

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            if not alive.is_set():
                c.close()
                continue
            u = socket.create_connection((rhost, int(rport)))
            conns.extend((c, u))
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        proxied = ref.replace(registry.host, f"127.0.0.1:{port}")
        m = mounts(*_remote(proxied, layers[0]))
        alive.clear()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with pytest.raises(OSError) as ei:
            (m.dir / "etc" / "passwd").read_bytes()
        assert ei.value.errno == errno.EIO
        assert "retries" in m.log_text()
    finally:
        lsock.close()
