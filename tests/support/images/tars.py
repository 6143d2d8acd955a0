"""Tar layers for the test images: a busybox root filesystem, small crafted layers, bulk layers for benchmarks,
and their compression."""
from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from .media import BUSYBOX_APPLETS, BUSYBOX_PATH, GROUP, GZIP_LEVEL, MTIME, PASSWD, ZSTD_LEVEL, Compression

# --- tar layers ------------------------------------------------------------------------------------------
FileSpec = bytes | tuple[bytes, int]


class LayerTar:
    """Accumulates tar entries, then writes them in path order with fixed metadata.

    Parent directories are added implicitly (0755) unless given explicitly. Paths may start with ``/``.
    """

    def __init__(self, *, mtime: int = MTIME, uid: int = 0, gid: int = 0) -> None:
        self.mtime, self.uid, self.gid = mtime, uid, gid
        self._entries: dict[str, tarfile.TarInfo] = {}
        self._data: dict[str, bytes] = {}

    @staticmethod
    def _norm(path: str) -> str:
        parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise ValueError(f"bad layer path {path!r}")
        return "/".join(parts)

    def _info(self, name: str, type_: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = type_, mode, self.mtime
        ti.uid, ti.gid, ti.uname, ti.gname = self.uid, self.gid, "root", "root"
        return ti

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._entries:
                self._entries[d] = self._info(d, tarfile.DIRTYPE, 0o755)

    def dir(self, path: str, mode: int = 0o755) -> LayerTar:
        name = self._norm(path)
        self._parents(name)
        self._entries[name] = self._info(name, tarfile.DIRTYPE, mode)
        return self

    def file(self, path: str, data: bytes, mode: int = 0o644) -> LayerTar:
        name = self._norm(path)
        self._parents(name)
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self._entries[name], self._data[name] = ti, data
        return self

    def symlink(self, path: str, target: str) -> LayerTar:
        name = self._norm(path)
        self._parents(name)
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self._entries[name] = ti
        return self

    def hardlink(self, path: str, target: str) -> LayerTar:
        """A hard link to ``target`` (a path in this layer, written before the link)."""
        name = self._norm(path)
        self._parents(name)
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = self._norm(target)
        self._entries[name] = ti
        return self

    def whiteout(self, path: str) -> LayerTar:
        """Delete ``path`` (from lower layers) with an AUFS-style ``.wh.<name>`` entry."""
        name = self._norm(path)
        head, _, base = name.rpartition("/")
        return self.file(f"{head}/.wh.{base}" if head else f".wh.{base}", b"", 0o644)

    def opaque(self, path: str) -> LayerTar:
        """Hide everything lower layers put in directory ``path`` (``.wh..wh..opq``)."""
        name = self._norm(path)
        if name not in self._entries:
            self.dir(name)
        return self.file(f"{name}/.wh..wh..opq", b"", 0o644)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        # hard links after their targets; otherwise plain path order (parents sort before children)
        order = sorted(self._entries, key=lambda n: (self._entries[n].type == tarfile.LNKTYPE, n.split("/")))
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in order:
                ti = self._entries[name]
                data = self._data.get(name)
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def busybox_layer_tar(busybox: str | os.PathLike[str] = BUSYBOX_PATH) -> bytes:
    """A runnable rootfs: ``bin/busybox`` + applet symlinks, ``etc/passwd`` and ``etc/group`` (root, nobody),
    ``tmp/`` (1777), ``root/`` (0700), empty ``dev/ proc/ sys/ etc/ usr/bin/ var/``."""
    data = Path(busybox).read_bytes()
    t = LayerTar()
    for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700),
                    ("sys", 0o555), ("tmp", 0o1777), ("usr/bin", 0o755), ("var", 0o755)):
        t.dir(d, mode)
    t.file("bin/busybox", data, 0o755)
    for applet in BUSYBOX_APPLETS:
        t.symlink(f"bin/{applet}", "busybox")
    t.symlink("usr/bin/env", "../../bin/busybox")
    t.file("etc/passwd", PASSWD)
    t.file("etc/group", GROUP)
    return t.to_bytes()


def extra_layer_tar(files: Mapping[str, FileSpec] | None = None, dirs: Mapping[str, int] | Iterable[str] = (),
                    whiteouts: Iterable[str] = (), *, opaque_dirs: Iterable[str] = (),
                    symlinks: Mapping[str, str] | None = None, hardlinks: Mapping[str, str] | None = None,
                    mtime: int = MTIME) -> bytes:
    """A small layer. ``files``: path -> bytes or (bytes, mode). ``dirs``: paths, or path -> mode.
    ``whiteouts``: paths this layer deletes. ``opaque_dirs``: directories whose lower content it hides.
    ``symlinks`` / ``hardlinks``: path -> target."""
    t = LayerTar(mtime=mtime)
    dir_modes = dirs.items() if isinstance(dirs, Mapping) else ((d, 0o755) for d in dirs)
    for d, mode in dir_modes:
        t.dir(d, mode)
    for d in opaque_dirs:
        t.opaque(d)
    for path in whiteouts:
        t.whiteout(path)
    for path, spec in (files or {}).items():
        data, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        t.file(path, data, mode)
    for path, target in (symlinks or {}).items():
        t.symlink(path, target)
    for path, target in (hardlinks or {}).items():
        t.hardlink(path, target)
    return t.to_bytes()


