"""A step's layer written straight from its overlay upper directory, instead of containerd's walking differ.

containerd 1.6's ``Diff.Diff`` mounts the parent and the step's snapshot and walks both whole trees. A base
image unpacked from tar has whole-second times, and for such files the walk compares the contents of every
file: a one-line RUN on Debian cost 0.5-1.4 s of diff. The overlay upper directory already *is* the change,
as containers/storage (buildah) uses it: every file and directory the step made or changed (a directory a
file was written under is copied up with it), a whiteout (a 0/0 character device) for what it removed, and
an ``opaque`` mark on a directory that replaced a lower one. So the layer is that directory as a tar, in the
same meaning as containerd's: the same paths in the same order (depth first, names sorted), the same
metadata (mode, owners, whole-second mtime, ``security.capability`` as the only xattr, hardlinks within the
layer as links, no user or group names), whiteouts as ``.wh.NAME`` and opaque directories as
``DIR/.wh..wh..opq``. What overlayfs merely copied up without a change is checked against the lower layers
with the walk's own rule and left out, as the walk leaves it out (:class:`_Entries`).

Used only when the upper directory is known to hold exactly the change: an overlay mount whose options are
all ones that keep that layout (no ``redirect_dir``/``metacopy``, which store renames and metadata-only
copies as xattrs), or a snapshot with no parent (a writable bind of an empty directory, FROM scratch).
Anything else (another snapshotter, other overlay options) goes through containerd's differ as before.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ctk_shared import labels as L
from ctk_shared import oci
from ctk_shared.snapshotfs import is_opaque, is_whiteout

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Mount

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
CAPABILITY_XATTR = "security.capability"  # the one xattr containerd's archive writer keeps
_OVERLAY_SAFE = ("workdir=",)
_OVERLAY_SAFE_FLAGS = frozenset({"index=off", "userxattr", "volatile", "rw", "redirect_dir=off", "metacopy=off"})
CHUNK = 1 << 20


@dataclass(frozen=True)
class UpperSource:
    """Where a step's change is: the upper directory, and the parent's layers (topmost first) under it."""

    upper: str
    lowers: tuple[str, ...] = ()
    overlay: bool = True  # whiteouts and opaque marks are overlayfs's (not in a plain directory)


def upper_source(mounts: Sequence[Mount], parent_chain: str) -> UpperSource | None:
    """Where the step's change can be read from, or None (containerd's differ must compute it)."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "bind" and not parent_chain and "ro" not in m.options:
        return UpperSource(m.source, overlay=False)
    if m.type != "overlay":
        return None
    upper, lowers = "", ""
    for opt in m.options:
        if opt.startswith("upperdir="):
            upper = opt.split("=", 1)[1]
        elif opt.startswith("lowerdir="):
            lowers = opt.split("=", 1)[1]
        elif not opt.startswith(_OVERLAY_SAFE) and opt not in _OVERLAY_SAFE_FLAGS:
            return None
    if not upper or not lowers or not os.path.isdir(upper):
        return None
    for feature in ("redirect_dir", "metacopy"):  # a kernel that turns them on by default
        if f"{feature}=off" not in m.options and _module_default(feature):
            return None
    return UpperSource(upper, tuple(lowers.split(":")))


def _module_default(feature: str) -> bool:
    try:
        with open(f"/sys/module/overlay/parameters/{feature}") as f:
            return f.read().strip() in ("Y", "y", "1", "on")
    except OSError:
        return False


def _capability(path: str) -> bytes:
    try:
        return os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return b""


