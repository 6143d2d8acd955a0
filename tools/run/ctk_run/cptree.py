"""The file copying under ``ctk-run cp``: trees, tar streams in and out, all on directory descriptors.

Both ends of a copy may be hostile: a container's tree holds links its processes chose, and a tree copied out
of it lands in a host directory. So a copy never writes through a path string. Sources are read entry by entry
from directory descriptors (``lstat``, ``O_NOFOLLOW``), destinations are written with ``*at`` calls on the last
component of a directory descriptor the copy holds, never following it; a link in the copied tree is recreated
as a link and never entered. Hard links inside the copied tree stay hard links.

Owners follow Docker's ``cp``: entries written into a container get uid/gid 0 (the container's root), entries
written on the host get the invoking user's, and ``-a`` keeps the source's. Modes (setuid included), times and
extended attributes are kept, sockets are skipped (as tar does).
"""
from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO

from ctk_shared.confined import O_DIR, Root, lstat_at, remove_at
from ctk_shared.errors import CtkError

_DIR = O_DIR | os.O_NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIP_XATTRS = ("trusted.overlay.", "system.nfs4")
_CHUNK = 1 << 30  # sendfile's count per call (it stops at 2 GiB anyway)

Owner = tuple[int, int] | None
"""``(uid, gid)`` given to every written entry, or None to keep the source's (``-a``)."""


class CopyError(CtkError):
    """A copy refused (a directory onto a file, a file into a missing directory, a tar entry leaving its
    destination) or failed part way (a read-only or full filesystem); exit 1."""


def xattrs_of(fd: int) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(fd)
    except OSError:
        return []
    out = []
    for n in names:
        if n.startswith(_SKIP_XATTRS):
            continue
        try:
            out.append((n, os.getxattr(fd, n)))
        except OSError:
            continue
    return out


def _set_xattrs(fd: int, xattrs: list[tuple[str, bytes]]) -> None:
    for n, v in xattrs:
        try:
            os.setxattr(fd, n, v)
        except OSError:
            pass  # a filesystem without user xattrs, or a namespace we may not write: as tar does, go on


