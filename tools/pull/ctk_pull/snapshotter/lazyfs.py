"""A read-only FUSE view of one eStargz layer whose file contents are fetched lazily (phase 2b, first piece).

The tree (directories, files, symlinks, hardlinks, devices, fifos, modes, owners, mtimes, sizes, xattrs) comes
from the layer's TOC, read once through an :class:`ctk_shared.estargz.Reader`. ``read()`` fetches only the chunks
covering the requested range through the reader's ``read_at(offset, length)`` — a :class:`RangeReader` doing HTTP
Range GETs against the registry, or any other callable (a local file in tests). Each chunk is checked against its
``chunkDigest`` before it is used or cached; a mismatch or a fetch failure is logged and answered with EIO, never
with unverified bytes. Verified chunks are kept in a content-addressed cache directory (``<cache>/<hex digest>``),
re-verified when read back.

Like the stargz snapshotter's FUSE layer, the view is overlay-ready: a ``.wh.<name>`` entry appears as a 0/0
character device ``<name>``, ``.wh..wh..opq`` as ``trusted.overlay.opaque=y`` on its directory, and the TOC's
landmark files are hidden.

``mfusepy`` (libfuse3) comes with ctk-pull's ``lazy`` extra and is imported only through :func:`fuse_binding`, on
the lazy path; everything else is plain Python and unit-testable. ``python -m ctk_pull.snapshotter.lazyfs`` mounts
one layer in the foreground (used by the integration tests).
"""
from __future__ import annotations

import base64
import bisect
import calendar
import errno
import hashlib
import importlib
import json
import logging
import os
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

from ctk_shared import estargz
from ctk_shared.errors import CtkError, IntegrityError, Timeout, Unavailable
from ctk_shared.registry.errors import RegistryError

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
HIDDEN = frozenset({estargz.PREFETCH_LANDMARK, estargz.NO_PREFETCH_LANDMARK, estargz.TOC_TAR_NAME})
BLOCK = 512
READ_AHEAD = 4  # chunks fetched ahead of a sequential reader (4 MiB each by default), and threads doing it

ReadAt = Callable[[int, int], bytes]


class FetchError(OSError):
    """The blob's bytes could not be fetched (after retries); FUSE answers EIO."""

    def __init__(self, msg: str) -> None:
        super().__init__(errno.EIO, msg)


