"""ADD of a local tar archive: unpack it confined to the destination directory, with Docker's semantics.

``tarfile`` only reads the members; every write goes through :mod:`rootfs` descriptors (``tarfile``'s own
extraction follows links already in the tree, on the host).

Semantics, as ``docker build`` (its ``chrootarchive`` unpacks inside a ``chroot`` of the destination) and
containerd's ``archive.Apply`` do:

* a member's *parent* path is resolved inside the destination, following its symlinks there (an absolute
  link means destination-relative); missing parents are created 0755 root-owned;
* the member itself never follows a link: a non-directory member replaces whatever is at its path (a
  symlink, a file, a whole directory); a directory member over an existing directory merges and applies its
  metadata; the root entry (``./``) is skipped;
* ``..`` that would climb above the destination is clamped at it (``/../../etc/x`` is ``etc/x``), as
  containerd does; we never refuse an archive Docker accepts, we only keep it inside;
* a hard link's target is resolved inside the destination too (its last component is not followed) and
  must exist;
* owners are the archive's numeric ids (``--chown`` overrides them), the permission bits include
  setuid/setgid/sticky, mtimes are kept (directories' after their contents), FIFOs and device nodes are
  created (the build runs as root), and PAX ``SCHILY.xattr.*`` records (``security.capability`` …) are
  set after the owner (a chown drops file capabilities). Like Docker, an xattr the filesystem refuses
  (ENOTSUP/EPERM) is skipped.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from decimal import Decimal

from ctk_shared.errors import InvalidArgument

from . import rootfs

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR = "SCHILY.xattr."
_MAX_OPEN_DIRS = 256


class _Dirs:
    """Descriptors of parent directories by their name in the archive, so the ~10,000 members of a root
    filesystem do not each pay a lookup. Emptied whenever a link or a directory is removed or created
    over something, since that can change what a cached name resolves to."""

    def __init__(self, root: rootfs.Root) -> None:
        self.root = root
        self.fds: dict[str, int] = {}

    def get(self, rel: str, create: bool = True) -> int:
        """The directory ``rel`` (resolved in the root); valid until :meth:`clear` or :meth:`trim`."""
        if not rel:
            return self.root.fd
        fd = self.fds.get(rel)
        if fd is None:
            fd = self.root.open_dir(rel, create=create)
            self.fds[rel] = fd
        return fd

    def trim(self) -> None:
        """Bound the descriptors held; called between members, never while one holds a descriptor."""
        if len(self.fds) >= _MAX_OPEN_DIRS:
            self.clear()

    def clear(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _mtime_ns(m: tarfile.TarInfo) -> int:
    text = m.pax_headers.get("mtime")
    if text:
        try:
            return int(Decimal(text) * 1_000_000_000)
        except ArithmeticError:
            pass
    return int(m.mtime) * 1_000_000_000


def _xattrs(m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """PAX xattr records; tarfile decodes the values as UTF-8 with surrogateescape, which gives the bytes
    back exactly (capabilities are binary)."""
    if not m.pax_headers:
        return []
    return [(k[len(_XATTR):], v.encode("utf-8", "surrogateescape"))
            for k, v in m.pax_headers.items() if k.startswith(_XATTR)]


def _set_xattrs(target: int | str, attrs: list[tuple[str, bytes]]) -> None:
    for name, value in attrs:
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


def _member_name(name: str) -> str:
    """The member's path relative to the destination, ``..`` clamped at it ("" for the root itself)."""
    return posixpath.normpath("/" + name).lstrip("/")


