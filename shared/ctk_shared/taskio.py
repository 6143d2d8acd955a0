"""FIFOs for a task's stdio, made and opened the way containerd's Go client does (``cio.NewFIFOSetInDir``).

The shim opens the FIFO paths given to ``Tasks.Create``/``Exec`` itself; the client must already have its ends
open, or the shim's opens race with ours. Recipe (notes/containerd.md §3): mkfifo all three under a fresh
directory; open stdout and stderr ``O_RDONLY|O_NONBLOCK`` (a blocking open would wait for the shim) and
stdin ``O_RDWR`` (no ENXIO, never blocks); then create the task::

    with FifoSet(fifo_dir, container_id, stdin=False, terminal=False) as io:
        client.tasks.create(container_id, mounts, **io.uris())
        client.tasks.start(container_id)
        copy_output({io.stdout_fd: sys.stdout.buffer, io.stderr_fd: sys.stderr.buffer})

The shim holds a reader of its own on stdout/stderr, so a container never gets EPIPE when nobody reads,
but it blocks once ~64 KiB are unread: detached containers should use ``file://``/``binary://`` IO.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import BinaryIO, Self, TypedDict, cast

DEFAULT_FIFO_DIR = "/run/containerd/fifo"  # defaults.DefaultFIFODir
CHUNK = 32 << 10  # as the Go client's copy buffers
_POLL_INTERVAL_MS = 100  # how often copy_output looks at ``stop``
_FINAL_PASSES = 64  # after ``stop`` without a grace: at most this many more rounds of reading what is readable

Sink = BinaryIO | Callable[[bytes], None]


def _set_blocking(fd: int, blocking: bool) -> int:
    os.set_blocking(fd, blocking)
    return fd


class TaskIO(TypedDict):
    """The IO keyword arguments of ``tasks.create``/``tasks.exec`` (see :meth:`FifoSet.uris`)."""

    stdin: str
    stdout: str
    stderr: str
    terminal: bool


class FifoSet:
    """stdin/stdout/stderr FIFOs for one process, opened on our side.

    ``stdin_path``/``stdout_path``/``stderr_path`` are what to pass to the task ("" when unused: no stdin
    unless asked; no stderr with a terminal, where everything comes on stdout). ``stdout_fd``/``stderr_fd``
    are non-blocking read ends (``None`` when unused): pump them with :func:`copy_output`, which polls, rather
    than ``os.read`` directly, since a FIFO read before the shim's writer arrives returns EOF. ``stdin_fd``
    is a blocking write end. The process sees EOF on stdin only when every writer of the FIFO is gone: ours
    (:meth:`close_stdin`, in every attached client) **and** the shim's own, which it drops on
    ``tasks.close_io`` — so do both, after the task has started.
    :meth:`close` closes everything and removes the directory (not the paths of an :meth:`attach`).
    """

    def __init__(self, base_dir: str = DEFAULT_FIFO_DIR, id: str = "io", *, stdin: bool = False,
                 terminal: bool = False) -> None:
        self.terminal = terminal
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None
        os.makedirs(base_dir, mode=0o700, exist_ok=True)
        self.dir: str | None = _private_dir(base_dir)
        try:
            self.stdin_path = os.path.join(self.dir, f"{id}-stdin") if stdin else ""
            self.stdout_path = os.path.join(self.dir, f"{id}-stdout")
            self.stderr_path = "" if terminal else os.path.join(self.dir, f"{id}-stderr")
            for path in (self.stdin_path, self.stdout_path, self.stderr_path):
                if path:
                    os.mkfifo(path, 0o700)
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        if self.stdout_path:
            self.stdout_fd = os.open(self.stdout_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if self.stderr_path:
            self.stderr_fd = os.open(self.stderr_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if self.stdin_path:
            self.stdin_fd = _set_blocking(os.open(self.stdin_path, os.O_RDWR | os.O_CLOEXEC), True)

    @classmethod
    def attach(cls, stdin: str, stdout: str, stderr: str, *, terminal: bool = False) -> FifoSet:
        """Reopen the FIFOs of an existing process (paths from ``tasks.get()``); "" or a URI (``file://``,
        ``binary://``) means no FIFO for that stream. The files are left in place on :meth:`close`."""
        self = cls.__new__(cls)
        self.terminal = terminal
        self.dir = None
        self.stdin_fd = self.stdout_fd = self.stderr_fd = None

        def fifo(p: str) -> str:
            return p if p and "://" not in p else ""

        self.stdin_path, self.stdout_path, self.stderr_path = fifo(stdin), fifo(stdout), fifo(stderr)
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def uris(self) -> TaskIO:
        """Keyword arguments for ``tasks.create``/``tasks.exec``: stdin, stdout, stderr, terminal."""
        return {"stdin": self.stdin_path, "stdout": self.stdout_path, "stderr": self.stderr_path,
                "terminal": self.terminal}

    def output_fds(self) -> list[int]:
        return [fd for fd in (self.stdout_fd, self.stderr_fd) if fd is not None]

    def close_stdin(self) -> None:
        """Close our write end of stdin. The process reads EOF once ``tasks.close_io`` has been called too
        (and no other client holds a writer)."""
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self.close_stdin()
        for name in ("stdout_fd", "stderr_fd"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        d, self.dir = self.dir, None
        if d:
            _remove_dir(d)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _writer(sink: Sink) -> Callable[[bytes], None]:
    if callable(sink) and not hasattr(sink, "write"):
        return sink

    stream = cast(BinaryIO, sink)  # it has write: the stream member of Sink

    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write


def copy_output(fds: Mapping[int, Sink], stop: threading.Event | None = None, *,
                grace: float | None = None) -> bool:
    """Copy each FIFO read end in ``fds`` to its sink (a binary file, or a callable taking bytes) until every
    one reaches EOF, i.e. the process and all holders of its output have closed it (the shim closes its
    writer once it has copied everything the process wrote into its pipe). Returns True when every fd
    reached EOF, False when the copy ended early (``stop``).

    ``stop`` without ``grace`` ends the copy early: whatever is readable at that moment is still copied.

    ``stop`` with ``grace`` (seconds) means "the process has exited": the copy still goes on to EOF, since
    the shim publishes the exit without waiting for its copy from the process's pipe into the FIFO
    (containerd 1.6 waits for that copy only when the process is deleted), so up to a pipe's worth of
    output can arrive after the exit. It gives up only when nothing at all has arrived for ``grace``
    seconds since the exit (or since the last data after it): some other process (a background child of
    an exec) still holds the output open. The fds are not closed.
    """
    writers = {fd: _writer(sink) for fd, sink in fds.items()}
    poller = select.poll()
    for fd in writers:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    final_passes = 0
    quiet_since: float | None = None  # after the exit: when data last arrived (or the exit, if none since)
    while writers:
        stopping = stop is not None and stop.is_set()
        if not stopping:
            timeout = _POLL_INTERVAL_MS
        elif grace is None:
            timeout = 0
        else:
            now = time.monotonic()
            if quiet_since is None:
                quiet_since = now
            left = quiet_since + grace - now
            if left <= 0:
                return False
            timeout = max(1, min(_POLL_INTERVAL_MS, int(left * 1000)))
        try:
            ready = poller.poll(timeout)
        except InterruptedError:
            continue
        for fd, events in ready:
            if fd not in writers:
                continue
            if events & select.POLLNVAL:
                poller.unregister(fd)
                del writers[fd]
                continue
            if _drain(fd, writers, poller) and quiet_since is not None:
                quiet_since = time.monotonic()
        if stopping and grace is None:
            final_passes += 1
            if not ready or final_passes >= _FINAL_PASSES:
                return False  # nothing more is readable right now (or a writer that never pauses)
    return True


def _drain(fd: int, writers: dict[int, Callable[[bytes], None]], poller: select.poll) -> bool:
    """Read what ``fd`` has now; drop it from ``writers`` on EOF. True if any data (or EOF) came."""
    got = False
    while True:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return got
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            data = b""  # EIO and the like: treat as end of stream
        got = True
        if not data:
            poller.unregister(fd)
            del writers[fd]
            return got
        writers[fd](data)
        if len(data) < CHUNK:
            return got  # most likely empty now; the next poll says whether more came meanwhile


def _private_dir(base_dir: str) -> str:
    """A new directory only we can use under ``base_dir`` (``tempfile.mkdtemp``'s promise, without its import
    and its ``random``: a run's FIFOs are made on every foreground run)."""
    while True:
        path = os.path.join(base_dir, f"tmp{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _remove_dir(path: str) -> None:
    """Remove the FIFO directory: its few entries, then itself; anything else there falls back to rmtree."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