# --- remote blob access ------------------------------------------------------------------------------------------
class RangeReader:
    """``read_at(offset, length)`` over a registry blob, one HTTP Range GET per call, with retries.

    ``client`` is a :class:`ctk_shared.registry.client.RegistryClient` (``connect.registry(host, gopts)``).
    Transient failures (unreachable, timeout, HTTP 5xx/429, short answer) are retried ``retries`` times with
    exponential back-off; then, or at once for other errors, :class:`FetchError` (EIO) is raised.
    ``requests``/``bytes_fetched`` count what went over the wire.
    """

    def __init__(self, client: Any, repo: str, digest: str, *, retries: int = 3, backoff: float = 0.2,
                 size: int | None = None) -> None:
        self.client, self.repo, self.digest = client, repo, digest
        self.size = size  # the blob's size when the caller knows it (the manifest's descriptor)
        self.retries, self.backoff = retries, backoff
        self.requests = 0
        self.bytes_fetched = 0
        self._lock = threading.Lock()

    def _once(self, offset: int, length: int) -> tuple[bytes, int | None]:
        with self._lock:
            self.requests += 1
        pieces: list[bytes] = []
        got = 0
        with self.client.open_blob(self.repo, self.digest, offset, length) as s:
            for piece in s:
                pieces.append(piece)
                got += len(piece)
                if got >= length:
                    break
            size = s.size
        with self._lock:
            self.bytes_fetched += got
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)  # one copy, not two
        return (data if got <= length else data[:length]), size

    def _retrying(self, offset: int, length: int) -> tuple[bytes, int | None]:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                data, size = self._once(offset, length)
                if len(data) == length:
                    return data, size
                err: Exception = IntegrityError(f"short answer: {len(data)} of {length} bytes at {offset}")
            except (Unavailable, Timeout) as e:
                err = e
            except RegistryError as e:
                if not (e.status >= 500 or e.status == 429):
                    raise FetchError(f"{self.digest}: {e}") from None
                err = e
            except CtkError as e:
                raise FetchError(f"{self.digest}: {e}") from None
            if attempt < self.retries:
                log.debug("range %d+%d of %s failed (%s), retrying", offset, length, self.digest, err)
                time.sleep(delay)
                delay *= 2
        raise FetchError(f"{self.digest}: bytes {offset}+{length}: {err} (after {self.retries} retries)")

    def __call__(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self._retrying(offset, length)[0]

    def blob_size(self) -> int:
        """The blob's size: the one given, else from the Content-Range of a one-byte request."""
        if self.size is not None:
            return self.size
        _, size = self._retrying(0, 1)
        if size is None:
            raise FetchError(f"{self.digest}: the registry did not say how large the blob is")
        return size


# --- the tree ----------------------------------------------------------------------------------------------------
_TYPES = {"dir": stat.S_IFDIR, "reg": stat.S_IFREG, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR,
          "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}


def parse_modtime(s: str | None) -> int:
    """TOC ``modtime`` (RFC 3339, UTC) as nanoseconds since the epoch; 0 when absent or unparsable."""
    if not s:
        return 0
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1000


@dataclass
class Node:
    """One inode of the lazy layer's tree, from the TOC; a hardlink is the same Node under another name."""

    ino: int
    kind: str  # dir, reg, symlink, char, block, fifo
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    link: str = ""  # symlink target
    rdev: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    content: str = ""  # for reg: the TOC name whose chunks hold the bytes
    nlink: int = 1
    children: dict[str, Node] = field(default_factory=dict)

    def attrs(self) -> dict[str, Any]:
        return {"st_mode": _TYPES[self.kind] | (self.mode & 0o7777), "st_ino": self.ino, "st_nlink": self.nlink,
                "st_uid": self.uid, "st_gid": self.gid, "st_size": self.size, "st_rdev": self.rdev,
                "st_atime": self.mtime_ns, "st_mtime": self.mtime_ns, "st_ctime": self.mtime_ns,
                "st_blocks": (self.size + BLOCK - 1) // BLOCK, "st_blksize": 4096}


class Tree:
    """The layer's files, keyed by absolute path (``/`` is the root)."""

    def __init__(self, reader: estargz.Reader) -> None:
        self.reader = reader
        self.nodes: dict[str, Node] = {}
        self._next_ino = 1
        self.root = self._new("dir")
        self.nodes["/"] = self.root
        self._build()

    def _new(self, kind: str, **kw: Any) -> Node:
        n = Node(self._next_ino, kind, **kw)
        self._next_ino += 1
        return n

    def _dir(self, path: str) -> Node:
        """The directory at ``path``, created (0755 root:root) with its parents if the TOC skipped it."""
        n = self.nodes.get(path)
        if n is not None:
            return n
        parent, base = _split(path)
        n = self._new("dir")
        self._dir(parent).children[base] = n
        self.nodes[path] = n
        return n

    def _build(self) -> None:
        hardlinks: list[tuple[str, str]] = []
        for e in self.reader.toc.entries:
            kind = e.get("type")
            name = e.get("_name", "")
            if kind == "chunk" or name in HIDDEN:
                continue
            path = "/" + name if name else "/"
            parent, base = _split(path)
            if base == OPAQUE_WHITEOUT:
                self._dir(parent).xattrs[OPAQUE_XATTR] = b"y"
                continue
            if kind == "hardlink":
                hardlinks.append((path, "/" + estargz.clean_name(e.get("linkName", ""))))
                continue
            if kind not in _TYPES:
                log.warning("TOC entry %r has unknown type %r; skipped", name, kind)
                continue
            attrs = {"mode": int(e.get("mode", 0)) & 0o7777, "uid": int(e.get("uid", 0)),
                     "gid": int(e.get("gid", 0)), "mtime_ns": parse_modtime(e.get("modtime")),
                     "xattrs": {k: base64.b64decode(v) for k, v in (e.get("xattrs") or {}).items()}}
            if base.startswith(WHITEOUT_PREFIX):  # overlayfs whiteout: a 0/0 char device
                base = base[len(WHITEOUT_PREFIX):]
                path = parent.rstrip("/") + "/" + base
                kind, attrs["rdev"] = "char", 0
            elif kind == "reg":
                attrs.update(size=int(e.get("size", 0)), content=name)
            elif kind == "symlink":
                attrs.update(link=e.get("linkName", ""), size=len(os.fsencode(e.get("linkName", ""))))
            elif kind in ("char", "block"):
                attrs["rdev"] = os.makedev(int(e.get("devMajor", 0)), int(e.get("devMinor", 0)))
            if path == "/":
                for k, v in attrs.items():
                    setattr(self.root, k, v)
                continue
            old = self.nodes.get(path)
            if old is not None and old.kind == "dir" and kind == "dir":
                for k, v in attrs.items():  # an implicit parent, described later
                    setattr(old, k, v)
                continue
            n = self._new(kind, **attrs)
            self._dir(parent).children[base] = n
            self.nodes[path] = n
        for path, target in hardlinks:
            t = self.nodes.get(target)
            if t is None or t.kind == "dir":
                log.warning("hardlink %r points at %r, which is not in the layer; skipped", path, target)
                continue
            t.nlink += 1
            parent, base = _split(path)
            self._dir(parent).children[base] = t
            self.nodes[path] = t

    def get(self, path: str) -> Node:
        n = self.nodes.get(path)
        if n is None:
            raise OSError(errno.ENOENT, path)
        return n


def _split(path: str) -> tuple[str, str]:
    parent, _, base = path.rpartition("/")
    return parent or "/", base


# --- verified chunk cache ----------------------------------------------------------------------------------------
class ChunkCache:
    """Verified chunk bytes on disk, named by their sha256; a cached chunk that no longer matches is dropped."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.hits = 0

    def _path(self, digest: str) -> str | None:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            return None
        return os.path.join(self.root, hexd)

    def get(self, digest: str) -> bytes | None:
        p = self._path(digest)
        if p is None:
            return None
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            log.warning("cached chunk %s is corrupt; dropped", digest)
            try:
                os.unlink(p)
            except OSError:
                pass
            return None
        self.hits += 1
        return data

    def put(self, digest: str, data: bytes) -> None:
        p = self._path(digest)
        if p is None:
            return
        from ctk_shared.outputs import write_owned

        try:
            write_owned(p, data, mode=0o644)  # temp file with O_EXCL, renamed: never through a planted link
        except OSError as e:
            log.warning("cannot cache chunk %s: %s", digest, e)


# --- file contents -----------------------------------------------------------------------------------------------
class Contents:
    """Byte ranges of regular files, assembled from verified chunks: from memory (the last few chunks, since
    the kernel reads a big chunk in 128 KiB pieces), the disk cache, or the registry, each chunk fetched once
    even when several FUSE threads want it at the same time."""

    def __init__(self, reader: estargz.Reader, cache: ChunkCache | None = None,
                 memory_bytes: int = 64 << 20, read_ahead: bool = False) -> None:
        self.reader = reader
        self.read_ahead = read_ahead
        self.cache = cache
        self._starts: dict[str, list[int]] = {}
        self.chunks_fetched = 0
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Lock] = {}
        self._ahead: ThreadPoolExecutor | None = None  # fetches the next chunks of a file read sequentially
        self._queued: set[str] = set()  # chunk digests waiting for a read-ahead thread

    def _chunk_list(self, name: str) -> tuple[list[dict[str, Any]], list[int]]:
        chunks = self.reader.chunks.get(name, [])
        starts = self._starts.get(name)
        if starts is None:
            starts = self._starts[name] = [int(c.get("chunkOffset", 0)) for c in chunks]
        return chunks, starts

    def _remember(self, digest: str, data: bytes) -> None:
        with self._lock:
            if digest in self._memory or len(data) > self.memory_bytes:
                return
            self._memory[digest] = data
            self._held += len(data)
            while self._held > self.memory_bytes:
                _, old = self._memory.popitem(last=False)
                self._held -= len(old)

    def _recall(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._memory.get(digest)
            if data is not None:
                self._memory.move_to_end(digest)
            return data

    def _chunk(self, c: dict[str, Any], member: bytes | None = None) -> bytes:
        digest = c.get("chunkDigest", "")
        data = self._recall(digest) if digest else None
        if data is not None:
            return data
        with self._lock:
            gate = self._inflight.setdefault(digest, threading.Lock())
        fetched = False
        with gate:  # one fetch per chunk; the others wait for it and then find it in memory
            data = self._recall(digest) if digest else None
            if data is None and self.cache is not None and digest:
                data = self.cache.get(digest)
            if data is None:
                data = self.reader.read_chunk(c, member)  # verifies chunkDigest
                fetched = True
                with self._lock:
                    self.chunks_fetched += 1
            self._remember(digest, data)
        with self._lock:
            self._inflight.pop(digest, None)
        if fetched and self.cache is not None:
            self.cache.put(digest, data)  # after the waiters are let go: they have it from memory
        return data

    def _read_ahead(self, chunks: list[dict[str, Any]], first: int) -> None:
        """Fetch chunks ``first``… (a window of READ_AHEAD) in the background, those not had or coming already."""
        with self._lock:
            if self._ahead is None:
                self._ahead = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="read-ahead")
            wanted = []
            for c in chunks[first:first + READ_AHEAD]:
                digest = c.get("chunkDigest", "")
                if digest and digest not in self._memory and digest not in self._inflight \
                        and digest not in self._queued:
                    self._queued.add(digest)
                    wanted.append(c)
        for c in wanted:
            self._ahead.submit(self._fetch_quietly, c)

    def _fetch_quietly(self, c: dict[str, Any]) -> None:
        try:
            self._chunk(c)
        except (CtkError, OSError) as e:  # the reader that needs it fetches it again and reports the error
            log.debug("read-ahead of a chunk at %s failed: %s", c.get("offset"), e)
        finally:
            with self._lock:
                self._queued.discard(c.get("chunkDigest", ""))

    def prefetch(self, batch_bytes: int = 8 << 20) -> int:
        """Fetch every chunk before the ``.prefetch.landmark`` (the files the image's builder recorded as
        read at start-up) in a few large Range requests, into the caches; returns the chunks stored. Errors
        are logged only: a file that fails here is fetched again (and fails properly) when it is read."""
        _, end = self.reader.prefetch_range()
        if end <= 0:
            return 0
        wanted = sorted((c for lst in self.reader.chunks.values() for c in lst if int(c["offset"]) < end),
                        key=lambda c: int(c["offset"]))
        done = 0
        i = 0
        while i < len(wanted):
            first = int(wanted[i]["offset"])
            j = i
            while j + 1 < len(wanted) and int(wanted[j + 1]["_end"]) - first <= batch_bytes:
                j += 1
            last = int(wanted[j]["_end"])
            try:
                raw = self.reader.read_raw(first, last - first)
                for c in wanted[i:j + 1]:
                    self._chunk(c, raw[int(c["offset"]) - first:int(c["_end"]) - first])
                    done += 1
            except (CtkError, OSError) as e:
                log.warning("prefetch of bytes %d-%d failed: %s", first, last, e)
            i = j + 1
        return done

    def read(self, node: Node, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of ``node`` from ``offset``; OSError(EIO) on a fetch or verification failure."""
        end = min(node.size, offset + size)
        if offset >= end:
            return b""
        chunks, starts = self._chunk_list(node.content)
        out: list[bytes] = []
        got = 0
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        while i < len(chunks) and starts[i] < end:
            try:
                data = self._chunk(chunks[i])
            except IntegrityError as e:
                log.error("%s: %s", node.content, e)
                raise OSError(errno.EIO, str(e)) from None
            except FetchError as e:
                log.error("%s: %s", node.content, e.strerror)
                raise
            except (CtkError, OSError) as e:
                log.error("%s: fetching a chunk failed: %s", node.content, e)
                raise OSError(errno.EIO, str(e)) from None
            lo = max(offset, starts[i]) - starts[i]
            hi = min(end, starts[i] + len(data)) - starts[i]
            out.append(data[lo:hi])
            got += hi - lo
            i += 1
        if self.read_ahead and i < len(chunks) and 2 * (end - starts[i - 1]) >= starts[i] - starts[i - 1]:
            self._read_ahead(chunks, i)  # half-way through a chunk: a sequential reader wants the next ones
        if got != end - offset:
            msg = f"{node.content}: chunks cover {got} of {end - offset} bytes at {offset}"
            log.error(msg)
            raise OSError(errno.EIO, msg)
        return out[0] if len(out) == 1 else b"".join(out)  # a read within one chunk: one copy


# --- FUSE operations ---------------------------------------------------------------------------------------------
class LazyFS:
    """mfusepy operations (duck-typed, so mfusepy need not be imported to build or test this)."""

    use_ns = True  # st_*time are integer nanoseconds

    def __init__(self, reader: estargz.Reader, cache_dir: str | os.PathLike[str] | None = None,
                 on_fetch: Callable[[], None] | None = None, read_ahead: bool = False) -> None:
        self.tree = Tree(reader)
        self.contents = Contents(reader, ChunkCache(cache_dir) if cache_dir is not None else None,
                                 read_ahead=read_ahead)
        self._on_fetch = on_fetch

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self.tree.get(path).attrs()

    def readdir(self, path: str, fh: int) -> list[str]:
        n = self.tree.get(path)
        if n.kind != "dir":
            raise OSError(errno.ENOTDIR, path)
        return [".", "..", *n.children]

    def readlink(self, path: str) -> str:
        n = self.tree.get(path)
        if n.kind != "symlink":
            raise OSError(errno.EINVAL, path)
        return n.link

    def open(self, path: str, flags: int) -> int:
        n = self.tree.get(path)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise OSError(errno.EROFS, path)
        return n.ino

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        n = self.tree.get(path)
        if n.kind != "reg":
            raise OSError(errno.EISDIR if n.kind == "dir" else errno.EINVAL, path)
        try:
            return self.contents.read(n, offset, size)
        finally:
            if self._on_fetch is not None:
                self._on_fetch()

    def listxattr(self, path: str) -> list[str]:
        return list(self.tree.get(path).xattrs)

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        try:
            return self.tree.get(path).xattrs[name]
        except KeyError:
            raise OSError(errno.ENODATA, name) from None

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_files": len(self.tree.nodes), "f_ffree": 0, "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        self.tree.get(path)
        if amode & os.W_OK:
            raise OSError(errno.EROFS, path)
        return 0


LAZY_EXTRA_HINT = "pip install 'ctk-pull[lazy]'"


def fuse_binding() -> ModuleType:
    """The FUSE binding (``mfusepy``), which only the lazy snapshotter needs: it is ctk-pull's optional ``lazy``
    extra, so a plain install pulls and pushes without libfuse. Missing, it is one error line with the fix."""
    try:
        return importlib.import_module("mfusepy")  # untyped: ModuleType, not Any, for the callers
    except ImportError as e:
        raise CtkError("the lazy snapshotter needs the FUSE binding mfusepy, which is not installed",
                       hint=LAZY_EXTRA_HINT) from e
    except OSError as e:  # mfusepy loads libfuse when imported
        raise CtkError(f"the lazy snapshotter needs libfuse3: {e}", hint="install fuse3 (apt-get install fuse3)") from e


def mount(ops: LazyFS, mountpoint: str, *, allow_other: bool | None = None) -> None:
    """Serve ``ops`` at ``mountpoint`` in the foreground until unmounted (``fusermount3 -u``)."""
    mfusepy = fuse_binding()
    if allow_other is None:
        allow_other = os.geteuid() == 0
    # a layer never changes: the kernel may keep pages, attributes and names for as long as it likes
    opts: dict[str, Any] = {"foreground": True, "ro": True, "default_permissions": True,
                            "fsname": "ctk-estargz", "subtype": "ctk-estargz", "kernel_cache": True,
                            "entry_timeout": 86400, "attr_timeout": 86400, "negative_timeout": 86400}
    if allow_other:
        opts["allow_other"] = True
    mfusepy.FUSE(ops, mountpoint, **opts)


# --- entry point: one process per mounted layer (started by the snapshotter, or by hand for debugging) -----------
def _open_reader(a: Any) -> tuple[estargz.Reader, Callable[[], dict[str, int]]]:
    """The layer's reader (footer and TOC fetched and checked against ``--toc-digest``) and its fetch counters."""
    if a.blob:
        fd = os.open(a.blob, os.O_RDONLY)
        counters = {"requests": 0, "bytes": 0}

        def read_at(off: int, n: int) -> bytes:
            counters["requests"] += 1
            data = os.pread(fd, n, off)
            counters["bytes"] += len(data)
            return data

        return estargz.Reader(read_at, os.fstat(fd).st_size, a.toc_digest), counters.copy
    from ctk_shared import auth
    from ctk_shared.registry.client import RegistryClient
    from ctk_shared.registry.hosts import DEFAULT_HOSTS_DIRS

    host, _, repo = a.ref.partition("/")
    from ctk_shared.config import parse_registry_timeout
    from ctk_shared.registry.session import DEFAULT_TIMEOUT

    timeout = parse_registry_timeout(a.registry_timeout) if a.registry_timeout else DEFAULT_TIMEOUT
    client = RegistryClient(host, insecure=a.insecure, credentials=auth.get_credentials,
                            hosts_dirs=tuple(a.hosts_dir) or DEFAULT_HOSTS_DIRS, timeout=timeout,
                            settings=_settings(host, a))
    rr = RangeReader(client, repo, a.digest, size=a.size)
    reader = estargz.Reader(rr, rr.blob_size(), a.toc_digest, tail=_read_tail_file(a.tail) if a.tail else None)
    return reader, lambda: {"requests": rr.requests, "bytes": rr.bytes_fetched}


def _settings(host: str, a: Any) -> Any:
    """The host's settings, with the scheme the snapshotter found the registry answering on (``--scheme``) tried
    alone when the settings allow it: a plain-HTTP registry on loopback is otherwise first tried over TLS by every
    layer process that reads a file (~35 ms of CPU each, a context and a failed handshake). Never a scheme the
    settings do not allow."""
    import dataclasses

    from ctk_shared.registry.hosts import DEFAULT_HOSTS_DIRS, host_settings

    st = host_settings(host, insecure=a.insecure, hosts_dirs=tuple(a.hosts_dir) or DEFAULT_HOSTS_DIRS)
    if a.scheme and a.scheme in st.schemes and len(st.schemes) > 1:
        st = dataclasses.replace(st, schemes=(a.scheme,))
    return st


def _read_tail_file(path: str) -> bytes:
    """The TOC tail the snapshotter fetched for this layer (``--tail``), read once and removed; its bytes came from
    the registry, so the Reader checks them (footer, TOC digest) as if it had fetched them itself."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > estargz.MAX_TOC_SIZE + estargz.FOOTER_SIZE:
            raise CtkError(f"{path}: larger than an eStargz TOC may be")
        data = f.read()
    os.unlink(path)
    return data


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ctk_pull.snapshotter.lazyfs",
                                description="Mount one eStargz layer read-only, fetching contents lazily.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--blob", help="a local eStargz blob file")
    src.add_argument("--ref", help="HOST/REPO of the registry repository holding the blob")
    p.add_argument("--digest", help="the layer blob's digest (with --ref)")
    p.add_argument("--toc-digest", help="containerd.io/snapshot/stargz/toc.digest of the layer")
    p.add_argument("--size", type=int, help="the blob's size in bytes (with --ref; else asked of the registry)")
    p.add_argument("--tail", help="a file holding the blob's bytes from its TOC to its end, fetched already")
    p.add_argument("--scheme", choices=("https", "http"), help="the scheme the registry answered on (if allowed)")
    p.add_argument("--cache", help="chunk cache directory")
    p.add_argument("--stats", help="write fetch counters (JSON) to this file after each read")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    p.add_argument("--hosts-dir", action="append", default=[], help="registry hosts.toml / certs directory")
    p.add_argument("--registry-timeout", metavar="CONNECT,RESPONSE,STALL",
                   help="registry waits in seconds (as ctk's --registry-timeout)")
    p.add_argument("--no-prefetch", action="store_true", help="do not fetch the landmark region after mounting")
    p.add_argument("mountpoint")
    a = p.parse_args(argv)
    if a.ref and not a.digest:
        p.error("--ref needs --digest")
    if a.tail and not a.size:
        p.error("--tail needs --size")
    logging.basicConfig(level=logging.INFO, format="lazyfs: %(levelname)s %(message)s")
    try:
        fuse_binding()
        reader, stats = _open_reader(a)
    except (CtkError, OSError) as e:  # the snapshotter reports this last line as the reason
        hint = f" (hint: {e.hint})" if isinstance(e, CtkError) and e.hint else ""
        log.error("%s%s%s", f"layer {a.digest}: " if a.digest else "", e, hint)
        return 2

    def dump() -> None:
        if a.stats:
            d = dict(stats(), size=reader.size, chunks_fetched=ops.contents.chunks_fetched,
                     cache_hits=ops.contents.cache.hits if ops.contents.cache else 0)
            from ctk_shared.outputs import write_owned

            write_owned(a.stats, json.dumps(d).encode(), mode=0o644)

    ops = LazyFS(reader, a.cache, on_fetch=dump if a.stats else None, read_ahead=True)
    dump()
    if not a.no_prefetch and reader.prefetch_range()[1] > 0:
        def prefetch() -> None:
            n = ops.contents.prefetch()
            log.info("prefetched %d chunk(s) before the landmark", n)
            dump()

        threading.Thread(target=prefetch, name="prefetch", daemon=True).start()
    mount(ops, a.mountpoint)
    return 0


def _zygote() -> int:
    """Start layer processes for the snapshotter by forking an interpreter that has imported everything already
    (a fresh one takes ~0.25 s, most of a layer's mount time). Reads one JSON request per stdin line,
    ``{"argv": [...], "log": PATH}``, forks a child in a session of its own that runs :func:`_main` with its output
    in ``log``, and answers ``{"pid": N}``. Children are reaped by the kernel (SIGCHLD ignored), so a pid that is
    gone from /proc has exited. Exits at end of input, i.e. when the snapshotter does; the children stay."""
    import signal

    fuse_binding()  # imported once here, inherited by every child, as are:
    import argparse  # noqa: F401

    from ctk_shared import auth, config, outputs  # noqa: F401
    from ctk_shared.registry import client  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                from ctk_shared.outputs import open_owned

                out = open_owned(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # never via a link
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                code = _main(list(req["argv"]))
            except BaseException as e:  # noqa: BLE001 — report, never return into the zygote's loop
                print(f"lazyfs: ERROR {e}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_zygote() if sys.argv[1:] == ["--zygote"] else _main())