def extract(archive: str, dest: rootfs.Root, owner: tuple[int, int] | None = None) -> None:
    """Unpack ``archive`` (plain, gzip, bzip2 or xz) into ``dest``; ``owner`` overrides the archive's ids."""
    dirs = _Dirs(dest)
    dir_times: list[tuple[str, int]] = []
    try:
        with tarfile.open(archive, "r:*") as t:
            for m in t:
                name = _member_name(m.name)
                if not name:
                    continue
                dirs.trim()
                try:
                    _member(t, m, name, dirs, owner, dir_times)
                except OSError as e:
                    what = f"hard link to {m.linkname!r}" if m.islnk() else "member"
                    raise InvalidArgument(f"unpacking {what} {m.name!r}: {e.strerror or e}") from None
        for name, mtime in reversed(dir_times):  # after the contents, whose creation bumped them
            parent, base = posixpath.split(name)
            try:
                pfd = dirs.get(parent, create=False)
            except OSError:
                continue  # replaced by a later member
            old = rootfs.lstat_at(pfd, base)
            if old is not None and stat.S_ISDIR(old.st_mode):
                os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
    except tarfile.TarError as e:
        raise InvalidArgument(f"reading archive: {e}") from None
    finally:
        dirs.clear()


def _member(t: tarfile.TarFile, m: tarfile.TarInfo, name: str, dirs: _Dirs, owner: tuple[int, int] | None,
            dir_times: list[tuple[str, int]]) -> None:
    """Write one member; its parent is resolved in the root, its own name never followed."""
    parent, base = posixpath.split(name)
    pfd = dirs.get(parent)
    uid, gid = owner if owner is not None else (m.uid, m.gid)
    old = rootfs.lstat_at(pfd, base)
    if m.isdir():
        if old is not None and not stat.S_ISDIR(old.st_mode):
            rootfs.remove_at(pfd, base, old)
            dirs.clear()
            pfd, old = dirs.get(parent), None
        if old is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, rootfs.O_DIR | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode)
            _set_xattrs(fd, _xattrs(m))
        finally:
            os.close(fd)
        dir_times.append((name, _mtime_ns(m)))
        return
    if m.islnk():
        target = _member_name(m.linkname)
        if target == name:
            return
        tparent, tbase = posixpath.split(target)
        tpfd = dirs.get(tparent, create=False)
        if old is not None:
            rootfs.remove_at(pfd, base, old)
            if not stat.S_ISREG(old.st_mode):
                dirs.clear()
                pfd, tpfd = dirs.get(parent), dirs.get(tparent, create=False)
        os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        return  # the inode already has its owner, mode and times
    if old is not None:
        rootfs.remove_at(pfd, base, old)
        if not stat.S_ISREG(old.st_mode):
            dirs.clear()
            pfd = dirs.get(parent)
    if m.isreg():
        _write_file(t, m, pfd, base, uid, gid)
        return
    if m.issym():
        os.symlink(m.linkname, base, dir_fd=pfd)
        os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        _set_xattrs(rootfs.at_path(pfd, base), _xattrs(m))
        os.utime(base, ns=(_mtime_ns(m),) * 2, dir_fd=pfd, follow_symlinks=False)
        return
    if m.isfifo():
        os.mkfifo(base, 0o600, dir_fd=pfd)
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
    else:
        return  # tarfile reads unknown types as regular files; nothing else is left
    # a node we just made, not a link, so fchmodat (which has no no-follow mode here) is safe on it
    os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
    os.chmod(base, m.mode, dir_fd=pfd)
    _set_xattrs(rootfs.at_path(pfd, base), _xattrs(m))
    os.utime(base, ns=(_mtime_ns(m),) * 2, dir_fd=pfd, follow_symlinks=False)


def _write_file(t: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str, uid: int, gid: int) -> None:
    fd = os.open(base, _NEW_FILE, 0o600, dir_fd=pfd)
    try:
        if m.size:
            src = t.extractfile(m)
            assert src is not None
            with os.fdopen(fd, "wb", closefd=False) as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, m.mode)  # after the chown, which clears setuid/setgid
        _set_xattrs(fd, _xattrs(m))  # after the data and the chown, which drop security.capability
        mtime = _mtime_ns(m)
        os.utime(fd, ns=(mtime, mtime))
    finally:
        os.close(fd)
