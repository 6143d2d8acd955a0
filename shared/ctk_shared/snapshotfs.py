"""Reading a snapshot's files without mounting it: straight from the directories behind its mounts.

A snapshot's mounts (from ``Snapshots.view``/``prepare``/``mounts``) are either one bind mount of a directory
(the native snapshotter) or an overlay whose ``upperdir`` and ``lowerdir=a:b:c`` list its layers top first.
Looking a file up in those directories, top first, gives what a mount would show — an overlay whiteout (a
0/0 character device) in a higher layer means the file was deleted, and an opaque directory
(``trusted.overlay.opaque=y``) hides the layers below it. Other mount types are not read.

The image decides what its paths are, and a path may cross symlinks (``/etc -> /tmp/x``,
``/etc/passwd -> ../../../../root/.ssh/id_rsa``). They are resolved the way a container would see them: in
the merged view of the layers, with absolute targets and ``..`` kept inside the image root, one component
at a time on directory descriptors and never through a host path string. The file read at the end must be
a regular file (a FIFO or a device would block or stream forever) and no bigger than the caller's cap.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .confined import MAX_LINKS, path_parts
from .errors import InvalidArgument
from .limits import DocumentTooLarge, MiB, human

if TYPE_CHECKING:
    from .containerd import Mount

MAX_ETC_FILE_SIZE = 4 * MiB
"""The cap of a file read from an image (``/etc/passwd``, ``/etc/group``): some 80,000 entries."""

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


def layered_dirs(mounts: Sequence[Mount]) -> list[str]:
    """The directories of a snapshot, top first (upper, then lowers)."""
    dirs: list[str] = []
    for m in mounts:
        if m.type == "bind":
            dirs.append(m.source)
        elif m.type == "overlay":
            for opt in m.options:
                if opt.startswith("upperdir="):
                    dirs.insert(0, opt.split("=", 1)[1])
                elif opt.startswith("lowerdir="):
                    dirs.extend(opt.split("=", 1)[1].split(":"))
    return dirs


def read_layered(dirs: Sequence[str], rel: str, *, cap: int = MAX_ETC_FILE_SIZE) -> str | None:
    """The text of the file at in-image path ``rel`` as the merged layers show it, symlinks followed inside
    the image; None when it is missing (or deleted by a whiteout, or a dangling link).

    Raises InvalidArgument when it is not a regular file or leads through too many links, and
    DocumentTooLarge when it is bigger than ``cap`` bytes (nothing past the cap is read)."""
    with _View(dirs) as view:
        found = view.lookup(rel, follow_last=True)
        if found is None:
            return None
        fd, name, st = found
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"/{rel.strip('/')} in the image is {_kind(st.st_mode)}, not a regular file")
        # O_NONBLOCK: should the entry have been swapped for a FIFO since the lstat, open does not wait
        f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        try:
            if not stat.S_ISREG(os.fstat(f).st_mode):
                raise InvalidArgument(f"/{rel.strip('/')} in the image is not a regular file")
            buf = bytearray()
            while len(buf) <= cap:
                chunk = os.read(f, min(1 * MiB, cap + 1 - len(buf)))
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(f)
        if len(buf) > cap:
            raise DocumentTooLarge(f"/{rel.strip('/')} in the image is over the {human(cap)} cap for it "
                                   "(stopped reading)")
        return buf.decode(errors="replace")


def exists_layered(dirs: Sequence[str], rel: str) -> bool:
    """Does the merged view hold an entry at ``rel`` (the last component itself may be a link, dangling or
    not; links before it are followed inside the image)?"""
    with _View(dirs) as view:
        try:
            return view.lookup(rel, follow_last=False) is not None
        except InvalidArgument:
            return False


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a link")):
        if test(mode):
            return what
    return "a special file"


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs's mark of a removed name in an upper or lower directory: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_opaque(target: int | str) -> bool:
    """overlayfs's mark of a directory that hides the lower ones (``trusted.`` or, with ``userxattr``,
    ``user.overlay.opaque``), on an open directory or a path (a symlink's own attributes, never its target)."""
    for attr in _OPAQUE:
        try:
            got = os.getxattr(target, attr) if isinstance(target, int) else \
                os.getxattr(target, attr, follow_symlinks=False)
        except OSError:
            continue
        if got == b"y":
            return True
    return False


class _View:
    """The merged directory tree of layer directories (top first), walked on descriptors.

    A merged directory is the list of its descriptors in each layer that has it, top first: a lower layer
    joins while it holds a directory at that path, until a non-directory, a whiteout or an opaque directory
    hides the ones below (overlayfs's own rule)."""

    def __init__(self, dirs: Sequence[str]) -> None:
        self._fds: list[int] = []
        self.root: list[int] = []
        try:
            for d in dirs:
                try:
                    self.root.append(self._keep(os.open(d, _O_DIR)))
                except FileNotFoundError:
                    continue  # an empty upperdir that is not there yet reads as empty
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> _View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _find(self, level: list[int], name: str) -> tuple[int, os.stat_result] | None:
        for fd in level:
            st = _lstat(fd, name)
            if st is None:
                continue
            return None if is_whiteout(st) else (fd, st)
        return None

    def _descend(self, level: list[int], name: str) -> list[int]:
        out: list[int] = []
        for fd in level:
            st = _lstat(fd, name)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            sub = self._keep(os.open(name, _O_DIR, dir_fd=fd))
            out.append(sub)
            if is_opaque(sub):
                break
        return out

    def lookup(self, rel: str, *, follow_last: bool) -> tuple[int, str, os.stat_result] | None:
        """``(layer directory descriptor, name, lstat)`` of the entry at ``rel``, or None when the merged view
        has nothing there. The descriptor stays valid until the view is closed."""
        parts = path_parts(rel)
        if not parts or not self.root:
            return None
        stack = [self.root]
        links = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            found = self._find(stack[-1], name)
            if found is None:
                return None
            fd, st = found
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise InvalidArgument(f"/{rel.strip('/')} in the image: "
                                          f"{os.strerror(errno.ELOOP).lower()}")
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    del stack[1:]
                parts[:0] = path_parts(target)
                continue
            if not parts:
                return fd, name, st
            if not stat.S_ISDIR(st.st_mode):
                return None  # ENOTDIR: nothing is there
            stack.append(self._descend(stack[-1], name))
        return None  # the path ended in "..": a directory, never a file to read
