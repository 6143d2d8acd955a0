"""Deterministic test images, built locally from Debian's static busybox: no network, same digests every run.

Images are written as OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/...``) and pushed to a
test registry with skopeo. Every byte is fixed: tar entries carry a fixed mtime, uid/gid 0 and ``root`` names;
gzip has mtime 0; zstd runs single-threaded; JSON is written compactly in a fixed key order. So two builds on
the same machine give the same digests (the busybox binary, zlib and zstd of the machine are inputs).

Building blocks:
  busybox_layer_tar()                     a runnable root filesystem (busybox + applet symlinks, /etc, /tmp)
  extra_layer_tar(files, ...)             small layers: files, dirs, symlinks, hardlinks, whiteouts
  random_layer_tar / many_files_layer_tar  bulk layers for benchmarks (random_bytes, text_bytes)
  build_image(layout, ref, layers, ...)   blobs + config + manifest (OCI or Docker schema2), tagged in index.json
  build_index(layout, ref, images, ...)   OCI image index or Docker manifest list over built images
  push_layout(layout, ref, dest, ...)     skopeo copy to a registry, checking the pushed digest is the layout's
  standard_images(workdir, host)          the catalogue the integration tests use (fixture ``test_images``)
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform as _platform
import random
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# --- media types (kept here on purpose: the test images must not depend on the code under test) ------------
OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

Compression = Literal["gzip", "zstd", "none"]
_LAYER_TYPES: dict[tuple[bool, str], str] = {
    (False, "gzip"): OCI_LAYER_GZIP, (False, "zstd"): OCI_LAYER_ZSTD, (False, "none"): OCI_LAYER,
    (True, "gzip"): DOCKER_LAYER_GZIP, (True, "none"): DOCKER_LAYER,
}

CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200  # 2024-01-01T00:00:00Z, the mtime of every tar entry
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GZIP_LEVEL = 6  # Go's and containerd's default
ZSTD_LEVEL = 3

BUSYBOX_PATH = "/bin/busybox"  # Debian's busybox-static
BUSYBOX_APPLETS = (
    "[", "[[", "ash", "awk", "basename", "cat", "chmod", "chown", "cmp", "cp", "cut", "date", "dd", "df", "diff",
    "dirname", "du", "echo", "env", "expr", "false", "find", "free", "grep", "gunzip", "gzip", "head", "hostname",
    "httpd", "id", "ip", "ifconfig", "kill", "killall", "less", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mktemp",
    "more", "mount", "mv", "nc", "netstat", "nslookup", "nproc", "ping", "printf", "ps", "pwd", "readlink",
    "realpath", "rm", "rmdir", "route", "sed", "seq", "sh", "sha256sum", "sleep", "sort", "stat", "sync", "tail",
    "tar", "tee", "test", "timeout", "top", "touch", "tr", "true", "umount", "uname", "uniq", "unlink", "uptime",
    "vi", "wc", "wget", "which", "whoami", "xargs", "yes", "zcat",
)
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"


# --- small helpers ---------------------------------------------------------------------------------------
def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: Any) -> bytes:
    """Compact JSON in insertion order: the exact bytes that get digested."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def host_platform() -> tuple[str, str]:
    """(os, GOARCH) of this machine: the platform the local busybox binary runs on."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "386",
            "i386": "386", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
    return ("linux", arch.get(machine, machine))


def platform_string(platform: Sequence[str]) -> str:
    return "/".join(p for p in platform if p)


def _platform_doc(platform: Sequence[str]) -> dict[str, str]:
    doc = {"architecture": platform[1], "os": platform[0]}
    if len(platform) > 2 and platform[2]:
        doc["variant"] = platform[2]
    return doc


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


# --- OCI layouts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    digest: str  # of the blob as stored (compressed)
    diff_id: str  # of the uncompressed tar
    size: int  # blob size
    uncompressed_size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageInfo:
    """One single-platform image written into a layout."""
    manifest_digest: str
    manifest_size: int
    media_type: str  # of the manifest
    config_digest: str
    config_size: int
    config_media_type: str
    layers: tuple[LayerInfo, ...]
    platform: tuple[str, ...]  # (os, arch[, variant])
    config: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)  # the whole config doc

    @property
    def digest(self) -> str:
        return self.manifest_digest

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def sizes(self) -> list[int]:
        return [layer.size for layer in self.layers]

    @property
    def platform_str(self) -> str:
        return platform_string(self.platform)

    def descriptor(self, *, with_platform: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.manifest_digest, "size": self.manifest_size}
        if with_platform:
            d["platform"] = _platform_doc(self.platform)
        return d


def init_layout(layout_dir: str | os.PathLike[str]) -> Path:
    """Create an empty OCI layout (or keep an existing one)."""
    root = Path(layout_dir)
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    marker = root / "oci-layout"
    if not marker.exists():
        marker.write_bytes(canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    if not (root / "index.json").exists():
        _write_index_json(root, [])
    return root


def write_blob(layout_dir: str | os.PathLike[str], data: bytes) -> str:
    """Store ``data`` under ``blobs/sha256/`` (atomically; a blob already there is kept). Returns its digest."""
    digest = sha256_digest(data)
    path = Path(layout_dir) / "blobs" / "sha256" / digest[7:]
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest


def read_blob(layout_dir: str | os.PathLike[str], digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    return (Path(layout_dir) / "blobs" / algo / hexd).read_bytes()


def read_index_json(layout_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads((Path(layout_dir) / "index.json").read_bytes())


def layout_refs(layout_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """ref name -> descriptor, from ``index.json``."""
    return {d["annotations"][REF_NAME_ANNOTATION]: d for d in read_index_json(layout_dir).get("manifests", [])
            if REF_NAME_ANNOTATION in d.get("annotations", {})}


def _write_index_json(root: Path, manifests: list[dict[str, Any]]) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    tmp = root / f".index.json.{os.getpid()}.tmp"
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, root / "index.json")


def tag_in_layout(layout_dir: str | os.PathLike[str], ref_name: str, descriptor: Mapping[str, Any]) -> None:
    """Point ``ref_name`` in ``index.json`` at ``descriptor`` (replacing an entry of the same name)."""
    root = init_layout(layout_dir)
    manifests = [d for d in read_index_json(root).get("manifests", [])
                 if d.get("annotations", {}).get(REF_NAME_ANNOTATION) != ref_name]
    entry = {k: v for k, v in descriptor.items() if k != "annotations"}
    entry["annotations"] = {**descriptor.get("annotations", {}), REF_NAME_ANNOTATION: ref_name}
    manifests.append(entry)
    _write_index_json(root, manifests)


def _make_layer(raw: bytes, compression: Compression, media_type: str) -> tuple[LayerInfo, bytes]:
    blob = compress(raw, compression)
    return LayerInfo(digest=sha256_digest(blob), diff_id=sha256_digest(raw), size=len(blob),
                     uncompressed_size=len(raw), media_type=media_type), blob


def _make_layers(layers: Iterable[bytes], compression: Compression, media_type: str,
                 ) -> list[tuple[LayerInfo, bytes]]:
    """Compress and digest each layer on a worker thread as soon as the iterable yields it (zlib, zstd and
    hashlib release the GIL), so generating the next layer overlaps compressing this one."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = [pool.submit(_make_layer, raw, compression, media_type) for raw in layers]
        return [f.result() for f in futures]