# --- bulk layers for benchmarks --------------------------------------------------------------------------
_WORDS = (b"container image layer registry manifest digest content snapshot overlay mount namespace task "
          b"process runtime bundle config rootfs network bridge firewall portmap tuning address route the of "
          b"and to in is for on with that by this from at as be are or an it not which have has was were will "
          b"can all more one two three four five six seven eight nine ten alpha beta gamma delta error warning "
          b"info debug trace request response status header body length offset range chunk upload download "
          b"pull push build run exec logs stop start restart kill remove inspect tag save load convert").split()
_TAR_OVERHEAD = 512  # a header block per member (plus padding to 512)


def _rng(seed: int | str, salt: str) -> random.Random:
    return random.Random(hashlib.sha256(f"{seed}/{salt}".encode()).digest())


def random_bytes(seed: int | str, size: int) -> bytes:
    """Incompressible, reproducible bytes (Mersenne Twister seeded from ``seed``)."""
    return _rng(seed, "random").randbytes(size)


def text_bytes(seed: int | str, size: int, *, source_size: int = 16 << 20) -> bytes:
    """Log-like text (gzip and zstd both shrink it about 3x), reproducible from ``seed``.

    Random tokens (words, numbers, punctuation, newlines) up to ``source_size``; beyond that, random slices
    of that source, so large sizes stay cheap while zstd's window still finds little to deduplicate.
    """
    rng = _rng(seed, "text")
    pool = ([w + b" " for w in _WORDS] * 4 + [b"%d " % rng.randint(0, 99999) for _ in range(512)]
            + [b"\n"] * 60 + [b"= ", b": ", b"/", b"-", b"err=nil ", b"\t"] * 4)
    src_len = min(size, source_size)
    src = bytearray()
    while len(src) < src_len:
        src += b"".join(rng.choices(pool, k=max(1024, (src_len - len(src)) // 5)))
    del src[src_len:]
    out = src
    if size > src_len:
        out = bytearray(src)
        while len(out) < size:
            n = min(rng.randint(4096, 65536), src_len)
            off = rng.randrange(0, src_len - n + 1)
            out += src[off:off + n]
        del out[size:]
    return bytes(out)


def random_layer_tar(seed: int | str, size: int, compressible_fraction: float = 0.0, *,
                     file_size: int = 4 << 20, prefix: str = "data") -> bytes:
    """A layer of ``size`` bytes of file content in files of ``file_size`` (``<prefix>/fNNNN.{txt,bin}``):
    a ``compressible_fraction`` of them is text-like (:func:`text_bytes`), the rest random, interleaved."""
    if not 0.0 <= compressible_fraction <= 1.0:
        raise ValueError("compressible_fraction must be within [0, 1]")
    n = max(1, -(-size // file_size))
    plan: list[tuple[bool, int]] = []  # (is_text, size) per file
    left, acc, text_left = size, 0.0, round(n * compressible_fraction)
    for _ in range(n):
        acc += compressible_fraction
        is_text = text_left > 0 and acc >= 1.0 - 1e-9
        if is_text:
            acc -= 1.0
            text_left -= 1
        plan.append((is_text, min(file_size, left)))
        left -= plan[-1][1]
    streams = {True: text_bytes(seed, sum(sz for t, sz in plan if t)),
               False: random_bytes(seed, sum(sz for t, sz in plan if not t))}
    pos = {True: 0, False: 0}
    t = LayerTar()
    for i, (is_text, sz) in enumerate(plan):
        t.file(f"{prefix}/f{i:04d}.{'txt' if is_text else 'bin'}", streams[is_text][pos[is_text]:pos[is_text] + sz])
        pos[is_text] += sz
    return t.to_bytes()


def many_files_layer_tar(seed: int | str, count: int, *, total_size: int | None = None, min_size: int = 64,
                         max_size: int = 8192, per_dir: int = 250, prefix: str = "files") -> bytes:
    """``count`` small text files in directories of ``per_dir`` (``<prefix>/dNNN/fNNNNN.txt``).

    File sizes are uniform in [min_size, max_size], or, with ``total_size``, scaled so the tar is about that big.
    """
    rng = _rng(seed, "many")
    sizes = [rng.randint(min_size, max_size) for _ in range(count)]
    if total_size is not None:
        budget = total_size - count * (_TAR_OVERHEAD + 256) - (count // per_dir + 1) * _TAR_OVERHEAD - 10240
        if budget <= 0:
            raise ValueError(f"total_size {total_size} is too small for {count} files")
        scale = budget / sum(sizes)
        sizes = [max(0, int(s * scale)) for s in sizes]
    text = text_bytes(f"{seed}/many", min(sum(sizes), 8 << 20) + max_size * 2 + 1)
    t = LayerTar()
    pos = 0
    for i, sz in enumerate(sizes):
        if pos + sz > len(text):
            pos = rng.randrange(0, max(1, len(text) - sz))
        t.file(f"{prefix}/d{i // per_dir:03d}/f{i:05d}.txt", text[pos:pos + sz])
        pos += sz
    return t.to_bytes()


# --- compression -----------------------------------------------------------------------------------------
def compress(data: bytes, compression: Compression) -> bytes:
    """Deterministic compression: gzip with mtime 0 and no name (zlib level 6), single-threaded zstd level 3."""
    if compression == "gzip":
        # wbits=31: a gzip member with mtime 0, no file name, OS byte from zlib: the same bytes every run
        return zlib.compress(data, GZIP_LEVEL, wbits=31)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True,
                                        threads=0).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def decompress(blob: bytes, media_type: str) -> bytes:
    if media_type.endswith(("+gzip", ".tar.gzip")):
        import gzip

        return gzip.decompress(blob)
    if media_type.endswith("+zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob
