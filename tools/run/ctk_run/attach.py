"""Foreground containers: print their output while they run and return their exit status.

A foreground container without a restart policy or a health check runs on FIFOs: the CLI copies its output
out and writes the json-file log itself (with ``-i`` it also copies stdin in; a standby child logs on if the
CLI is killed, see logguard.py). ``start -a``, and a container with a restart policy or a
health check, go through the json-file logger like a detached container and the CLI follows the log, since
the logger outlives the CLI there (it applies the policy, runs the checks)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from ctk_shared import dataroot
from ctk_shared.errors import CtkError

from . import labels as L
from . import lifecycle, state

if TYPE_CHECKING:
    from collections.abc import Callable
    from signal import _HANDLER

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.decryption_keys import KeySource
    from ctk_shared.taskio import FifoSet

    from .detachkeys import Scanner

LOGGER_GRACE = 0.3  # the logger flushes the last lines just after the process exits
OUTPUT_GRACE = 2.0  # after an exit: how long the output may pause before we stop waiting for its EOF (Docker: 2 s)


class _SignalProxy:
    """Forward Ctrl-C and SIGTERM to the container, as ``docker run --sig-proxy`` does."""

    def __init__(self, client: Client, cid: str) -> None:
        self.client, self.cid = client, cid
        self.old: dict[int, _HANDLER] = {}

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
            signal.signal(s, h)


def _wait_thread(client: Client, cid: str) -> tuple[threading.Event, dict[str, int], list[float]]:
    done = threading.Event()
    result: dict[str, int] = {}
    when: list[float] = []

    def wait() -> None:
        result["code"] = lifecycle.exit_of_running(client, cid)
        when.append(time.monotonic())
        done.set()

    threading.Thread(target=wait, daemon=True, name="ctk-wait").start()
    return done, result, when


def run_logged(client: Client, gopts: GlobalOptions, c: Container, *, own_log: bool = True) -> int:
    """Start ``c`` and print its output until it exits. With ``own_log`` (``run``) and neither a restart policy
    nor a health check, on FIFOs with this CLI writing the log (:func:`run_attached`); else with the logger,
    following its log.

    Without a restart policy the task is deleted as soon as it exits: the shim then closes the logger's pipes
    and waits for it to finish, so the log is complete when the delete returns and nothing is left to guess.
    """
    from .healthcheck import LABEL as HEALTH
    from .logfile import follow_records, format_record

    keep_task = c.labels.get(L.RESTART_POLICY, "no") not in ("", "no")
    if own_log and not keep_task and HEALTH not in c.labels:
        # nothing needs a process beside the container once this CLI goes: it writes the json-file log
        # itself (``logs`` and ``attach`` from another shell follow that file), and no logger interpreter
        # starts before the task may (issue 20: ~60 ms of the run, and its CPU on a loaded machine)
        return run_attached(client, gopts, c, stdin_open=False, tty=False)
    lifecycle.start_task(client, gopts, c, detached=False)
    done = threading.Event()
    result: dict[str, int] = {}
    when: list[float] = []

    def wait() -> None:
        result["code"] = lifecycle.exit_of_running(client, c.id)
        try:
            if not keep_task:
                lifecycle.delete_task(client, c.id)
        except CtkError:
            pass
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
    from .logguard import LogGuard

    fifo_dir = state.namespace_dir(gopts.data_root, client.namespace) / "fifo"
    dataroot.makedirs(gopts.data_root, fifo_dir)  # the data root 0710 first
    fifos = FifoSet(str(fifo_dir), c.id, stdin=stdin_open, terminal=tty)
    log = JsonLogWriter(c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id)))
    term = Terminal(client, c.id, tty=tty, stdin_open=stdin_open)
    streams = {fd: name for fd, name in ((fifos.stdout_fd, "stdout"), (fifos.stderr_fd, "stderr"))
               if fd is not None and fd >= 0}
    guard: LogGuard | None = None
    try:
        guard = LogGuard(streams, log.path, fifos.dir)  # logs on if this CLI is killed
        lifecycle.start_task(client, gopts, c, terminal=tty, detached=False, io={
            "stdin": fifos.stdin_path, "stdout": fifos.stdout_path, "stderr": fifos.stderr_path})
        done, result, _ = _wait_thread(client, c.id)
        term.attach()
        if stdin_open:
            threading.Thread(target=pump_stdin, args=(client, c.id, fifos), daemon=True).start()

        log_failed: list[OSError] = []

        def sink(stream: str, target: BinaryIO) -> Callable[[bytes], None]:
            def write(data: bytes) -> None:
                target.write(data)
                target.flush()
                try:
                    log.write(stream, data)
                except OSError as e:  # a full disk: the output still reaches the terminal; say so once
                    if not log_failed:
                        sys.stderr.write(f"ctk-run: warning: writing the log of {c.id[:12]}: {e.strerror or e}\n")
                    log_failed.append(e)
            return write

        sinks: dict[int, Callable[[bytes], None]] = {}
        if fifos.stdout_fd is not None:
            sinks[fifos.stdout_fd] = sink("stdout", sys.stdout.buffer)
        if fifos.stderr_fd is not None and fifos.stderr_fd >= 0:
            sinks[fifos.stderr_fd] = sink("stderr", sys.stderr.buffer)
        with _SignalProxy(client, c.id) if not term.raw else _NoProxy():
            # to EOF, not to the exit: the shim may still be copying the process's last output into the FIFO
            copy_output(sinks, done, grace=OUTPUT_GRACE)
            done.wait()
        return result.get("code", 255)
    finally:
        term.restore()
        if guard is not None:
            guard.release()
        log.close()
        fifos.close()


DETACHED = None  # what a session returns when the user typed the detach keys


def log_path_of(gopts: GlobalOptions, namespace: str, c: Container) -> str:
    return c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, namespace, c.id))


def log_size(path: str) -> int:
    """Where a session starts following: the log's end now (what came before is ``logs``' business)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def run_terminal(client: Client, gopts: GlobalOptions, c: Container, *, detach_keys: bytes, sig_proxy: bool,
                 attach_stdin: bool = True) -> int | None:
    """``run -t`` / ``run -it`` / ``start -a`` of a container with a terminal: start it as a detached one is
    (terminal, json-file logger, input FIFO; the logger applies --rm and frees the network if we detach) and
    attach to it. The window size is set between the task's creation and its start. The exit status, or
    :data:`DETACHED` when the user detached."""
    keep_task = c.labels.get(L.RESTART_POLICY, "no") not in ("", "no")
    log = log_path_of(gopts, client.namespace, c)
    offset = log_size(log)
    stdin_open = attach_stdin and c.labels.get(L.STDIN_OPEN) == "true"
    term = Terminal(client, c.id, tty=True, stdin_open=stdin_open)
    lifecycle.start_task(client, gopts, c, before_start=term.resize)
    stdin = lifecycle.stdin_fifo(gopts, client.namespace, c) if stdin_open else ""
    return session(client, c, log=log, offset=offset, stdin=stdin, term=term, detach_keys=detach_keys,
                   sig_proxy=sig_proxy, delete_after=not keep_task, close_stdin_at_eof=True)


