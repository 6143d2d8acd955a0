"""The one place that decides how ctk writes a file it was told to write, or a file it keeps for itself.

Renaming a finished temp file over the destination is the right way to write a regular file (a failure never
leaves half a file under the real name), and the wrong way to write anything else: ``save -o /dev/null`` run
as root once replaced the machine's ``/dev/null`` with a tar, and every container start failed after that.
So the destination is looked at first, and every command goes through here.

**Named outputs** (:func:`open_output`, :func:`write_output`): paths a user names (``ctk-pull save -o``,
``ctk-build -o dest=`` and ``--digestfile``, ``ctk-crypt keygen -o``, the registry auth file).

- ``-``: stdout, where the command allows it.
- missing, or a regular file: written to a temp file created with O_EXCL in the same directory, fsynced,
  then renamed over the name; the temp file is removed on failure. An existing file keeps its mode (and its
  owner, where we may set it) unless the command asks for a fixed mode (0600 for keys and credentials).
  Like any atomic save, this gives the name a new inode: other hard links keep the old bytes.
- a symbolic link: resolved, and these rules apply to the target; the link itself stays. ``docker save -o``
  (Go's ``os.Create``) follows the link too but truncates the target in place; we replace the target whole.
- the file that already is our stdout or stderr (``/dev/stdout`` is ``/proc/self/fd/1``): the bytes go into
  that descriptor, so whatever the shell set up (a pipe, ``>>`` on a file, a terminal) is honoured.
- a character or block device, or a FIFO: opened for writing without O_CREAT/O_TRUNC and streamed into;
  never renamed over. A socket cannot be opened at all, and a directory is an error.

**Owned files** (:func:`open_owned`, :func:`write_owned`): files ctk keeps for itself under ``--data-root``
and its other state directories (logs, name locks, JSON state). A symbolic link planted at such a name is
never followed (O_NOFOLLOW; temp files are created with O_EXCL), and only a regular file is used, so a link
or a FIFO placed there cannot redirect or block a write that runs as root.

This module is imported by the per-container log writer, so it imports only small standard modules at the
top (``errno``, ``os``, ``stat``, ``sys``, ``contextlib``).
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from contextlib import contextmanager

from .errors import AlreadyExists, CtkError, InvalidArgument, NotFound, PermissionDenied, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the log writer's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

_NEW_FILE_MODE = 0o666  # what os.Create (docker save -o) asks for; the umask applies


def _kind(mode: int) -> str:
    """A file type in words, for error messages."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return word
    return "a special file"


def _os_error(doing: str, e: OSError) -> CtkError:
    """An OSError as the matching CtkError with one readable line."""
    text = f"{doing}: {e.strerror or e}"
    if isinstance(e, PermissionError):
        return PermissionDenied(text)
    if isinstance(e, FileNotFoundError):
        return NotFound(text)
    return CtkError(text)