def _marker(name: str, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.REGTYPE, 0, mtime, "", ""
    return ti


class _Entries:
    """The tar entries of one upper directory, in the walking differ's order and with its idea of a change.

    containerd's walk reports a file whose type, mode, owners, device, capability, size and time are those of
    the parent's file (content compared when both times are whole seconds) as unchanged, and a directory
    whose mode and owners are unchanged only as the parent of a change. The upper directory also holds what
    overlayfs merely copied up (a file opened for writing, the directories above anything written, /etc
    after runc's mount points were removed again), so each entry is checked against the lower layers the
    same way and left out when it is the same."""

    def __init__(self, root: str, overlay: bool, lowers: Sequence[str], epoch: int | None) -> None:
        self.root = root
        self.overlay = overlay
        self.lowers = list(lowers)
        self.epoch = epoch
        self.links: dict[tuple[int, int], str] = {}

    def _time(self, t: float) -> int:
        return int(t) if self.epoch is None else min(int(t), self.epoch)

    def walk(self, rel: str = "") -> list[tuple[tarfile.TarInfo, str | None]]:
        """(header, path of the content for a regular file) for every change under ``rel``."""
        base = os.path.join(self.root, rel) if rel else self.root
        with os.scandir(base) as it:
            names = sorted(e.name for e in it)
        out: list[tuple[tarfile.TarInfo, str | None]] = []
        for name in names:
            sub = f"{rel}/{name}" if rel else name
            path = os.path.join(self.root, sub)
            st = os.lstat(path)
            if self.overlay and is_whiteout(st):
                parent = f"{rel}/" if rel else ""
                out.append((_marker(f"{parent}{WHITEOUT_PREFIX}{name}", self._time(st.st_mtime)), None))
                continue
            if stat.S_ISSOCK(st.st_mode):  # as containerd: a socket is not layer content
                continue
            lower = self._lower(sub)
            if stat.S_ISDIR(st.st_mode):
                children = self.walk(sub)
                opaque = self.overlay and lower is not None and is_opaque(path)
                if opaque or children or lower is None or not _same_meta(path, st, *lower):
                    out.append(self._header(sub, path, st))
                    if opaque:
                        out.append((_marker(f"{sub}/{OPAQUE_MARKER}", self._time(st.st_mtime)), None))
                    out.extend(children)
            elif lower is None or st.st_nlink > 1 or not _same_file(path, st, *lower):
                # (a file with other links in the upper directory goes in whatever its state, as containerd
                # writes an unchanged file again when another name of it is in the layer: the link is kept)
                out.append(self._header(sub, path, st))
        return out

    def _lower(self, rel: str) -> tuple[str, os.stat_result] | None:
        """(path, stat) of what the parent layers show at ``rel``, None when nothing (or a whiteout)."""
        for lower in self.lowers:
            path = os.path.join(lower, rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if self._hides(lower, rel):
                    return None
                continue
            except NotADirectoryError:  # a file above it in this layer hides the lower ones
                return None
            if is_whiteout(st):
                return None
            return path, st
        return None

    @staticmethod
    def _hides(lower: str, rel: str) -> bool:
        """Whether ``lower`` hides the layers below it at ``rel`` though it has nothing there: an opaque
        directory or a whiteout on the way."""
        head = rel
        while "/" in head:
            head = head.rsplit("/", 1)[0]
            path = os.path.join(lower, head)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                return True
            return not stat.S_ISDIR(st.st_mode) or is_opaque(path)
        return False

    def _header(self, name: str, path: str, st: os.stat_result) -> tuple[tarfile.TarInfo, str | None]:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid, ti.uname, ti.gname = st.st_uid, st.st_gid, "", ""
        ti.mtime = self._time(st.st_mtime)
        content: str | None = None
        mode = st.st_mode
        if stat.S_ISREG(mode):
            ident = (st.st_dev, st.st_ino)
            first = self.links.get(ident) if st.st_nlink > 1 else None
            if first is not None:
                ti.type, ti.linkname = tarfile.LNKTYPE, first
            else:
                if st.st_nlink > 1:
                    self.links[ident] = name
                ti.type, ti.size, content = tarfile.REGTYPE, st.st_size, path
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if not stat.S_ISLNK(mode) and ti.type != tarfile.LNKTYPE:
            cap = _capability(path)
            if cap:
                ti.pax_headers = {f"SCHILY.xattr.{CAPABILITY_XATTR}": cap.decode("utf-8", "surrogateescape")}
        return ti, content


def _same_meta(path: str, st: os.stat_result, lower_path: str, lower: os.stat_result) -> bool:
    return (st.st_mode == lower.st_mode and st.st_uid == lower.st_uid and st.st_gid == lower.st_gid
            and st.st_rdev == lower.st_rdev and (stat.S_ISLNK(st.st_mode)
                                                 or _capability(path) == _capability(lower_path)))


def _same_file(path: str, st: os.stat_result, lower_path: str, lower: os.stat_result) -> bool:
    """containerd's (continuity's) test of an unchanged non-directory, on the upper and the lower file."""
    if not _same_meta(path, st, lower_path, lower) or st.st_size != lower.st_size:
        return False
    sec, nsec = divmod(st.st_mtime_ns, 1_000_000_000)
    lsec, lnsec = divmod(lower.st_mtime_ns, 1_000_000_000)
    if sec != lsec:
        return False
    if nsec or lnsec:  # a time with a fraction is kept exactly by any change: equal times, same file
        return nsec == lnsec
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path) == os.readlink(lower_path)
    if stat.S_ISREG(st.st_mode) and st.st_size:  # a whole-second time may be a truncated one: the content
        return _same_content(path, lower_path)
    return True


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


class Sink(Protocol):
    """Where a layer tar is written: only ``write`` is called."""

    def write(self, data: bytes, /) -> int: ...


class _HashingFile:
    """A write-only file that hashes what goes through it (the diffID of the tar)."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def tell(self) -> int:
        return self.size


def write_tar(src: UpperSource, out: Sink, epoch: int | None = None) -> str:
    """Write the layer tar of ``src`` to ``out``; its sha256 digest (the diffID)."""
    hf = _HashingFile(out)
    tf = tarfile.TarFile(fileobj=hf, mode="w", format=tarfile.PAX_FORMAT)  # type: ignore[arg-type]
    # (typeshed wants a whole binary file; TarFile in mode "w" only calls write and tell)
    for ti, content in _Entries(src.upper, src.overlay, src.lowers, epoch).walk():
        if content is None:
            tf.addfile(ti)
            continue
        with open(content, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != ti.size:  # changed since the stat: nothing writes to a finished step's snapshot
                raise OSError(f"{content}: size changed while writing the layer")
            tf.addfile(ti, f)
    # the end as Go's tar writer (containerd's) makes it: two zero blocks, not padded to a 10 KiB record as
    # TarFile.close would (it would only write more: the file is ours, nothing else is left to close)
    hf.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
    return f"sha256:{hf.sha.hexdigest()}"


class _Ingest:
    """A write-only file into one content-store ingest, in 1 MiB writes, hashing what it stores. The size and
    digest are known only at the end, so the ingest opens without them and :meth:`commit` names them (as
    containerd allows: it checks them at the commit)."""

    def __init__(self, client: Client, ref: str) -> None:
        self.writer = client.content.writer(ref, 0, "")
        self.writer.truncate()  # a stale ingest under this ref is written over from its start
        self.sha = hashlib.sha256()
        self.size = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.writer.write(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def commit(self, labels: dict[str, str]) -> str:
        if self._buf:
            self.writer.write(bytes(self._buf))
            self._buf.clear()
        digest = f"sha256:{self.sha.hexdigest()}"
        self.writer.total, self.writer.expected = self.size, digest
        self.writer.commit(labels)
        return digest


class _Gzip:
    """A write-only file that gzips into another (level 6 as containerd's differ, no name and no time in the
    header: equal tars give equal blobs)."""

    def __init__(self, out: _Ingest) -> None:
        self.out = out
        self.comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip wrapper

    def write(self, data: bytes) -> int:
        if out := self.comp.compress(data):
            self.out.write(out)
        return len(data)

    def close(self) -> None:
        self.out.write(self.comp.flush())


def write_layer(client: Client, src: UpperSource, ref: str, compression: str = "gzip",
                epoch: int | None = None) -> tuple[oci.Descriptor, str]:
    """The layer of ``src`` written straight into the content store (no copy on disk, however big the layer):
    (blob descriptor, diffID)."""
    ingest = _Ingest(client, ref)
    try:
        if compression != "gzip":
            diff_id = write_tar(src, ingest, epoch)
            ingest.commit({})
            return oci.Descriptor(oci.OCI_LAYER, diff_id, ingest.size), diff_id
        gz = _Gzip(ingest)
        diff_id = write_tar(src, gz, epoch)
        gz.close()
        digest = ingest.commit({L.UNCOMPRESSED: diff_id})
    except BaseException:
        ingest.writer.abort()
        raise
    return oci.Descriptor(oci.OCI_LAYER_GZIP, digest, ingest.size), diff_id