def start_attached(client: Client, gopts: GlobalOptions, text: str, *, interactive: bool, detach_keys: bytes,
                   keys: tuple[KeySource, ...] = ()) -> int:
    """``start -a [-i]``: start a stopped or created container and stay attached as ``run`` does; the
    container's exit status (1 after the detach keys, as Docker's attach)."""
    from .lookup import find_container
    from .ops import check_first_start

    c = find_container(client, text)
    check_first_start(client, c, keys)
    if lifecycle.has_terminal(c):
        code = run_terminal(client, gopts, c, detach_keys=detach_keys, sig_proxy=True, attach_stdin=interactive)
        return 1 if code is DETACHED else code
    if interactive and c.labels.get(L.STDIN_OPEN) == "true":
        code = run_attached(client, gopts, c, stdin_open=True, tty=False)
        if c.labels.get(L.RESTART_POLICY, "no") in ("no", ""):
            lifecycle.delete_task(client, c.id)  # keep the exit for ps; let the shim go
        return code
    # the logger, as for a detached container: the container was made to run on its own, and runs on (logged)
    # if this client is killed
    return run_logged(client, gopts, c, own_log=False)


def attach_to(client: Client, gopts: GlobalOptions, text: str, *, no_stdin: bool, sig_proxy: bool,
              detach_keys: bytes) -> int:
    """``ctk-run attach``: this terminal to a running container's terminal and input (output only for one
    without them), until it exits (its status) or the detach keys (1, as Docker's attach)."""
    from ctk_shared.errors import Conflict

    from .lookup import display_name, find_container

    c = find_container(client, text)
    task = lifecycle.task_of(client, c.id)
    if task is None or task.status not in ("running", "paused", "pausing"):
        raise Conflict("you cannot attach to a stopped container, start it first",
                       hint=f"ctk-run start -a {text}")
    tty = lifecycle.has_terminal(c)
    stdin = "" if no_stdin else lifecycle.stdin_fifo(gopts, client.namespace, c)
    if stdin and task.stdin and task.stdin != stdin:
        stdin = ""  # a foreground `run -i` feeds it from its own client: output only
    if not tty and not stdin and not no_stdin:
        sys.stderr.write(f"ctk-run: container {display_name(c)} has no terminal and no stdin to attach to (it was "
                         "not started with -t or -i): showing its output only\n")
        sys.stderr.flush()
    if tty and stdin and not sys.stdin.isatty():
        raise CtkError("the input device is not a TTY", hint="attach from a terminal, or use --no-stdin")
    log = log_path_of(gopts, client.namespace, c)
    term = Terminal(client, c.id, tty=tty, stdin_open=bool(stdin))
    code = session(client, c, log=log, offset=log_size(log), stdin=stdin, term=term, detach_keys=detach_keys,
                   sig_proxy=sig_proxy, delete_after=False, close_stdin_at_eof=False)
    return 1 if code is DETACHED else code


