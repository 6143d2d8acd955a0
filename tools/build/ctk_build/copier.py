"""COPY and ADD into a mounted snapshot, with Docker's destination rules.

* A directory source copies its *contents*; a file goes to ``DEST`` itself unless ``DEST`` ends with ``/``
  or is an existing directory. Several sources need a ``DEST`` ending with ``/``.
* Owners become 0:0 (or ``--chown``); permission bits and mtimes are kept (``--chmod`` overrides the bits).
* ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into ``DEST``, owners from the archive.
* Destination paths resolve inside the image root: an image symlink such as ``/usr/local/bin -> /opt/bin``
  leads to the image's /opt/bin, never the host's. Every write goes through a directory descriptor from
  :class:`rootfs.Root` and never follows the last component: a file or link copied over an image symlink
  replaces the link (Docker/BuildKit's rule for non-directories); a source *directory* meeting an image
  symlink to a directory merges into that directory inside the root (so ``COPY rootfs/ /`` into a
  merged-/usr image fills /usr/bin through /bin).
* ADD's unpacking is :mod:`untar` (confined to the destination, Docker's unpack semantics).
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass

from ctk_shared.errors import InvalidArgument

from . import rootfs
from .sources import SourceTree

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class CopyOwner:
    """Who owns what COPY and ADD write: ``--chown``'s uid and gid, resolved in the image (root without it)."""

    uid: int = 0
    gid: int = 0


def _mkdir_as(owner: CopyOwner | None) -> rootfs.MakeDir:
    """How COPY creates a missing destination directory: 0755, owned by ``--chown`` if given, else root."""
    def make(dir_fd: int, name: str) -> None:
        rootfs.default_mkdir(dir_fd, name)
        if owner is not None:
            os.chown(name, owner.uid, owner.gid, dir_fd=dir_fd, follow_symlinks=False)
    return make


def _clear_for_file(pfd: int, name: str) -> None:
    """Make room for a non-directory: a file or link in the way is replaced (never followed)."""
    old = rootfs.lstat_at(pfd, name)
    if old is None:
        return
    if stat.S_ISDIR(old.st_mode):
        raise InvalidArgument(f"cannot overwrite directory {name!r} with a non-directory")
    os.unlink(name, dir_fd=pfd)