def build_image(layout_dir: str | os.PathLike[str], ref_name: str | None, layers: Iterable[bytes], *,
                compression: Compression = "gzip", docker_media_types: bool = False,
                config: Mapping[str, Any] | None = None, platform: Sequence[str] | None = None,
                created: str = CREATED, annotations: Mapping[str, str] | None = None,
                history: Sequence[str] | None = None) -> ImageInfo:
    """Write an image (layer blobs, config, manifest) into the OCI layout at ``layout_dir``.

    ``layers`` are uncompressed tars, base first (any iterable: a generator overlaps building and compressing). ``config`` is the image's run config (``Cmd``, ``Env``,
    ``WorkingDir``, ``ExposedPorts``, ...); None means ``{"Env": [DEFAULT_PATH]}``. ``platform`` is
    ``(os, arch[, variant])``, default this machine's. ``history`` gives each layer's ``created_by``.
    ``docker_media_types`` writes Docker schema2 (manifest, config and layer types; no annotations, no zstd).
    With a ``ref_name`` the manifest is tagged in ``index.json``; with None it is only stored (for an index).
    """
    if compression not in ("gzip", "zstd", "none"):
        raise ValueError(f"unknown compression {compression!r}")
    if docker_media_types and compression == "zstd":
        raise ValueError("Docker schema2 has no zstd layer media type")
    if docker_media_types and annotations:
        raise ValueError("Docker schema2 manifests have no annotations")
    root = init_layout(layout_dir)
    plat = tuple(platform) if platform else host_platform()
    layer_type = _LAYER_TYPES[(docker_media_types, compression)]
    infos = []
    for layer, blob in _make_layers(layers, compression, layer_type):
        write_blob(root, blob)
        infos.append(layer)
    if history is not None and len(history) != len(infos):
        raise ValueError("history needs one entry per layer")

    cfg: dict[str, Any] = {"created": created, "architecture": plat[1], "os": plat[0]}
    if len(plat) > 2 and plat[2]:
        cfg["variant"] = plat[2]
    cfg["config"] = dict(config) if config is not None else {"Env": [DEFAULT_PATH]}
    cfg["rootfs"] = {"type": "layers", "diff_ids": [x.diff_id for x in infos]}
    cfg["history"] = [{"created": created, "created_by": history[i] if history else f"ctk-test layer {i}"}
                      for i in range(len(infos))]
    cfg_bytes = canonical_json(cfg)
    cfg_type = DOCKER_CONFIG if docker_media_types else OCI_CONFIG
    cfg_digest = write_blob(root, cfg_bytes)

    manifest_type = DOCKER_MANIFEST if docker_media_types else OCI_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": cfg_type, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [x.descriptor() for x in infos],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    m_bytes = canonical_json(manifest)
    info = ImageInfo(manifest_digest=write_blob(root, m_bytes), manifest_size=len(m_bytes), media_type=manifest_type,
                     config_digest=cfg_digest, config_size=len(cfg_bytes), config_media_type=cfg_type,
                     layers=tuple(infos), platform=plat, config=cfg)
    if ref_name is not None:
        tag_in_layout(root, ref_name, info.descriptor())
    return info


