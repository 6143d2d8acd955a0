"""ctk-run-logger: the logging binary containerd's shim starts for a container (``binary://`` log URI).

The shim passes the container's stdout on fd 3, stderr on fd 4 and a ready pipe on fd 5, an environment of
only CONTAINER_ID and CONTAINER_NAMESPACE, and each URI query key and value as arguments (in random order).
Output goes to the json-file log. When both streams end the container has exited: the logger records that
and applies the restart policy (see restart.py). Kept small: grpc is imported only for that decision.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from urllib.parse import quote

READ_SIZE = 32768


def build_log_uri(logger_path: str, log_path: str, address: str | None) -> str:
    q = f"log={quote(log_path, safe='/')}"
    if address:
        q += f"&address={quote(address, safe='/')}"
    return f"binary://{quote(logger_path, safe='/')}?{q}"


def _args(argv: list[str]) -> dict[str, str]:
    pairs = argv[1:]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}


def _mark_started(address: str, namespace: str, cid: str) -> None:
    """A task started (by ctk or by containerd's restart monitor): note when, for ps and inspect."""
    from datetime import datetime, timezone

    from ctk_shared.containerd import Client

    from . import labels as L

    try:
        Client(address, namespace).containers.update_labels(
            cid, {L.STARTED_AT: datetime.now(timezone.utc).isoformat(timespec="microseconds")})
    except Exception as e:  # noqa: BLE001 - background process
        sys.stderr.write(f"ctk-run-logger: {e}\n")


def main() -> None:
    from .logfile import JsonLogWriter

    args = _args(sys.argv)
    log_path = args.get("log")
    if not log_path:
        sys.exit("ctk-run-logger: no log path (this program is started by containerd's shim)")
    writer = JsonLogWriter(log_path)
    stop = {"term": False}

    def on_term(*_a: object) -> None:
        stop["term"] = True

    signal.signal(signal.SIGTERM, on_term)
    streams = {3: "stdout", 4: "stderr"}
    address = args.get("address")
    cid = os.environ.get("CONTAINER_ID", "")
    if address and cid:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the child below reaps itself
        if os.fork() == 0:  # the label update needs grpc: do it in a short-lived child, keep this process small
            for fd in (3, 4, 5):
                try:
                    os.close(fd)
                except OSError:
                    pass
            _mark_started(address, os.environ.get("CONTAINER_NAMESPACE", "default"), cid)
            os._exit(0)
    try:
        os.close(5)  # ready: the shim may start the container
    except OSError:
        pass
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_fds = set(streams)
    watch = _ExitWatch(os.getppid())
    decided = False
    term_at = 0.0
    while open_fds:
        if watch.fd is None:
            watch.find(poller)
            if watch.exited and address and cid and not decided:  # it was over before we looked
                decided = True
                _decide(address, cid)
        try:
            events = poller.poll(250)
        except InterruptedError:
            events = []
        for fd, _ev in events:
            if fd == watch.fd:  # the container's init exited: decide now, before the restart monitor acts
                poller.unregister(fd)
                watch.close()
                if address and cid and not decided:
                    decided = True
                    _decide(address, cid)
                continue
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if data:
                writer.write(streams[fd], data)
            else:
                poller.unregister(fd)
                open_fds.discard(fd)
        if stop["term"] and not term_at:
            term_at = time.monotonic()
        if term_at and (not events or time.monotonic() - term_at > 5):
            break  # the shim closed our pipes and asked us to go: what was readable has been read
    writer.close()
    if address and cid and not decided:
        _decide(address, cid)


class _ExitWatch:
    """Notices the container's exit without containerd: the shim (our parent) runs in the task's bundle
    directory, where runc writes ``init.pid``; a pidfd on that pid becomes readable when the process exits."""

    def __init__(self, shim_pid: int) -> None:
        self.shim_pid = shim_pid
        self.fd: int | None = None
        self.gone = False  # nothing more to watch
        self.exited = False  # the process was already gone when found

    def find(self, poller: select.poll) -> None:
        if self.gone:
            return
        try:
            with open(f"/proc/{self.shim_pid}/cwd/init.pid") as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return
        if pid <= 0:
            return
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.gone = self.exited = True
            return
        except OSError:
            self.gone = True  # no pidfd here: decide at end of output instead
            return
        poller.register(self.fd, select.POLLIN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None
        self.gone = True


def _decide(address: str, cid: str) -> None:
    from ctk_shared.containerd import Client

    from .restart import on_exit

    namespace = os.environ.get("CONTAINER_NAMESPACE", "default")
    restart = on_exit(Client(address, namespace), cid)
    if not restart:
        _spawn("remove_main", address, namespace, cid)  # removes it only if it was run with --rm
        return
    _spawn("relaunch_main", address, namespace, cid, build_log_uri(sys.argv[0], _args(sys.argv)["log"], address))


def _spawn(entry: str, *args: str) -> None:
    """Run ``ctk_run.restart.<entry>(args)`` in its own session: touching the task from the logger itself
    would deadlock, since deleting the task makes the shim wait for the logger to exit."""
    import subprocess

    subprocess.Popen([sys.executable, "-c", f"import sys; from ctk_run.restart import {entry}; {entry}(sys.argv[1:])",
                      *args], start_new_session=True, close_fds=True, stdin=subprocess.DEVNULL)

if __name__ == "__main__":
    main()