def _copy_data(src: int, dst: int) -> None:
    """In-kernel copy: copy_file_range, or sendfile where the kernel refuses it (across filesystems);
    both advance the same file offsets, so a fallback mid-way continues where the first stopped."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while os.sendfile(dst, src, None, 1 << 30):
        pass


def _put(pfd: int, name: str, src: str, st: os.stat_result, owner: CopyOwner, chmod: int | None) -> None:
    """Copy one non-directory ``src`` to ``name`` in the directory ``pfd``, replacing what is there."""
    mode = st.st_mode
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISLNK(mode):
        _clear_for_file(pfd, name)
        os.symlink(os.readlink(src), name, dir_fd=pfd)
        os.chown(name, owner.uid, owner.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)
        return
    bits = chmod if chmod is not None else stat.S_IMODE(mode)
    if stat.S_ISREG(mode):
        _clear_for_file(pfd, name)
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            dfd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
            try:
                _copy_data(sfd, dfd)
                os.fchown(dfd, owner.uid, owner.gid)
                os.fchmod(dfd, bits)
                os.utime(dfd, ns=times)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        return
    if not stat.S_ISFIFO(mode):
        return  # sockets and device nodes are not copied from a context
    _clear_for_file(pfd, name)
    os.mkfifo(name, 0o600, dir_fd=pfd)
    os.chown(name, owner.uid, owner.gid, dir_fd=pfd, follow_symlinks=False)
    os.chmod(name, bits, dir_fd=pfd)  # the FIFO just made: no link to follow
    os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)


def _put_dir(root: rootfs.Root, pfd: int, name: str, st: os.stat_result, owner: CopyOwner,
             chmod: int | None) -> int:
    """The directory ``name`` in ``pfd`` for a source directory, as a descriptor; existing ones merge.

    An image symlink in its place is followed *inside the root* when it leads to a directory (or nowhere:
    then that directory is made): ``COPY rootfs/ /`` into a merged-/usr image must fill /usr/bin through
    the /bin link, not replace the link. A link to a non-directory is replaced by the directory.
    """
    old = rootfs.lstat_at(pfd, name)
    fd = -1
    if old is not None and stat.S_ISLNK(old.st_mode):
        try:
            fd = root.open_dir(posixpath.join(root.path_of(pfd), name), create=True)
        except (NotADirectoryError, FileNotFoundError):
            os.unlink(name, dir_fd=pfd)
            old = None
    elif old is not None and not stat.S_ISDIR(old.st_mode):
        os.unlink(name, dir_fd=pfd)
        old = None
    if fd < 0:
        if old is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, rootfs.O_DIR | os.O_NOFOLLOW, dir_fd=pfd)
    try:
        os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_tree(root: rootfs.Root, base_fd: int, src: SourceTree, rel: str, owner: CopyOwner,
               chmod: int | None) -> None:
    """Copy the contents of source directory ``rel`` into the directory ``base_fd`` (which it closes).

    The entries come depth-first, so only the descriptors of the current directory's ancestors are held;
    a directory's mtime is set when the walk leaves it (writing its contents would bump it). Directories
    that .dockerignore skipped but whose files are re-included are made with the source directories' modes.
    """
    stack: list[tuple[str, int, os.stat_result | None]] = [("", base_fd, None)]

    def leave() -> None:
        _, fd, st = stack.pop()
        try:
            if st is not None:
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)

    try:
        for e in src.entries(rel):
            if not e.rel:
                continue
            parent, name = posixpath.split(e.rel)
            while stack[-1][0] and not (parent == stack[-1][0] or parent.startswith(stack[-1][0] + "/")):
                leave()
            if parent != stack[-1][0]:  # directories above e were excluded: make them
                have = stack[-1][0]
                for part in parent[len(have):].strip("/").split("/"):
                    drel = posixpath.join(stack[-1][0], part)
                    src_dir = os.path.join(e.path[:len(e.path) - len(e.rel)], drel)
                    dst = os.lstat(src_dir)
                    stack.append((drel, _put_dir(root, stack[-1][1], part, dst, owner, chmod), dst))
            if stat.S_ISDIR(e.st.st_mode):
                stack.append((e.rel, _put_dir(root, stack[-1][1], name, e.st, owner, chmod), e.st))
            else:
                _put(stack[-1][1], name, e.path, e.st, owner, chmod)
        while len(stack) > 1:
            leave()
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def is_archive(path: str) -> bool:
    """A tar archive ADD should unpack: recognised by content (compressed or not), not by name."""
    try:
        with tarfile.open(path, "r:*") as t:
            return t.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def extract(archive: str, dest_dir: str, owner: CopyOwner | None) -> None:
    """Unpack ``archive`` into the host directory ``dest_dir``, every write confined to it (:mod:`untar`)."""
    from . import untar

    with rootfs.Root(dest_dir) as into:
        untar.extract(archive, into, (owner.uid, owner.gid) if owner is not None else None)


def copy(root_dir: str, src: SourceTree, rels: list[str], dest: str, workdir: str, *,
         owner: CopyOwner | None = None, chmod: int | None = None, add: bool = False,
         wildcard: bool = False, inline: dict[str, bytes] | None = None) -> None:
    """Copy the sources ``rels`` of ``src`` to ``dest`` in the image mounted at ``root_dir``.

    ``inline`` are heredoc files (name → content), written as 0644 files (or ``--chmod``). Every write is
    confined to ``root_dir`` (see :mod:`rootfs`); an OS error becomes one InvalidArgument line.
    """
    owner_or_root = owner or CopyOwner()
    dest_abs = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    count = len(rels) + len(inline or {})
    dest_is_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "/")
    if (count > 1 or wildcard and count > 1) and not dest_is_dir:
        raise InvalidArgument("when using COPY with more than one source file, the destination must be a "
                              "directory and end with a /")
    dest_abs = posixpath.normpath(dest_abs)
    mkdir = _mkdir_as(owner)
    with rootfs.Root(root_dir) as root:
        try:
            _copy_all(root, src, rels, dest_abs, dest_is_dir, owner, owner_or_root, chmod, add, mkdir,
                      inline or {})
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            raise InvalidArgument(f"copying to {dest}: {e.strerror or e}{where}") from None


def _copy_all(root: rootfs.Root, src: SourceTree, rels: list[str], dest_abs: str, dest_is_dir: bool,
              owner: CopyOwner | None, owner_or_root: CopyOwner, chmod: int | None, add: bool,
              mkdir: rootfs.MakeDir, inline: dict[str, bytes]) -> None:
    into_dir = dest_is_dir or root.is_dir(dest_abs)  # an image link to a directory counts (in the root)
    for name, data in inline.items():
        target = posixpath.join(dest_abs, name) if into_dir else dest_abs
        pfd = root.open_dir(posixpath.dirname(target), create=True, make=mkdir)
        try:
            base = posixpath.basename(target)
            _clear_for_file(pfd, base)
            fd = os.open(base, _NEW_FILE, 0o600, dir_fd=pfd)
            try:
                os.write(fd, data)
                os.fchown(fd, owner_or_root.uid, owner_or_root.gid)
                os.fchmod(fd, chmod if chmod is not None else 0o644)
            finally:
                os.close(fd)
        finally:
            os.close(pfd)
    for rel in rels:
        top = next(src.entries(rel))
        if stat.S_ISDIR(top.st.st_mode):
            _copy_tree(root, root.open_dir(dest_abs, create=True, make=mkdir), src, rel, owner_or_root, chmod)
            continue
        if add and stat.S_ISREG(top.st.st_mode) and is_archive(top.path):
            from . import untar  # only an ADD of an archive needs it

            with rootfs.Root(fd=root.open_dir(dest_abs, create=True, make=mkdir)) as into:
                untar.extract(top.path, into, (owner.uid, owner.gid) if owner is not None else None)
            continue
        target = posixpath.join(dest_abs, posixpath.basename(rel)) if into_dir else dest_abs
        pfd = root.open_dir(posixpath.dirname(target), create=True, make=mkdir)
        try:
            _put(pfd, posixpath.basename(target), top.path, top.st, owner_or_root, chmod)
        finally:
            os.close(pfd)
