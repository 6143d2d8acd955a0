"""COPY and ADD into a mounted snapshot, with Docker's destination rules.

* A directory source copies its *contents*; a file goes to ``DEST`` itself unless ``DEST`` ends with ``/``
  or is an existing directory. Several sources need a ``DEST`` ending with ``/``.
* Owners become 0:0 (or ``--chown``); permission bits and mtimes are kept (``--chmod`` overrides the bits).
* ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into ``DEST``, owners from the archive.
* Destination paths resolve inside the image root: an image symlink such as ``/usr/local/bin -> /opt/bin``
  leads to the image's /opt/bin.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass

from ctk_shared.errors import InvalidArgument

from .sources import Entry, SourceTree


@dataclass(frozen=True)
class CopyOwner:
    uid: int = 0
    gid: int = 0


def _mkdirs(root: SourceTree, path: str, owner: CopyOwner | None, mode: int = 0o755) -> str:
    """Create ``path`` (absolute in the image) and missing parents inside ``root``; returns the host path."""
    parts = [p for p in path.split("/") if p]
    done = ""
    for p in parts:
        done = f"{done}/{p}"
        host = root.resolve(done.lstrip("/"))
        if os.path.isdir(host):
            continue
        if os.path.lexists(host):
            raise InvalidArgument(f"cannot create directory {done}: a file is in the way")
        os.mkdir(host, mode)
        os.chmod(host, mode)
        if owner is not None:
            os.chown(host, owner.uid, owner.gid)
    return root.resolve(path.lstrip("/")) if parts else root.root


def _remove_existing(dst: str, replacing_dir: bool) -> None:
    if not os.path.lexists(dst):
        return
    if os.path.isdir(dst) and not os.path.islink(dst):
        if replacing_dir:
            return  # merge into the existing directory
        raise InvalidArgument(f"cannot overwrite directory {dst!r} with a non-directory")
    os.unlink(dst)


def _put(src: str, st: os.stat_result, dst: str, owner: CopyOwner, chmod: int | None) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if not os.path.isdir(dst) or os.path.islink(dst):
            _remove_existing(dst, True)
            os.mkdir(dst)
        os.chown(dst, owner.uid, owner.gid)
        os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(mode))
        return
    _remove_existing(dst, False)
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
        os.lchown(dst, owner.uid, owner.gid)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dst)
    else:
        return  # sockets and device nodes are not copied from a context
    os.chown(dst, owner.uid, owner.gid)
    os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _parents(base: str, e: Entry, owner: CopyOwner, chmod: int | None) -> None:
    """Create the directories above ``e`` that were skipped (a .dockerignore'd directory whose file is
    re-included), with the source directories' modes."""
    rel_parent = posixpath.dirname(e.rel)
    if not rel_parent or os.path.isdir(os.path.join(base, rel_parent)):
        return
    src_dir = os.path.dirname(e.path)
    missing = []
    while rel_parent and not os.path.isdir(os.path.join(base, rel_parent)):
        missing.append((rel_parent, src_dir))
        rel_parent, src_dir = posixpath.dirname(rel_parent), os.path.dirname(src_dir)
    for rel, src in reversed(missing):
        _put(src, os.lstat(src), os.path.join(base, rel), owner, chmod)


def is_archive(path: str) -> bool:
    """A tar archive ADD should unpack: recognised by content (compressed or not), not by name."""
    try:
        with tarfile.open(path, "r:*") as t:
            return t.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def _inside(dest: str, rel: str) -> bool:
    """Does ``dest/rel`` stay inside ``dest`` once the symlinks already extracted are followed?"""
    root = os.path.realpath(dest)
    path = os.path.realpath(os.path.join(dest, rel))
    return path == root or path.startswith(root + os.sep)


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """The member with a name inside ``dest``. A member reached through a symlink that leaves ``dest`` (a link
    to /etc, then etc/passwd) is refused: it would write on the host."""
    name = posixpath.normpath("/" + member.name).lstrip("/")
    if not name or name == ".":
        return None
    member = member.replace(name=name, deep=False)
    parent = posixpath.dirname(name)
    if parent and not _inside(dest, parent):
        raise InvalidArgument(f"archive member {member.name!r} is reached through a symlink that leaves the "
                              "destination")
    if member.islnk():
        target = posixpath.normpath("/" + member.linkname).lstrip("/")
        if not _inside(dest, target):
            raise InvalidArgument(f"archive member {member.name!r} is a hard link to {member.linkname!r}, "
                                  "outside the destination")
        member = member.replace(linkname=target, deep=False)
    return member


def extract(archive: str, dest_host: str, owner: CopyOwner | None) -> None:
    def flt(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        m = _safe_member(member, path)
        if m is not None and owner is not None:
            m = m.replace(uid=owner.uid, gid=owner.gid, uname="", gname="", deep=False)
        return m

    with tarfile.open(archive, "r:*") as t:
        t.extractall(dest_host, filter=flt, numeric_owner=True)


def copy(root_dir: str, src: SourceTree, rels: list[str], dest: str, workdir: str, *,
         owner: CopyOwner | None = None, chmod: int | None = None, add: bool = False,
         wildcard: bool = False, inline: dict[str, bytes] | None = None) -> None:
    """Copy the sources ``rels`` of ``src`` to ``dest`` in the image mounted at ``root_dir``.

    ``inline`` are heredoc files (name → content), written as 0644 files (or ``--chmod``).
    """
    root = SourceTree(root_dir, context=False, label="image")
    owner_or_root = owner or CopyOwner()
    dest_abs = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    count = len(rels) + len(inline or {})
    dest_is_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "/")
    if (count > 1 or wildcard and count > 1) and not dest_is_dir:
        raise InvalidArgument("when using COPY with more than one source file, the destination must be a "
                              "directory and end with a /")
    dest_abs = posixpath.normpath(dest_abs)
    existing_dir = os.path.isdir(root.resolve(dest_abs.lstrip("/")))
    for name, data in (inline or {}).items():
        target = posixpath.join(dest_abs, name) if dest_is_dir or existing_dir else dest_abs
        parent = _mkdirs(root, posixpath.dirname(target), owner)
        host = os.path.join(parent, posixpath.basename(target))
        _remove_existing(host, False)
        with open(host, "wb") as f:
            f.write(data)
        os.chown(host, owner_or_root.uid, owner_or_root.gid)
        os.chmod(host, chmod if chmod is not None else 0o644)
    for rel in rels:
        top = next(src.entries(rel))
        if stat.S_ISDIR(top.st.st_mode):
            base = _mkdirs(root, dest_abs, owner)
            dirs: list[tuple[str, os.stat_result]] = []
            for e in src.entries(rel):
                if not e.rel:
                    continue
                dst = os.path.join(base, e.rel)
                _parents(base, e, owner_or_root, chmod)
                _put(e.path, e.st, dst, owner_or_root, chmod)
                if stat.S_ISDIR(e.st.st_mode):
                    dirs.append((dst, e.st))
            for dst, st in reversed(dirs):  # after their contents, or writing them would bump the mtime
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        if add and stat.S_ISREG(top.st.st_mode) and is_archive(top.path):
            extract(top.path, _mkdirs(root, dest_abs, owner), owner)
            continue
        into_dir = dest_is_dir or existing_dir
        target = posixpath.join(dest_abs, posixpath.basename(rel)) if into_dir else dest_abs
        parent = _mkdirs(root, posixpath.dirname(target), owner)
        _put(top.path, top.st, os.path.join(parent, posixpath.basename(target)), owner_or_root, chmod)
