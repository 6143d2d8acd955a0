"""Path resolution confined to a directory tree, on directory file descriptors.

Tools write into trees whose symlinks a hostile party chose: ctk-build into snapshots mounted on the host,
ctk-run cp into a container's root (its ``/proc/PID/root`` or its mounted snapshot) and from one into a host
directory. A path inside such a tree may cross symlinks the image (or a hostile tar, a build step, the
container's own processes) put there, and the kernel would follow them *on the host*: a link
``/etc/localtime -> /usr/share/zoneinfo/UTC`` would lead a write to the machine's own zoneinfo. So no writer
touches such a tree through a host path string. It asks :class:`Root` for a directory file descriptor,
resolved the way a container would see the path (absolute links and ``..`` stay inside the root, as in a
``chroot``), and then works with ``dir_fd=`` / ``*at`` calls on the last component, never following it.

Resolution uses ``openat2(2)`` with ``RESOLVE_IN_ROOT`` (Linux >= 5.6, through ctypes: Python has no
binding). When the kernel lacks it, or when missing directories must be created on the way, an equivalent
walk opens one component at a time with ``O_NOFOLLOW``, reads each symlink with ``readlinkat`` and restarts
absolute targets from the root; ``..`` pops a stack of held descriptors, so it cannot climb above the root.
Every step of the walk is relative to a descriptor already held, so a link swapped during the walk can only
redirect it inside the root. ``$CTK_NO_OPENAT2`` (or ctk-build's older ``$CTK_BUILD_NO_OPENAT2``) forces the
walk.
"""
from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Callable
from typing import Any

from .libc import libc

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
"""Directory descriptors are opened for reading (not ``O_PATH``) so ``fchown``/``fchmod``/``futimens``
work on them as well as the ``*at`` calls."""

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

MAX_LINKS = 40
"""The kernel's own limit of symbolic links followed in one lookup (ELOOP past it)."""

MakeDir = Callable[[int, str], None]
"""Creates directory ``name`` in the directory descriptor given (the caller's mode and owner)."""


_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "i686": 437, "armv7l": 437, "ppc64le": 437,
                "s390x": 437, "riscv64": 437}.get(os.uname().machine)
_have_openat2 = _SYS_OPENAT2 is not None and not (os.environ.get("CTK_NO_OPENAT2", "")
                                                   or os.environ.get("CTK_BUILD_NO_OPENAT2", ""))


@functools.cache
def _open_how() -> Any:
    """``struct open_how``, defined at the first openat2 (ctypes is loaded then: ctk_shared.libc)."""
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    return OpenHow


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """``openat2(2)``; raises OSError like ``os.open`` (ENOSYS when the kernel predates 5.6)."""
    if _SYS_OPENAT2 is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    import ctypes

    how = _open_how()(flags, 0, resolve)
    fd = libc().syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(path)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``fstatat(AT_SYMLINK_NOFOLLOW)``, or None when nothing is there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(dir_fd: int, name: str, st: os.stat_result) -> None:
    """Remove whatever ``name`` is (a directory with its contents, fd-based, never following a link)."""
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based implementation: symlink-attack resistant
    else:
        os.unlink(name, dir_fd=dir_fd)


def default_mkdir(dir_fd: int, name: str) -> None:
    """A missing parent as Docker makes it: 0755, root-owned."""
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    os.chmod(name, 0o755, dir_fd=dir_fd)  # whatever the umask


def path_parts(path: str) -> list[str]:
    """The components of ``path`` without empty ones and ``.`` (``..`` is kept: it is resolved, not dropped)."""
    return [p for p in path.split("/") if p and p != "."]