def session(client: Client, c: Container, *, log: str, offset: int, stdin: str, term: Terminal,
            detach_keys: bytes, sig_proxy: bool, delete_after: bool, close_stdin_at_eof: bool) -> int | None:
    """Copy our keys into the container's input FIFO (``stdin``, "" for none) and its log, from ``offset``,
    to our stdout/stderr, until it exits (its status) or the detach keys were typed (:data:`DETACHED`).

    ``delete_after``: delete the task at the exit, so the shim waits for the logger's last write before the
    log is read to its end. ``close_stdin_at_eof``: our stdin's end is the container's (``run -i``)."""
    from . import detachkeys

    done = threading.Event()
    result: dict[str, int] = {}
    detached = threading.Event()

    def wait() -> None:
        try:
            result["code"] = lifecycle.wait_exit(client, c)  # also when its logger deleted the task first
            if delete_after:
                lifecycle.delete_task(client, c.id)
        except CtkError:
            result.setdefault("code", 255)
        done.set()

    threading.Thread(target=wait, daemon=True, name="ctk-wait").start()
    fifo_fd = _open_input(stdin) if stdin else None
    try:
        term.attach()
        if fifo_fd is not None:
            scanner = detachkeys.Scanner(detach_keys) if sys.stdin.isatty() else None
            threading.Thread(target=_pump_keys, daemon=True, name="ctk-stdin", args=(
                client, c.id, fifo_fd, scanner, detached, close_stdin_at_eof)).start()
        with _SignalProxy(client, c.id) if sig_proxy and not term.raw else _NoProxy():
            _follow_log(log, offset, done, detached, grace=0.0 if delete_after else LOGGER_GRACE)
    finally:
        term.restore()
    if detached.is_set():
        sys.stderr.write("read escape sequence\n")
        sys.stderr.flush()
        return DETACHED
    done.wait()
    return result.get("code", 255)


def _open_input(path: str) -> int:
    """Our writer on the container's input FIFO. Nobody reading it (ENXIO) means its task does not take
    input any more."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise CtkError("the container does not read its input any more (its stdin was closed)",
                           hint="attach with --no-stdin to see its output") from None
        raise
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise CtkError(f"{path} is not a FIFO")
    os.set_blocking(fd, True)
    return fd


def _pump_keys(client: Client, cid: str, fd: int, scanner: Scanner | None, detached: threading.Event,
               close_at_eof: bool) -> None:
    """Our stdin into the container's input FIFO, watching for the detach keys when it is a terminal."""
    src = sys.stdin.fileno()
    try:
        while True:
            try:
                data = os.read(src, 32768)
            except OSError:
                data = b""
            if not data:
                break
            if scanner is not None:
                data = scanner.feed(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if scanner is not None and scanner.detached:
                detached.set()
                return
        if close_at_eof:  # as Docker's StdinOnce: our input's end is the container's
            try:
                client.tasks.close_io(cid)
            except CtkError:
                pass
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _follow_log(path: str, offset: int, done: threading.Event, detached: threading.Event, grace: float) -> None:
    """Write the log's records from ``offset`` on to stdout/stderr as they are appended, until ``detached``,
    or until the container exited (``done``) and nothing more came for ``grace`` seconds."""
    import json

    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    f = None
    pending = b""
    quiet_since: float | None = None
    delay = 0.002
    try:
        while not detached.is_set():
            if f is None:
                try:
                    f = open(path, "rb")
                    f.seek(offset if os.fstat(f.fileno()).st_size >= offset else 0)
                except FileNotFoundError:
                    f = None
            chunk = f.read(1 << 20) if f is not None else b""
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    try:
                        rec = json.loads(line)
                        target = out.get(rec.get("stream"), sys.stdout.buffer)
                        target.write(str(rec["log"]).encode("utf-8", errors="replace"))
                        target.flush()
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue  # a torn or foreign line: skipped, as logs does
                delay = 0.002
                quiet_since = None
                continue
            if done.is_set():
                now = time.monotonic()
                if quiet_since is None:
                    quiet_since = now
                    continue  # read once more after the exit was seen
                if now - quiet_since >= grace:
                    return
            detached.wait(delay)
            delay = min(delay * 2, 0.02)
    finally:
        if f is not None:
            f.close()


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
        self._saved: list[Any] | None = None  # termios attributes
        self._old_handler: _HANDLER = None

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
            ttymod.setraw(sys.stdin.fileno(), termios.TCSANOW)  # keys typed ahead are kept (no flush)

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None
        if self._old_handler is not None:
            signal.signal(signal.SIGWINCH, self._old_handler)
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
