"""The lazy eStargz filesystem's pure parts: the tree from a TOC, chunked reads, verification, cache, RangeReader."""
from __future__ import annotations

import errno
import io
import random
import stat
import tarfile
import time

import pytest
from ctk_pull.snapshotter import lazyfs
from ctk_shared import estargz
from ctk_shared.errors import Unavailable
from ctk_shared.registry import errors as rerr
from ctk_shared.registry.client import RegistryClient

BIG = random.Random(7).randbytes(51200)  # several distinct chunks at chunk_size 4096
MTIME = 1_700_000_000


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind=tarfile.REGTYPE, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime = kind, MTIME
            ti.mode = kw.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            for k, v in kw.items():
                setattr(ti, k, v)
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("etc", tarfile.DIRTYPE, mode=0o750, uid=1, gid=2)
        add("etc/small.txt", data=b"hello lazy\n", uid=1000, gid=1001, mode=0o640)
        add("etc/big.bin", data=BIG)
        add("etc/empty")
        add("etc/link", tarfile.SYMTYPE, linkname="small.txt")
        add("etc/hard", tarfile.LNKTYPE, linkname="etc/small.txt")
        add("etc/.wh.gone")
        add("opq/.wh..wh..opq")
        add("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("deep/er/file", data=b"x", pax_headers={"SCHILY.xattr.user.k": "v"})
        add("fifo", tarfile.FIFOTYPE)
    return buf.getvalue()


@pytest.fixture(scope="module")
def blob() -> bytes:
    out = io.BytesIO()
    estargz.build(io.BytesIO(_tar()), out, chunk_size=4096)
    return out.getvalue()


def _fs(blob: bytes, cache=None, calls=None) -> lazyfs.LazyFS:
    def read_at(off, n):
        if calls is not None:
            calls.append((off, n))
        return blob[off:off + n]
    return lazyfs.LazyFS(estargz.Reader(read_at, len(blob)), cache)


def test_tree_metadata(blob):
    fs = _fs(blob)
    assert set(fs.readdir("/", 0)) == {".", "..", "etc", "opq", "dev", "deep", "fifo"}
    assert set(fs.readdir("/etc", 0)) == {".", "..", "small.txt", "big.bin", "empty", "link", "hard", "gone"}
    a = fs.getattr("/etc")
    assert stat.S_ISDIR(a["st_mode"]) and stat.S_IMODE(a["st_mode"]) == 0o750 and (a["st_uid"], a["st_gid"]) == (1, 2)
    a = fs.getattr("/etc/small.txt")
    assert stat.S_ISREG(a["st_mode"]) and stat.S_IMODE(a["st_mode"]) == 0o640
    assert (a["st_size"], a["st_uid"], a["st_gid"], a["st_mtime"]) == (11, 1000, 1001, MTIME * 10**9)
    assert a["st_nlink"] == 2 and fs.getattr("/etc/hard")["st_ino"] == a["st_ino"]
    assert stat.S_ISLNK(fs.getattr("/etc/link")["st_mode"]) and fs.readlink("/etc/link") == "small.txt"
    wh = fs.getattr("/etc/gone")  # whiteout as overlayfs sees it
    assert stat.S_ISCHR(wh["st_mode"]) and wh["st_rdev"] == 0
    assert fs.getxattr("/opq", lazyfs.OPAQUE_XATTR) == b"y" and fs.readdir("/opq", 0) == [".", ".."]
    assert fs.getattr("/dev/null")["st_rdev"] == (1 << 8 | 3)
    assert stat.S_ISFIFO(fs.getattr("/fifo")["st_mode"])
    assert fs.listxattr("/deep/er/file") == ["user.k"] and fs.getxattr("/deep/er/file", "user.k") == b"v"
    assert stat.S_ISDIR(fs.getattr("/deep/er")["st_mode"])  # implicit parent
    for name in estargz.NO_PREFETCH_LANDMARK, estargz.PREFETCH_LANDMARK, estargz.TOC_TAR_NAME:
        with pytest.raises(OSError) as ei:
            fs.getattr("/" + name)
        assert ei.value.errno == errno.ENOENT
    with pytest.raises(OSError) as ei:
        fs.getxattr("/etc", "user.none")
    assert ei.value.errno == errno.ENODATA


def test_parse_modtime():
    assert lazyfs.parse_modtime("2023-11-14T22:13:20Z") == MTIME * 10**9
    assert lazyfs.parse_modtime(None) == 0 and lazyfs.parse_modtime("junk") == 0


@pytest.mark.parametrize("off,size", [(0, 11), (0, 100), (5, 3), (11, 5)])
def test_small_reads(blob, off, size):
    assert _fs(blob).read("/etc/small.txt", size, off, 0) == b"hello lazy\n"[off:off + size]
    assert _fs(blob).read("/etc/hard", size, off, 0) == b"hello lazy\n"[off:off + size]


@pytest.mark.parametrize("off,size", [(0, 4096), (4095, 2), (4000, 9000), (50000, 4096), (0, 1 << 20), (51199, 1)])
def test_reads_across_chunks_fetch_only_what_is_needed(blob, off, size):
    calls = []
    fs = _fs(blob, calls=calls)
    calls.clear()  # footer + TOC
    assert fs.read("/etc/big.bin", size, off, 0) == BIG[off:off + size]
    first, last = off // 4096, (min(off + size, len(BIG)) - 1) // 4096
    assert len(calls) == fs.contents.chunks_fetched == last - first + 1
    assert fs.read("/etc/empty", 10, 0, 0) == b""


def test_cache_serves_verified_chunks_and_drops_corrupt_ones(blob, tmp_path):
    calls = []
    fs = _fs(blob, tmp_path / "cache", calls)
    calls.clear()
    assert fs.read("/etc/big.bin", 8192, 0, 0) == BIG[:8192] and len(calls) == 2
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 2 and not [f for f in files if f.name.endswith(".tmp")]
    fs2 = _fs(blob, tmp_path / "cache", calls)
    calls.clear()
    assert fs2.read("/etc/big.bin", 8192, 0, 0) == BIG[:8192] and calls == []
    assert fs2.contents.cache.hits == 2
    files[0].write_bytes(b"X" * 4096)  # a tampered cache entry is refetched, not served
    fs3 = _fs(blob, tmp_path / "cache", calls)
    calls.clear()
    assert fs3.read("/etc/big.bin", 8192, 0, 0) == BIG[:8192] and len(calls) == 1


@pytest.mark.parametrize("level", [0, 6])
def test_corrupt_chunk_is_eio(level, caplog):
    out = io.BytesIO()
    estargz.build(io.BytesIO(_tar()), out, chunk_size=4096, level=level)
    blob = out.getvalue()
    c = _fs(blob).contents.reader.chunks["etc/big.bin"][1]
    bad = bytearray(blob)
    bad[(int(c["offset"]) + int(c["_end"])) // 2] ^= 0x55  # level 0: stored data, so a digest mismatch
    fs = _fs(bytes(bad))
    assert fs.read("/etc/big.bin", 4096, 0, 0) == BIG[:4096]  # chunk 0 untouched
    with pytest.raises(OSError) as ei:
        fs.read("/etc/big.bin", 10, 4096, 0)
    assert ei.value.errno == errno.EIO
    assert "etc/big.bin" in caplog.text


def test_chunk_digest_mismatch_is_eio(blob, caplog, tmp_path):
    fs = _fs(blob, tmp_path / "cache")
    fs.contents.reader.chunks["etc/big.bin"][2]["chunkDigest"] = "sha256:" + "1" * 64
    with pytest.raises(OSError) as ei:
        fs.read("/etc/big.bin", 4096 * 3, 0, 0)
    assert ei.value.errno == errno.EIO and "the TOC says sha256:111" in caplog.text
    assert len(list((tmp_path / "cache").iterdir())) == 2  # only the verified chunks were cached


def test_fetch_failure_is_eio(blob):
    state = {"fail": False}

    def read_at(off, n):
        if state["fail"]:
            raise lazyfs.FetchError("registry unreachable")
        return blob[off:off + n]

    fs = lazyfs.LazyFS(estargz.Reader(read_at, len(blob)))
    state["fail"] = True
    with pytest.raises(OSError) as ei:
        fs.read("/etc/small.txt", 11, 0, 0)
    assert ei.value.errno == errno.EIO


def test_read_only():
    assert lazyfs.LazyFS.use_ns is True


def test_open_for_write_is_erofs(blob):
    fs = _fs(blob)
    with pytest.raises(OSError) as ei:
        fs.open("/etc/small.txt", 1)
    assert ei.value.errno == errno.EROFS


class _Stream:
    def __init__(self, data, size):
        self.data, self.size = data, size

    def __iter__(self):
        return iter([self.data[i:i + 3] for i in range(0, len(self.data), 3)])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass


class _Client:
    def __init__(self, blob, fail=()):
        self.blob, self.fail, self.calls = blob, list(fail), []

    def open_blob(self, repo, digest, offset=0, length=None):
        self.calls.append((offset, length))
        if self.fail:
            raise self.fail.pop(0)
        return _Stream(self.blob[offset:], len(self.blob))  # like a registry ignoring the end of the range


def test_range_reader_counts_and_truncates():
    c = _Client(b"0123456789")
    rr = lazyfs.RangeReader(c, "r", "sha256:" + "0" * 64, backoff=0)
    assert rr(2, 4) == b"2345" and rr.requests == 1 and rr.bytes_fetched >= 4
    assert rr.blob_size() == 10 and c.calls[-1] == (0, 1)


def test_range_reader_retries_transient_errors():
    err5xx = rerr.make(rerr.RegistryError, "boom", status=503)
    c = _Client(b"0123456789", [Unavailable("down"), err5xx])
    rr = lazyfs.RangeReader(c, "r", "sha256:" + "0" * 64, backoff=0)
    assert rr(0, 3) == b"012" and rr.requests == 3


def test_range_reader_gives_up_with_eio():
    c = _Client(b"0123456789", [Unavailable("down")] * 5)
    rr = lazyfs.RangeReader(c, "r", "sha256:" + "0" * 64, retries=2, backoff=0)
    with pytest.raises(OSError) as ei:
        rr(0, 3)
    assert ei.value.errno == errno.EIO and rr.requests == 3
    c = _Client(b"0123456789", [rerr.make(rerr.RegistryError, "denied", status=403)])
    with pytest.raises(OSError) as ei:
        lazyfs.RangeReader(c, "r", "sha256:" + "0" * 64, backoff=0)(0, 3)
    assert ei.value.errno == errno.EIO and len(c.calls) == 1


def test_range_reader_unreachable_registry_is_eio():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    client = RegistryClient(f"127.0.0.1:{port}", insecure=True, hosts_dirs=())
    rr = lazyfs.RangeReader(client, "r", "sha256:" + "0" * 64, retries=1, backoff=0)
    with pytest.raises(OSError) as ei:
        rr(0, 10)
    assert ei.value.errno == errno.EIO and rr.requests == 2


def test_kernel_sized_reads_of_one_chunk_fetch_it_once(blob):
    """The kernel reads in pieces smaller than a chunk: the chunk is fetched once and kept in memory."""
    calls = []
    fs = _fs(blob, calls=calls)
    calls.clear()
    got = b"".join(fs.read("/etc/big.bin", 512, off, 0) for off in range(0, 8192, 512))
    assert got == BIG[:8192] and len(calls) == 2


def test_memory_is_bounded(blob):
    fs = _fs(blob)
    fs.contents.memory_bytes = 8192
    fs.read("/etc/big.bin", len(BIG), 0, 0)
    assert fs.contents._held <= 8192 and len(fs.contents._memory) == 2


def test_prefetch_fetches_the_landmark_region_in_few_requests(tmp_path):
    out = io.BytesIO()
    estargz.build(io.BytesIO(_tar()), out, chunk_size=4096, prioritized=["etc/big.bin", "etc/small.txt"])
    blob = out.getvalue()
    calls = []
    fs = _fs(blob, tmp_path / "cache", calls)
    assert fs.contents.reader.landmark() == estargz.PREFETCH_LANDMARK
    calls.clear()
    n = fs.contents.prefetch(batch_bytes=1 << 20)
    assert n == 13 + 1 and len(calls) == 1  # 13 chunks of big.bin and small.txt, one request
    calls.clear()
    assert fs.read("/etc/big.bin", len(BIG), 0, 0) == BIG and fs.read("/etc/small.txt", 100, 0, 0) == b"hello lazy\n"
    assert calls == []  # everything came from the prefetch
    assert fs.read("/deep/er/file", 1, 0, 0) == b"x" and len(calls) == 1  # after the landmark: on demand


def test_prefetch_without_landmark_does_nothing(blob):
    calls = []
    fs = _fs(blob, calls=calls)
    calls.clear()
    assert fs.contents.prefetch() == 0 and calls == []


def test_sequential_reads_fetch_the_next_chunks_ahead(blob):
    calls = []
    fs = _fs(blob, calls=calls)
    fs.contents.read_ahead = True
    calls.clear()
    assert fs.read("/etc/big.bin", 1024, 0, 0) == BIG[:1024] and fs.contents._ahead is None  # start of a chunk
    assert fs.read("/etc/big.bin", 2048, 1024, 0) == BIG[1024:3072]  # past half-way: the next chunks come ahead
    assert fs.contents._ahead is not None
    want = 1 + lazyfs.READ_AHEAD
    deadline = time.monotonic() + 5
    while fs.contents.chunks_fetched < want and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == fs.contents.chunks_fetched == want
    assert fs.read("/etc/big.bin", 4096, 4096, 0) == BIG[4096:8192]
    fs.contents._ahead.shutdown(wait=True)
    assert len(set(calls)) == len(calls)  # chunk 1 came from memory, not a second request
