"""Foreground containers: print their output while they run and return their exit status.

Without ``-i``/``-t`` the output goes through the json-file logger like a detached container's, and the
CLI follows the log: one path for both, so foreground runs are logged and restart policies work the same.
With ``-i`` or ``-t`` the CLI attaches to FIFOs, copies stdin in and output out, and writes the log itself.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from ctk_shared import dataroot
from ctk_shared.errors import CtkError

from . import labels as L
from . import lifecycle, state

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.taskio import FifoSet

LOGGER_GRACE = 0.3  # the logger flushes the last lines just after the process exits
OUTPUT_GRACE = 2.0  # after an exit: how long the output may pause before we stop waiting for its EOF (Docker: 2 s)


class _SignalProxy:
    """Forward Ctrl-C and SIGTERM to the container, as ``docker run --sig-proxy`` does."""

    def __init__(self, client: Client, cid: str) -> None:
        self.client, self.cid = client, cid
        self.old: dict[int, object] = {}

    def __enter__(self) -> _SignalProxy:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            self.old[s] = signal.signal(s, self._forward)
        return self

    def _forward(self, signum: int, _frame: object) -> None:
        try:
            self.client.tasks.kill(self.cid, signum)
        except CtkError:
            pass

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


def _wait_thread(client: Client, cid: str) -> tuple[threading.Event, dict[str, int], list[float]]:
    done = threading.Event()
    result: dict[str, int] = {}
    when: list[float] = []

    def wait() -> None:
        try:
            result["code"] = client.tasks.wait(cid).exit_status
        except CtkError:
            result["code"] = 255
        when.append(time.monotonic())
        done.set()

    threading.Thread(target=wait, daemon=True, name="ctk-wait").start()
    return done, result, when


def run_logged(client: Client, gopts: GlobalOptions, c: Container) -> int:
    """Start ``c`` with the logger and stream its log to stdout/stderr until it exits.

    Without a restart policy the task is deleted as soon as it exits: the shim then closes the logger's pipes
    and waits for it to finish, so the log is complete when the delete returns and nothing is left to guess.
    """
    from .logfile import follow_records, format_record

    keep_task = c.labels.get(L.RESTART_POLICY, "no") not in ("", "no")
    lifecycle.start_task(client, gopts, c, detached=False)
    done = threading.Event()
    result: dict[str, int] = {}
    when: list[float] = []

    def wait() -> None:
        try:
            result["code"] = client.tasks.wait(c.id).exit_status
            if not keep_task:
                lifecycle.delete_task(client, c.id)
        except CtkError:
            result.setdefault("code", 255)
        when.append(time.monotonic())
        done.set()

    threading.Thread(target=wait, daemon=True, name="ctk-wait").start()
    log = c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id))

    def running() -> bool:
        if not done.is_set():
            return True
        return keep_task and time.monotonic() < when[0] + LOGGER_GRACE  # the logger may still be writing

    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    with _SignalProxy(client, c.id):
        for rec in follow_records(log, tail=None, since=None, until=None, is_running=running, check_every=0.01,
                                  wake=done):
            stream, data = format_record(rec, False)
            out.get(stream, sys.stdout.buffer).write(data)
            out.get(stream, sys.stdout.buffer).flush()
        done.wait()
    return result.get("code", 255)


def run_attached(client: Client, gopts: GlobalOptions, c: Container, *, stdin_open: bool, tty: bool) -> int:
    """Start ``c`` on FIFOs: stdin from ours, output to ours and to the json-file log."""
    from ctk_shared.taskio import FifoSet, copy_output

    from .logfile import JsonLogWriter

    fifo_dir = state.namespace_dir(gopts.data_root, client.namespace) / "fifo"
    dataroot.makedirs(gopts.data_root, fifo_dir)  # the data root 0710 first
    fifos = FifoSet(str(fifo_dir), c.id, stdin=stdin_open, terminal=tty)
    log = JsonLogWriter(c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id)))
    term = Terminal(client, c.id, tty=tty, stdin_open=stdin_open)
    try:
        lifecycle.start_task(client, gopts, c, terminal=tty, detached=False, io={
            "stdin": fifos.stdin_path, "stdout": fifos.stdout_path, "stderr": fifos.stderr_path})
        done, result, _ = _wait_thread(client, c.id)
        term.attach()
        if stdin_open:
            threading.Thread(target=pump_stdin, args=(client, c.id, fifos), daemon=True).start()

        def sink(stream: str, target: object):  # type: ignore[no-untyped-def]
            def write(data: bytes) -> None:
                target.write(data)  # type: ignore[attr-defined]
                target.flush()  # type: ignore[attr-defined]
                log.write(stream, data)
            return write

        sinks = {fifos.stdout_fd: sink("stdout", sys.stdout.buffer)}
        if fifos.stderr_fd is not None and fifos.stderr_fd >= 0:
            sinks[fifos.stderr_fd] = sink("stderr", sys.stderr.buffer)
        with _SignalProxy(client, c.id) if not term.raw else _NoProxy():
            # to EOF, not to the exit: the shim may still be copying the process's last output into the FIFO
            copy_output(sinks, done, grace=OUTPUT_GRACE)
            done.wait()
        return result.get("code", 255)
    finally:
        term.restore()
        log.close()
        fifos.close()


class _NoProxy:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Terminal:
    """Our terminal while attached to a process with a TTY (``run -t``, ``exec -t``): raw mode when we also
    feed its stdin from a terminal (keys such as Ctrl-C go to the process, not to us), and the process's
    window size following ours on every SIGWINCH."""

    def __init__(self, client: Client, cid: str, *, tty: bool, stdin_open: bool, exec_id: str = "") -> None:
        self.client, self.cid, self.exec_id, self.tty = client, cid, exec_id, tty
        self.raw = tty and stdin_open and sys.stdin.isatty()
        self._saved: list | None = None  # type: ignore[type-arg]
        self._old_handler: object = None

    def resize(self, *_a: object) -> None:
        try:
            cols, rows = os.get_terminal_size(sys.stdout.fileno())
            self.client.tasks.resize(self.cid, cols, rows, self.exec_id)
        except (OSError, CtkError):
            pass

    def attach(self) -> None:
        """Call once the process exists."""
        if self.tty:
            self.resize()
            self._old_handler = signal.signal(signal.SIGWINCH, self.resize)
        if self.raw:
            import termios
            import tty as ttymod

            self._saved = termios.tcgetattr(sys.stdin.fileno())
            ttymod.setraw(sys.stdin.fileno())

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None
        if self._old_handler is not None:
            signal.signal(signal.SIGWINCH, self._old_handler)  # type: ignore[arg-type]
            self._old_handler = None


def pump_stdin(client: Client, cid: str, fifos: FifoSet, exec_id: str = "") -> None:
    """Copy our stdin into the process's FIFO. At EOF the process reads EOF only once every writer has closed
    (ours included) and containerd was told to close its side."""
    src = sys.stdin.fileno()
    fd = fifos.stdin_fd
    try:
        while fd is not None and (chunk := os.read(src, 32768)):
            os.write(fd, chunk)
    except OSError:
        pass
    fifos.close_stdin()
    try:
        client.tasks.close_io(cid, exec_id)
    except CtkError:
        pass