def build_index(layout_dir: str | os.PathLike[str], ref_name: str | None, platform_images: Sequence[ImageInfo], *,
                docker_media_types: bool = False, annotations: Mapping[str, str] | None = None) -> str:
    """Write a multi-platform index over images already built (with ``ref_name=None``) into this layout.

    OCI image index by default; ``docker_media_types`` writes a Docker manifest list (whose entries must be
    Docker schema2 manifests). Tags it as ``ref_name`` in ``index.json`` and returns its digest.
    """
    if not platform_images:
        raise ValueError("an index needs at least one image")
    if docker_media_types and any(i.media_type != DOCKER_MANIFEST for i in platform_images):
        raise ValueError("a Docker manifest list may only list Docker schema2 manifests")
    if docker_media_types and annotations:
        raise ValueError("Docker manifest lists have no annotations")
    root = init_layout(layout_dir)
    for img in platform_images:
        if not (root / "blobs" / "sha256" / img.manifest_digest[7:]).exists():
            raise ValueError(f"{img.manifest_digest} is not in {root}")
    media_type = DOCKER_LIST if docker_media_types else OCI_INDEX
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                           "manifests": [i.descriptor(with_platform=True) for i in platform_images]}
    if annotations:
        doc["annotations"] = dict(annotations)
    data = canonical_json(doc)
    digest = write_blob(root, data)
    if ref_name is not None:
        tag_in_layout(root, ref_name, {"mediaType": media_type, "digest": digest, "size": len(data)})
    return digest