def _discard(tmp: str) -> None:
    """Remove a temp file of a write that failed (it may never have been created)."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def _std_fd(st: os.stat_result) -> int | None:
    """1 or 2 when ``st`` is the very file our stdout or stderr is open on, else None."""
    for fd in (1, 2):
        try:
            other = os.fstat(fd)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


@contextmanager
def open_output(dest: str, *, mode: int | None = None, exclusive: bool = False, allow_stdout: bool = True,
                fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write the named output ``dest`` into, following the rules in the module docstring.

    ``mode``: the exact mode of the file (None: an existing file keeps its mode, a new one gets 0666 less
    the umask). ``exclusive``: an existing regular file is an error, not replaced (keys are never silently
    overwritten). The output is complete only when the ``with`` block ends without an exception.
    """
    if dest == "-":
        if not allow_stdout:
            raise UsageError("this output cannot be `-` (stdout)")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if not dest:
        raise UsageError("an output path is empty")
    try:
        st: os.stat_result | None = os.stat(dest)  # follows links: the rules apply to the target
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _os_error(f"writing {dest}", e) from None
    if st is None:
        with _replace(dest, os.path.realpath(dest), None, mode, exclusive, fsync) as f:
            yield f
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot write {dest}: it is a directory", hint="give a file name")
    if stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"cannot write {dest}: it is a socket")
    fd = _std_fd(st)
    if fd is not None:  # /dev/stdout and friends: into the descriptor itself, as the shell set it up
        sys.stdout.flush()
        sys.stderr.flush()
        with os.fdopen(os.dup(fd), "wb") as f:
            yield f
        return
    if stat.S_ISREG(st.st_mode):
        if exclusive:
            raise AlreadyExists(f"{dest} exists", hint="choose another name or remove the old file")
        target = os.path.realpath(dest)
        try:
            same = os.stat(target)
        except OSError:
            same = None
        if same is None or (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
            # a /proc/PID/fd link to a deleted or foreign file: there is no name to rename over
            raise InvalidArgument(f"cannot write {dest}: it does not lead to a file name that can be replaced")
        with _replace(dest, target, st, mode, exclusive, fsync) as f:
            yield f
        return
    with _stream(dest) as f:  # character/block device or FIFO
        yield f


def write_output(dest: str, data: bytes, *, mode: int | None = None, exclusive: bool = False,
                 allow_stdout: bool = True) -> None:
    """:func:`open_output` for a small, already complete payload (a digest file, a key, a config)."""
    with open_output(dest, mode=mode, exclusive=exclusive, allow_stdout=allow_stdout) as f:
        f.write(data)


@contextmanager
def _stream(dest: str) -> Iterator[BinaryIO]:
    """Write into an existing device or FIFO without creating, truncating or replacing it.

    Opening a FIFO waits for a reader, as a shell redirection does."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise _os_error(f"opening {dest} for writing", e) from None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):  # swapped since we looked: do not write over it
        os.close(fd)
        raise InvalidArgument(f"{dest} changed into {_kind(st.st_mode)} while opening it; not writing")
    with os.fdopen(fd, "wb") as f:
        yield f


@contextmanager
def _replace(dest: str, target: str, old: os.stat_result | None, mode: int | None, exclusive: bool,
             fsync: bool) -> Iterator[BinaryIO]:
    """Write ``target`` (a regular file or a missing name) through a temp file renamed over it at the end."""
    directory, base = os.path.split(target)
    if not os.path.isdir(directory or "."):
        raise NotFound(f"cannot write {dest}: directory {directory} does not exist")
    create_mode = _NEW_FILE_MODE if mode is None and old is None else 0o600  # fchmod'ed below
    tmp, fd = _create_temp(directory, base, create_mode, f"writing {dest}")
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            elif old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, old.st_uid, old.st_gid)
                    except PermissionError:
                        pass  # not root: the file becomes ours, as any editor's save would make it
            f = os.fdopen(fd, "wb")
        except OSError as e:
            os.close(fd)
            raise _os_error(f"writing {dest}", e) from None
        with f:
            yield f  # the caller's own errors pass through unchanged
            try:
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            except OSError as e:
                raise _os_error(f"writing {dest}", e) from None
        _check_still_replaceable(dest, target, exclusive)
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise _os_error(f"writing {dest}", e) from None
    except BaseException:
        _discard(tmp)
        raise


def _check_still_replaceable(dest: str, target: str, exclusive: bool) -> None:
    """Just before the rename: the name must still be missing or a regular file (a device node could have
    been made there while we wrote; renaming over it is exactly what this module exists to prevent)."""
    try:
        now = os.lstat(target)
    except FileNotFoundError:
        return
    if exclusive:
        raise AlreadyExists(f"{dest} appeared while writing it", hint="choose another name or remove it")
    if not stat.S_ISREG(now.st_mode):
        raise InvalidArgument(f"{dest} became {_kind(now.st_mode)} while writing it; not replacing it")


def _create_temp(directory: str, base: str, mode: int, doing: str) -> tuple[str, int]:
    """A new file next to the destination: O_EXCL, so neither an existing file nor a planted link is used."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.ctk-tmp")
        try:
            return tmp, os.open(tmp, flags, mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise _os_error(doing, e) from None
    raise CtkError(f"{doing}: cannot create a temporary file in {directory}")


# -- files ctk owns ------------------------------------------------------------------------------------


def open_owned(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a file ctk keeps for itself: never through a symbolic link, only a regular file.

    Returns a blocking descriptor (O_NONBLOCK is used only so that a FIFO planted at ``path`` fails
    instead of hanging the opener). Raises :class:`InvalidArgument` for a link or a non-regular file;
    other OSErrors propagate for the caller to word."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:  # the last component is a symbolic link
            raise InvalidArgument(f"{path} is a symbolic link; ctk does not follow links in its own files",
                                  hint="remove the link") from None
        if e.errno == errno.ENXIO and os.path.exists(path):  # a FIFO without a reader
            raise InvalidArgument(f"{path} is not a regular file; ctk does not write through it",
                                  hint="remove it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidArgument(f"{path} is {_kind(st.st_mode)}, not a regular file; ctk does not write through it",
                              hint="remove it")
    os.set_blocking(fd, True)
    return fd


def write_owned(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, fsync: bool = False) -> None:
    """Replace the owned file ``path`` whole (temp file with O_EXCL, then rename), so a reader never sees
    half a record and a planted link is replaced, not followed. OSErrors propagate."""
    stream_owned(path, (data,), mode=mode, fsync=fsync)


def stream_owned(path: str | os.PathLike[str], chunks: Iterable[bytes], *, mode: int = 0o644,
                 fsync: bool = False) -> None:
    """:func:`write_owned` for content that arrives in pieces (a blob read from containerd): the name gets
    the file only once every chunk is written; on any failure the temp file goes and the name is untouched."""
    directory, base = os.path.split(os.fspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            os.fchmod(fd, mode)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def rename_owned(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, src_dir_fd: int | None = None,
                 dst_dir_fd: int | None = None) -> None:
    """Move an entry ctk made itself (a volume directory built under a temp name, a copied tree's entry) to a
    name that must be free: never over anything already there (a file, a device, a link planted meanwhile),
    so a rename can neither destroy data nor write through a special file. Anything but a directory gets a
    hard link at the new name (which fails if the name is taken) and loses the old one: no ctypes, which is
    ~2 ms of a command's start (every ``ctk-run`` create moves its lock file this way). A directory, or a
    filesystem without hard links, gets ``renameat2(RENAME_NOREPLACE)`` where the kernel and filesystem have
    it, else a check just before a plain rename. Links in the last component are never followed (neither
    link nor rename follows them). Raises FileExistsError, or other OSErrors."""
    try:
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    except OSError as e:
        # EPERM: a directory (or links refused); the others: a filesystem or a count that will not link
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise  # FileExistsError: something is there already
    else:
        os.unlink(src, dir_fd=src_dir_fd)
        return
    import ctypes

    from .libc import libc

    at_fdcwd = -100
    sfd = at_fdcwd if src_dir_fd is None else src_dir_fd
    dfd = at_fdcwd if dst_dir_fd is None else dst_dir_fd
    try:
        renameat2 = libc().renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(sfd, os.fsencode(src), dfd, os.fsencode(dst), 1) == 0:  # 1: RENAME_NOREPLACE
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), os.fspath(dst))
    try:
        os.lstat(dst, dir_fd=dst_dir_fd)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