def set_meta(fd: int, st: os.stat_result, owner: Owner, xattrs: list[tuple[str, bytes]]) -> None:
    """Owner first (chown clears setuid and file capabilities), then mode, xattrs, times."""
    uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
    os.fchown(fd, uid, gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    if xattrs:
        _set_xattrs(fd, xattrs)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _kind(mode: int) -> str:
    return "directory" if stat.S_ISDIR(mode) else "non-directory"


@dataclass
class TreeCopy:
    """One copy into the directory tree of ``dst_top`` (a descriptor: the destination's top directory, used
    to re-find hard link targets). ``replace`` says whether an entry of the other kind (a file where a
    directory comes, or the reverse) is replaced — as on the host side of Docker's cp — or refused, as Docker
    does inside a container."""

    dst_top: int
    owner: Owner
    replace: bool
    where: str = ""  # the destination as the user named it, for messages
    copied: int = 0  # bytes of file data written
    skip_devs: frozenset[int] = frozenset()  # kernel filesystems of a running container (/proc, /sys): not entered
    _fresh: set[int] = field(default_factory=set)  # descriptors of directories this copy made: nothing to clear
    _links: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    # -- the top entry -----------------------------------------------------------------------------------
    def entry(self, src_dir: int, src_name: str, st: os.stat_result, dst_dir: int, dst_name: str,
              rel: list[str]) -> None:
        """Copy entry ``src_name`` of ``src_dir`` (lstat ``st``) to ``dst_name`` in ``dst_dir``; ``rel`` is its
        path below ``dst_top`` (for hard links)."""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            s = os.open(src_name, _DIR, dir_fd=src_dir)
            try:
                self.dir_into(s, st, dst_dir, dst_name, rel)
            finally:
                os.close(s)
            return
        if stat.S_ISSOCK(mode):
            return
        if dst_dir not in self._fresh:
            self.make_room(dst_dir, dst_name, is_dir=False, rel=rel)
        if st.st_nlink > 1:
            first = self._links.get((st.st_dev, st.st_ino))
            if first is not None and self._link(first, dst_dir, dst_name):
                return
            self._links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            self._file(src_dir, src_name, st, dst_dir, dst_name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src_name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
            self._leaf_meta(dst_dir, dst_name, st, link=True)
        else:  # FIFOs and devices
            os.mknod(dst_name, mode, st.st_rdev, dir_fd=dst_dir)
            self._leaf_meta(dst_dir, dst_name, st, link=False)

    def dir_into(self, src: int, st: os.stat_result, dst_dir: int, dst_name: str, rel: list[str]) -> None:
        """Copy directory ``src`` (its own descriptor) to ``dst_name`` in ``dst_dir``, merging with a directory
        already there."""
        fresh = dst_dir in self._fresh
        if not fresh:
            self.make_room(dst_dir, dst_name, is_dir=True, rel=rel)
        made = fresh or lstat_at(dst_dir, dst_name) is None
        if made:
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        d = os.open(dst_name, _DIR, dir_fd=dst_dir)
        if made:
            self._fresh.add(d)
        try:
            if st.st_dev not in self.skip_devs:
                self.contents(src, d, rel)
            set_meta(d, st, self.owner, xattrs_of(src))
        finally:
            self._fresh.discard(d)
            os.close(d)

    def contents(self, src: int, dst: int, rel: list[str]) -> None:
        """Copy what directory ``src`` holds into directory ``dst``."""
        with os.scandir(src) as it:
            entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        for name, st in entries:
            self.entry(src, name, st, dst, name, rel + [name])

    # -- pieces -------------------------------------------------------------------------------------------
    def make_room(self, dst_dir: int, name: str, *, is_dir: bool, rel: list[str]) -> None:
        """Clear the way for a new entry: a directory merges into a directory; anything else there is removed
        (``replace``) or refused with CopyError when the kinds differ."""
        old = lstat_at(dst_dir, name)
        if old is None or (is_dir and stat.S_ISDIR(old.st_mode)):
            return
        if not self.replace and (is_dir or stat.S_ISDIR(old.st_mode)):
            where = "/".join(rel) or name
            raise CopyError(f"cannot overwrite {_kind(old.st_mode)} {self.where.rstrip('/')}/{where} with "
                            f"{'a directory' if is_dir else 'a non-directory'}")
        remove_at(dst_dir, name, old)

    def _link(self, first: list[str], dst_dir: int, dst_name: str) -> bool:
        """Hard-link ``dst_name`` to the entry copied earlier at ``first`` (below ``dst_top``)."""
        parent = self.dst_top
        opened: list[int] = []
        try:
            for part in first[:-1]:
                parent = os.open(part, _DIR, dir_fd=parent)
                opened.append(parent)
            os.link(first[-1], dst_name, src_dir_fd=parent, dst_dir_fd=dst_dir, follow_symlinks=False)
            return True
        except OSError:
            return False  # the first copy is gone (replaced meanwhile): copy this one in full
        finally:
            for fd in opened:
                os.close(fd)

    def _file(self, src_dir: int, name: str, st: os.stat_result, dst_dir: int, dst_name: str) -> None:
        # O_NONBLOCK: should the entry have become a FIFO since the lstat, open does not wait for a writer
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
        try:
            now = os.fstat(s)
            if not stat.S_ISREG(now.st_mode):
                return  # swapped under us: not a file any more
            d = os.open(dst_name, _NEW_FILE, 0o600, dir_fd=dst_dir)
            try:
                self.copied += copy_data(s, d, now.st_size)
                set_meta(d, st, self.owner, xattrs_of(s))
            finally:
                os.close(d)
        finally:
            os.close(s)

    def _leaf_meta(self, dst_dir: int, name: str, st: os.stat_result, *, link: bool) -> None:
        uid, gid = self.owner if self.owner is not None else (st.st_uid, st.st_gid)
        os.chown(name, uid, gid, dir_fd=dst_dir, follow_symlinks=False)
        if not link:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_dir)
            try:
                os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode))  # a FIFO or device: no open for write
            finally:
                os.close(fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)


def copy_data(src: int, dst: int, size: int) -> int:
    """``size`` bytes of ``src`` into ``dst`` in the kernel (sendfile), fewer if the file shrank meanwhile (a
    file that grows is cut at the size it had, as tar does); returns the bytes copied."""
    total = 0
    while total < size:
        n = os.sendfile(dst, src, None, min(size - total, _CHUNK))
        if n == 0:
            break
        total += n
    return total


# ------------------------------------------------------------------------------------------------- tar out