def validate_layout(layout_dir: str | os.PathLike[str]) -> list[str]:
    """Check a layout the way a consumer would; return the problems found (empty when valid).

    Every blob's name matches its content, every descriptor's size and digest match, manifests' configs
    list the diff_ids of their (decompressed) layers, and media types agree with the documents' own.
    """
    root = Path(layout_dir)
    problems: list[str] = []
    try:
        if json.loads((root / "oci-layout").read_bytes()) != {"imageLayoutVersion": OCI_LAYOUT_VERSION}:
            problems.append("oci-layout: unexpected content")
        index = read_index_json(root)
    except (OSError, ValueError) as e:
        return [f"layout unreadable: {e}"]
    if index.get("schemaVersion") != 2:
        problems.append("index.json: schemaVersion is not 2")
    for blob in (root / "blobs" / "sha256").iterdir():
        if not blob.name.startswith(".") and hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            problems.append(f"blob {blob.name}: content does not match its name")

    def check(desc: Mapping[str, Any], where: str) -> bytes | None:
        try:
            data = read_blob(root, desc["digest"])
        except OSError:
            problems.append(f"{where}: blob {desc.get('digest')} missing")
            return None
        if len(data) != desc.get("size"):
            problems.append(f"{where}: size {desc.get('size')} != {len(data)}")
        return data

    def walk(desc: Mapping[str, Any], where: str) -> None:
        data = check(desc, where)
        if data is None:
            return
        doc = json.loads(data)
        mt = desc.get("mediaType")
        if doc.get("mediaType") != mt:
            problems.append(f"{where}: descriptor says {mt}, document says {doc.get('mediaType')}")
        if mt in (OCI_INDEX, DOCKER_LIST):
            for i, sub in enumerate(doc.get("manifests", [])):
                if "platform" not in sub:
                    problems.append(f"{where}.manifests[{i}]: no platform")
                walk(sub, f"{where}.manifests[{i}]")
            return
        if mt not in (OCI_MANIFEST, DOCKER_MANIFEST):
            problems.append(f"{where}: unknown media type {mt}")
            return
        cfg_data = check(doc["config"], f"{where}.config")
        if cfg_data is None:
            return
        cfg = json.loads(cfg_data)
        diff_ids = []
        for i, layer in enumerate(doc.get("layers", [])):
            blob = check(layer, f"{where}.layers[{i}]")
            if blob is not None:
                diff_ids.append(sha256_digest(decompress(blob, layer["mediaType"])))
        if cfg.get("rootfs", {}).get("diff_ids") != diff_ids:
            problems.append(f"{where}: config rootfs.diff_ids do not match the layers")
        if len(cfg.get("history", [])) != len(diff_ids):
            problems.append(f"{where}: history has {len(cfg.get('history', []))} entries for {len(diff_ids)} layers")
        docker = mt == DOCKER_MANIFEST
        if (doc["config"]["mediaType"] == DOCKER_CONFIG) != docker:
            problems.append(f"{where}: config media type {doc['config']['mediaType']} in a {mt}")
        for layer in doc.get("layers", []):
            if layer["mediaType"].startswith("application/vnd.docker.") != docker:
                problems.append(f"{where}: layer media type {layer['mediaType']} in a {mt}")

    for i, desc in enumerate(index.get("manifests", [])):
        walk(desc, f"index.json.manifests[{i}]")
    return problems


# --- pushing ---------------------------------------------------------------------------------------------
class PushError(RuntimeError):
    pass


