"""A foreground run's log if its CLI dies: a plain ``run`` (and ``-i``) has no logger process, the CLI copies
the container's output from FIFOs into the json-file log itself (issue 20). Were the CLI killed (SIGKILL, a
crash), nothing would read those FIFOs any more: the container's output would be lost and, once a pipe's worth
(64 KiB) is written, the container would block for ever. So the CLI forks a small child before the task starts
(no new interpreter, no imports: a copy of this process), which holds the same FIFO read ends and waits on a
pipe. When the CLI ends normally it tells the child to go; if the CLI dies instead, the child sees the pipe's
end and becomes the container's logger until its output ends, as ctk-run-logger would have been. It lives no
longer than the run (no daemon)."""
from __future__ import annotations

import gc
import os
import select
import signal
import sys

READ_SIZE = 32768
FAILURE_NOTE = "standby-error"  # in the FIFO directory, when the standby child failed


class LogGuard:
    """``LogGuard(streams, log_path, fifo_dir)`` forks the standby child; :meth:`release` ends it."""

    def __init__(self, streams: dict[int, str], log_path: str, fifo_dir: str | None) -> None:
        from .logfile import JsonLogWriter  # loaded here, not in the child

        self._w = -1
        self._pid = 0
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            # no cyclic GC in the copy of a process with grpc's threads: a collection could finalize a grpc
            # object, whose C core is not usable in a forked child; reference counting frees the records
            gc.disable()
            code = 0
            try:
                os.close(w)
                _standby(r, streams, log_path, fifo_dir, JsonLogWriter)
            except BaseException as e:  # noqa: BLE001 - a child of a fork must never return into the CLI's code
                code = 1
                _note_failure(fifo_dir, e)
            finally:
                os._exit(code)
        os.close(r)
        self._w, self._pid = w, pid

    def release(self) -> None:
        """The CLI copied everything itself: the child goes without touching anything."""
        if self._w < 0:
            return
        try:
            os.write(self._w, b"x")
        except OSError:
            pass
        os.close(self._w)
        self._w = -1
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass


def _note_failure(fifo_dir: str | None, e: BaseException) -> None:
    """Leave why the standby child failed in its FIFO directory (``standby-error``), which the failure keeps:
    with its stderr on /dev/null there is nowhere else to say it."""
    if not fifo_dir:
        return
    from ctk_shared.outputs import write_owned  # the CLI has it loaded: no import in the child

    try:
        write_owned(os.path.join(fifo_dir, FAILURE_NOTE), f"{type(e).__name__}: {e}\n".encode(errors="replace"),
                    mode=0o600)
    except Exception:  # noqa: BLE001 - nowhere left to report to
        pass


def _standby(r: int, streams: dict[int, str], log_path: str, fifo_dir: str | None, writer_class: type) -> None:
    os.setsid()  # the terminal's signals (Ctrl-C, hang-up) are for the CLI, not for us
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # never the user's terminal
    keep = set(streams) | {r}
    for name in os.listdir("/proc/self/fd"):  # above all the stdin FIFO's writer: the container must see its EOF
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    if os.read(r, 1):
        return  # released: the CLI did it all
    # the CLI is gone: log the rest of the output, until every stream ends
    writer = writer_class(log_path)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    left = dict(streams)
    while left:
        for fd, _ev in poller.poll(1000):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                try:
                    writer.write(left[fd], data)
                except OSError:
                    pass  # a full disk: keep draining, so the container never blocks
            else:
                poller.unregister(fd)
                del left[fd]
    try:
        writer.close()
    except OSError:
        pass
    if fifo_dir:
        import shutil

        shutil.rmtree(fifo_dir, ignore_errors=True)