def tar_out(src_dir: int, name: str | None, st: os.stat_result, arcname: str, out: IO[bytes],
            skip_devs: frozenset[int] = frozenset()) -> None:
    """Write a tar of entry ``name`` in ``src_dir`` (None: ``src_dir`` itself, a directory) to ``out``, its
    top entry called ``arcname``. Owners are the source's, as Docker's ``cp … -`` sends them. Directories on
    a device in ``skip_devs`` are written without their contents."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        links: dict[tuple[int, int], str] = {}
        if name is None:
            _tar_dir(tar, src_dir, st, arcname, links, skip_devs)
        else:
            _tar_entry(tar, src_dir, name, st, arcname, links, skip_devs)


def _tarinfo(st: os.stat_result, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime
    return info


def _tar_entry(tar: tarfile.TarFile, src_dir: int, name: str, st: os.stat_result, arcname: str,
               links: dict[tuple[int, int], str], skip: frozenset[int]) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        fd = os.open(name, _DIR, dir_fd=src_dir)
        try:
            _tar_dir(tar, fd, st, arcname, links, skip)
        finally:
            os.close(fd)
        return
    if stat.S_ISSOCK(mode):
        return
    info = _tarinfo(st, arcname)
    if st.st_nlink > 1:
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            info.type, info.linkname = tarfile.LNKTYPE, first
            tar.addfile(info)
            return
        links[(st.st_dev, st.st_ino)] = arcname
    if stat.S_ISREG(mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return
            info.size = now.st_size  # the header's size; a file that grows meanwhile is cut there
            tar.addfile(info, f)
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=src_dir)
        tar.addfile(info)
    else:
        info.type = (tarfile.FIFOTYPE if stat.S_ISFIFO(mode) else
                     tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)


def _tar_dir(tar: tarfile.TarFile, fd: int, st: os.stat_result, arcname: str,
             links: dict[tuple[int, int], str], skip: frozenset[int]) -> None:
    info = _tarinfo(st, arcname)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    if st.st_dev in skip:
        return
    with os.scandir(fd) as it:
        entries = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
    for child, cst in entries:
        _tar_entry(tar, fd, child, cst, f"{arcname.rstrip('/')}/{child}", links, skip)


# -------------------------------------------------------------------------------------------------- tar in


def _member_parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise CopyError(f"the archive entry {name!r} climbs out of the destination with '..'")
    return parts


def tar_in(stream: IO[bytes], dest: int, owner: Owner, where: str) -> int:
    """Unpack the tar on ``stream`` into directory ``dest``; returns the bytes of file data written.

    Every entry stays below ``dest``: names with ``..`` are refused, and the directories on an entry's way
    are opened without following links (a link in the archive, or one already in the destination, is never
    entered: ``a -> /etc`` then ``a/passwd`` is an error, not a write to /etc). Directories and files replace
    each other only within their kind, as Docker refuses a directory over a file and the reverse."""
    copier = TreeCopy(dest, owner, replace=False, where=where)
    dirs: list[tuple[list[str], tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as e:
        raise CopyError(f"the input on stdin is not a tar archive ({e})") from e
    with tar, Root(fd=os.dup(dest)) as root:
        try:
            for m in tar:
                parts = _member_parts(m.name)
                if not parts:
                    if m.isdir():
                        dirs.append(([], m))
                    continue
                try:
                    pfd = root.open_dir("/".join(parts[:-1]), create=True, follow=False)
                except OSError as e:
                    raise CopyError(f"the archive entry {m.name!r}: {_why(e)}") from e
                try:
                    _member(tar, m, pfd, parts, copier, root)
                finally:
                    os.close(pfd)
                if m.isdir():
                    dirs.append((parts, m))
        except tarfile.TarError as e:
            raise CopyError(f"reading the tar on stdin: {e}") from e
    for parts, m in reversed(dirs):  # directory times last: writing their entries moved them
        try:
            fd = root_fd_of(dest, parts)
        except OSError:
            continue
        try:
            uid, gid = owner if owner is not None else (m.uid, m.gid)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
    return copier.copied


def root_fd_of(top: int, parts: list[str]) -> int:
    """Open directory ``parts`` below ``top`` without following any link."""
    fd = os.dup(top)
    for p in parts:
        try:
            nxt = os.open(p, _DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _why(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "its path goes through a symbolic link (never followed when unpacking)"
    if e.errno == errno.ENOTDIR:
        return "a non-directory is in its path"
    return e.strerror or str(e)


def _member(tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: list[str], copier: TreeCopy,
            root: Root) -> None:
    name = parts[-1]
    if m.isdir():
        copier.make_room(pfd, name, is_dir=True, rel=parts)
        if lstat_at(pfd, name) is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        return
    copier.make_room(pfd, name, is_dir=False, rel=parts)
    owner = copier.owner if copier.owner is not None else (m.uid, m.gid)
    if m.isreg():
        f = tar.extractfile(m)
        assert f is not None
        d = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            with os.fdopen(os.dup(d), "wb", closefd=True) as out:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    out.write(chunk)
                    copier.copied += len(chunk)
            os.fchown(d, *owner)
            os.fchmod(d, m.mode & 0o7777)
            os.utime(d, (m.mtime, m.mtime))
        finally:
            os.close(d)
        return
    if m.issym():
        os.symlink(m.linkname, name, dir_fd=pfd)
    elif m.islnk():
        lparts = _member_parts(m.linkname)
        if not lparts:
            raise CopyError(f"the archive entry {m.name!r} links to nothing")
        try:
            lfd = root.open_dir("/".join(lparts[:-1]), follow=False)
        except OSError as e:
            raise CopyError(f"the archive entry {m.name!r} links to {m.linkname!r}: {_why(e)}") from e
        try:
            os.link(lparts[-1], name, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(lfd)
        return  # a hard link shares the first entry's owner and mode
    elif m.ischr() or m.isblk() or m.isfifo():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
    else:
        return
    os.chown(name, *owner, dir_fd=pfd, follow_symlinks=False)
    if not m.issym():
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.chmod(f"/proc/self/fd/{fd}", m.mode & 0o7777)
        finally:
            os.close(fd)
    os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