def _skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    skopeo = shutil.which("skopeo")
    if not skopeo:
        raise PushError("skopeo is not installed (apt-get install skopeo)")
    # --insecure-policy: no dependence on /etc/containers/policy.json; stdin closed: never prompts
    p = subprocess.run([skopeo, "--insecure-policy", *args], check=False, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    if p.returncode != 0:
        raise PushError(f"skopeo {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return p


def _registry_opts(prefix: str, tls_verify: bool, creds: str | tuple[str, str] | None,
                   cert_dir: str | os.PathLike[str] | None) -> list[str]:
    opts = [f"--{prefix}tls-verify={'true' if tls_verify else 'false'}"]
    if creds is None:
        opts.append(f"--{prefix}no-creds")  # hermetic: never read ~/.docker/config.json or auth.json
    else:
        opts.append(f"--{prefix}creds={creds if isinstance(creds, str) else ':'.join(creds)}")
    if cert_dir is not None:
        opts.append(f"--{prefix}cert-dir={cert_dir}")
    return opts


def remote_manifest(dest: str, *, tls_verify: bool = False, creds: str | tuple[str, str] | None = None,
                    cert_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The raw manifest (or index) a registry serves for ``dest`` (``host/repo:tag``), via skopeo."""
    # inspect's flag is --tls-verify (no src- prefix), but --creds/--cert-dir/--no-creds follow the same shape
    return _skopeo("inspect", "--raw", *_registry_opts("", tls_verify, creds, cert_dir), f"docker://{dest}").stdout


def _has_docker_types(layout: Path, desc: Mapping[str, Any]) -> bool:
    if desc["mediaType"] in (DOCKER_MANIFEST, DOCKER_LIST):
        return True
    if desc["mediaType"] == OCI_INDEX:
        return any(m["mediaType"] in (DOCKER_MANIFEST, DOCKER_LIST)
                   for m in json.loads(read_blob(layout, desc["digest"])).get("manifests", []))
    return False


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _stage_dir_transport(layout: Path, desc: Mapping[str, Any], target: Path) -> None:
    """Lay out the image ``desc`` points at in containers/image's ``dir:`` format (version 1.1):
    ``manifest.json`` (the top document), ``<hex>.manifest.json`` per list entry, ``<hex>`` per blob."""
    blobs = layout / "blobs" / "sha256"
    (target / "version").write_text("Directory Transport Version: 1.1\n")
    _link_or_copy(blobs / desc["digest"][7:], target / "manifest.json")
    top = json.loads(read_blob(layout, desc["digest"]))
    manifests = [top]
    for entry in top.get("manifests", []):
        _link_or_copy(blobs / entry["digest"][7:], target / f"{entry['digest'][7:]}.manifest.json")
        manifests.append(json.loads(read_blob(layout, entry["digest"])))
    for m in manifests:
        for blob in ([m["config"]] if "config" in m else []) + m.get("layers", []):
            dst = target / blob["digest"][7:]
            if not dst.exists():
                _link_or_copy(blobs / blob["digest"][7:], dst)


def push_layout(layout_dir: str | os.PathLike[str], ref_name: str, dest: str, *, tls_verify: bool = False,
                creds: str | tuple[str, str] | None = None, cert_dir: str | os.PathLike[str] | None = None,
                all_platforms: bool = True) -> str:
    """``skopeo copy --preserve-digests oci:<layout>:<ref_name> docker://<dest>`` and check the registry now
    serves the layout's exact manifest bytes for ``dest``. Returns the digest.

    ``dest`` is ``host[:port]/repo:tag``. ``all_platforms`` copies every image of an index (``--all``); without
    it skopeo copies only the host platform's image, so the pushed digest is that manifest's, not the index's.
    """
    layout = Path(layout_dir)
    desc = layout_refs(layout).get(ref_name)
    if desc is None:
        raise PushError(f"{ref_name!r} is not tagged in {layout}/index.json")
    expected = desc["digest"]
    if desc["mediaType"] in (OCI_INDEX, DOCKER_LIST) and not all_platforms:
        idx = json.loads(read_blob(layout, expected))
        host = host_platform()
        match = [m for m in idx["manifests"] if (m["platform"]["os"], m["platform"]["architecture"]) == host]
        if not match:
            raise PushError(f"{ref_name!r} has no {platform_string(host)} image")
        expected = match[0]["digest"]
    opts = ["copy", "-q", "--preserve-digests", *(["--all"] if all_platforms else []),
            *_registry_opts("dest-", tls_verify, creds, cert_dir)]
    if not _has_docker_types(layout, desc):
        _skopeo(*opts, f"oci:{layout}:{ref_name}", f"docker://{dest}")
    else:
        # skopeo 1.9's oci: transport ignores index.json entries that are not OCI types ("no descriptor found
        # for reference"): hand it the same bytes through its dir: transport, which sniffs the media type
        with tempfile.TemporaryDirectory(prefix=".skopeo-dir-", dir=layout) as tmp:
            _stage_dir_transport(layout, desc, Path(tmp))
            _skopeo(*opts, f"dir:{tmp}", f"docker://{dest}")
    pushed = sha256_digest(remote_manifest(dest, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir))
    if pushed != expected:
        raise PushError(f"{dest}: registry serves {pushed}, the layout has {expected} (skopeo rewrote the image)")
    return pushed


# --- the standard catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogImage:
    """A standard test image as pushed to the test registry."""
    name: str  # catalogue key, e.g. "busybox"
    ref: str  # full ref, e.g. "127.0.0.1:5000/library/busybox:latest"
    digest: str  # what the tag points at: the manifest's, or the index's for multi-platform images
    media_type: str  # of that document
    layout: Path  # the OCI layout it was built in
    layout_ref: str  # its ref name inside the layout
    image: ImageInfo  # the host platform's image (for an index: the host entry)
    platforms: dict[str, ImageInfo] = field(default_factory=dict)  # "linux/arm64" -> image, for indexes
    # what an unpacked rootfs of the host platform's image holds: path -> content, None = must not exist
    expect_files: dict[str, bytes | None] = field(default_factory=dict)
    expect_symlinks: dict[str, str] = field(default_factory=dict)  # path -> link target
    expect_modes: dict[str, int] = field(default_factory=dict)  # path -> permission bits (S_IMODE)
    platform_files: dict[str, dict[str, bytes | None]] = field(default_factory=dict)  # platform -> expect_files

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    @property
    def host(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    @property
    def config(self) -> dict[str, Any]:
        """The host image's run config (``Cmd``, ``Env``, ...)."""
        return self.image.config.get("config", {})

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        return self.image.layers


STANDARD_REPOS = {
    "busybox": "library/busybox:latest",
    "multilayer": "test/multilayer:v1",
    "zstd": "test/zstd:v1",
    "plain": "test/plain:v1",
    "docker": "test/docker:v1",
    "multiarch": "test/multiarch:v1",
    "dockerlist": "test/dockerlist:v1",
}
BUSYBOX_CONFIG = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
OTHER_ARCH = "arm64"


def _busybox_expectations(busybox: Path) -> tuple[dict[str, bytes | None], dict[str, str], dict[str, int]]:
    files: dict[str, bytes | None] = {"/etc/passwd": PASSWD, "/etc/group": GROUP,
                                      "/bin/busybox": busybox.read_bytes()}
    links = {"/bin/sh": "busybox", "/bin/ls": "busybox", "/usr/bin/env": "../../bin/busybox"}
    modes = {"/tmp": 0o1777, "/root": 0o700, "/bin/busybox": 0o755}
    return files, links, modes


def build_standard_layouts(workdir: str | os.PathLike[str], *, busybox: str | os.PathLike[str] = BUSYBOX_PATH,
                           ) -> dict[str, dict[str, Any]]:
    """Build every standard image into ``<workdir>/<name>/`` (one OCI layout each, tagged ``<name>``).

    Returns name -> the keyword arguments of :class:`CatalogImage` except ``ref`` (no registry involved).
    """
    work = Path(workdir)
    bb_path = Path(busybox)
    bb = busybox_layer_tar(bb_path)
    bb_files, bb_links, bb_modes = _busybox_expectations(bb_path)
    host = host_platform()
    host_s = platform_string(host)
    out: dict[str, dict[str, Any]] = {}

    def single(name: str, layers: list[bytes], files: Mapping[str, bytes | None], **kw: Any) -> None:
        layout = work / name
        info = build_image(layout, name, layers, config=BUSYBOX_CONFIG, **kw)
        out[name] = {"name": name, "digest": info.manifest_digest, "media_type": info.media_type, "layout": layout,
                     "layout_ref": name, "image": info, "expect_files": {**bb_files, **files},
                     "expect_symlinks": dict(bb_links), "expect_modes": dict(bb_modes)}

    # 1. the plain old busybox: one gzip layer, Cmd ["sh"]
    single("busybox", [bb], {}, history=["COPY busybox / # ctk test image"])

    # 2. three layers with a whiteout and an opaque directory; 3-5. the same in the other encodings
    l2 = extra_layer_tar({"/data/a.txt": b"a\n", "/data/b.txt": b"b\n", "/opq/old.txt": b"old\n",
                          "/data/run.sh": (b"#!/bin/sh\necho run\n", 0o755)})
    l3 = extra_layer_tar({"/data/c.txt": b"c\n", "/opq/new.txt": b"new\n"}, whiteouts=["/data/b.txt"],
                         opaque_dirs=["/opq"])
    ml_files: dict[str, bytes | None] = {
        "/data/a.txt": b"a\n", "/data/b.txt": None, "/data/c.txt": b"c\n", "/data/.wh.b.txt": None,
        "/opq/old.txt": None, "/opq/new.txt": b"new\n", "/opq/.wh..wh..opq": None,
        "/data/run.sh": b"#!/bin/sh\necho run\n"}
    for name, kw in (("multilayer", {}), ("zstd", {"compression": "zstd"}), ("plain", {"compression": "none"}),
                     ("docker", {"docker_media_types": True})):
        single(name, [bb, l2, l3], ml_files, **kw)
        out[name]["expect_modes"]["/data/run.sh"] = 0o755

    # 6-7. multi-platform: host = busybox + /platform, the other arch = just /platform (never run)
    other = ("linux", OTHER_ARCH if host[1] != OTHER_ARCH else "amd64")
    other_s = platform_string(other)
    for name, docker in (("multiarch", False), ("dockerlist", True)):
        layout = work / name
        host_img = build_image(layout, None, [bb, extra_layer_tar({"/platform": f"{host[1]}\n".encode()})],
                               config=BUSYBOX_CONFIG, platform=host, docker_media_types=docker)
        other_img = build_image(layout, None, [extra_layer_tar({"/platform": f"{other[1]}\n".encode()})],
                                config={"Env": [DEFAULT_PATH], "Cmd": ["/bin/true"]}, platform=other,
                                docker_media_types=docker)
        digest = build_index(layout, name, [host_img, other_img], docker_media_types=docker)
        out[name] = {
            "name": name, "digest": digest, "media_type": DOCKER_LIST if docker else OCI_INDEX, "layout": layout,
            "layout_ref": name, "image": host_img, "platforms": {host_s: host_img, other_s: other_img},
            "expect_files": {**bb_files, "/platform": f"{host[1]}\n".encode()},
            "expect_symlinks": dict(bb_links), "expect_modes": dict(bb_modes),
            "platform_files": {host_s: {"/platform": f"{host[1]}\n".encode()},
                               other_s: {"/platform": f"{other[1]}\n".encode(), "/bin/busybox": None}},
        }
    return out


def standard_images(workdir: str | os.PathLike[str], registry_host: str, *, tls_verify: bool = False,
                    creds: str | tuple[str, str] | None = None, cert_dir: str | os.PathLike[str] | None = None,
                    ) -> dict[str, CatalogImage]:
    """Build the standard images and push them to ``registry_host`` (e.g. ``127.0.0.1:5000``).

    Returns name -> :class:`CatalogImage`; names and repositories are in ``STANDARD_REPOS``:
      busybox     library/busybox:latest  1 gzip layer, Cmd ["sh"]
      multilayer  test/multilayer:v1      3 gzip layers: busybox; /data/{a,b}.txt, /opq/old.txt, /data/run.sh
                                          (0755); whiteout of /data/b.txt + /data/c.txt, opaque /opq + /opq/new.txt
      zstd / plain / docker               the multilayer image with zstd layers / uncompressed layers /
                                          Docker schema2 media types (gzip)
      multiarch   test/multiarch:v1       OCI index: host (busybox + /platform "amd64\\n") and linux/arm64
                                          (only /platform "arm64\\n")
      dockerlist  test/dockerlist:v1      the same as a Docker manifest list of schema2 manifests
    """
    built = build_standard_layouts(workdir)
    out = {}
    for name, kw in built.items():
        ref = f"{registry_host}/{STANDARD_REPOS[name]}"
        push_layout(kw["layout"], kw["layout_ref"], ref, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir)
        out[name] = CatalogImage(ref=ref, **kw)
    return out


WEB_PAGE = b"<h1>hello from ctk</h1>\n"


def web_image(layout_dir: str | os.PathLike[str], ref_name: str) -> ImageInfo:
    """busybox httpd serving ``WEB_PAGE`` on port 80: the demo's web server."""
    return build_image(layout_dir, ref_name, [busybox_layer_tar(), extra_layer_tar({"www/index.html": WEB_PAGE})],
                       config={"Env": [DEFAULT_PATH], "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
                               "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/www"})


def busybox_image(layout_dir: str | os.PathLike[str], ref_name: str) -> ImageInfo:
    """A one-layer busybox base image (Debian's static busybox and its applet links), nothing else."""
    return build_image(layout_dir, ref_name, [busybox_layer_tar()], config={"Env": [DEFAULT_PATH], "Cmd": ["sh"]})


if __name__ == "__main__":  # scripts/demo: python3 -m tests.support.images web|busybox LAYOUT_DIR REF
    import sys

    makers = {"web": web_image, "busybox": busybox_image}
    if len(sys.argv) != 4 or sys.argv[1] not in makers:
        sys.exit("usage: python3 -m tests.support.images web|busybox LAYOUT_DIR REF")
    makers[sys.argv[1]](sys.argv[2], sys.argv[3])