class Root:
    """A directory that every lookup made through it stays inside, whatever links the tree holds.

    Owns one descriptor of the root; close it (or use ``with``). Returned descriptors belong to the caller.
    """

    def __init__(self, path: str | None = None, *, fd: int | None = None) -> None:
        if fd is None:
            assert path is not None
            fd = os.open(path, O_DIR)
        self.fd = fd
        self._host: str | None = None

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- lookups --------------------------------------------------------------------------------
    def open_dir(self, path: str, *, create: bool = False, make: MakeDir = default_mkdir,
                 follow: bool = True) -> int:
        """A descriptor of the directory ``path`` (in-root; absolute or relative to the root).

        Symlinks on the way are followed inside the root (``follow=False``: any symlink is ELOOP), ``..``
        stops at the root. With ``create``, missing directories are made by ``make`` (also where a dangling
        link points, as ``mkdir -p`` in a chroot would). Raises FileNotFoundError, NotADirectoryError
        (a non-directory is in the way) or OSError(ELOOP).
        """
        global _have_openat2
        parts = path_parts(path)
        if not parts:
            return os.dup(self.fd)
        if _have_openat2:
            resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (0 if follow else RESOLVE_NO_SYMLINKS)
            try:
                return openat2(self.fd, "/".join(parts), O_DIR, resolve)
            except FileNotFoundError:
                if not create:
                    raise
            except OSError as e:
                if e.errno == errno.ENOSYS:
                    _have_openat2 = False
                elif e.errno not in (errno.EAGAIN, errno.EXDEV):  # EAGAIN: a rename raced the lookup
                    raise
        return self._walk(parts, create, make, follow)

    def _walk(self, parts: list[str], create: bool, make: MakeDir, follow: bool) -> int:
        """The same lookup one component at a time with O_NOFOLLOW (no openat2, or creating on the way)."""
        stack = [os.dup(self.fd)]
        links = 0
        try:
            while parts:
                name = parts.pop(0)
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                st = lstat_at(stack[-1], name)
                if st is None:
                    if not create:
                        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
                    make(stack[-1], name)
                elif stat.S_ISLNK(st.st_mode):
                    links += 1
                    if not follow or links > MAX_LINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                    parts[:0] = path_parts(target)
                    continue
                elif not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
                stack.append(os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=stack[-1]))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def lookup(self, path: str, *, follow_last: bool) -> tuple[int, str | None, os.stat_result | None]:
        """``(parent descriptor, name, lstat or None when missing)`` of ``path`` inside the root: links before
        the last component are followed inside the root, the last one too with ``follow_last`` (its target
        looked up again, absolute ones from the root). ``name`` None means the descriptor is the entry itself
        (the root, or a path ending in ``..``). The caller owns the descriptor; errors as :meth:`open_dir`."""
        for _ in range(MAX_LINKS + 1):
            parts = path_parts(path)
            if not parts or parts[-1] == "..":
                fd = self.open_dir(path)
                return fd, None, os.fstat(fd)
            parent = "/".join(parts[:-1])
            pfd = self.open_dir(parent)
            st = lstat_at(pfd, parts[-1])
            if st is None or not follow_last or not stat.S_ISLNK(st.st_mode):
                return pfd, parts[-1], st
            target = os.readlink(parts[-1], dir_fd=pfd)
            os.close(pfd)
            path = target if target.startswith("/") else f"{parent}/{target}"
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)

    def is_dir(self, path: str) -> bool:
        """Is ``path`` (links followed inside the root) a directory?"""
        try:
            fd = self.open_dir(path)
        except OSError:
            return False
        os.close(fd)
        return True

    def path_of(self, fd: int) -> str:
        """The in-root absolute path of directory descriptor ``fd`` (one obtained through this root)."""
        if self._host is None:
            self._host = os.readlink(f"/proc/self/fd/{self.fd}")
        host = os.readlink(f"/proc/self/fd/{fd}")
        if host == self._host:
            return "/"
        if not host.startswith(self._host.rstrip("/") + "/"):
            raise OSError(errno.EXDEV, "directory is not below the root", host)
        return host[len(self._host.rstrip("/")):]


def at_path(dir_fd: int, name: str) -> str:
    """A path naming ``name`` in ``dir_fd`` for the few calls Python offers no ``dir_fd`` for
    (``lsetxattr``): /proc/self/fd/N is a magic link to exactly that directory, and the last component is
    then not followed by the ``l*`` call."""
    return f"/proc/self/fd/{dir_fd}/{name}"
