"""ctk-run-logger: the logging binary containerd's shim starts for a container (``binary://`` log URI).

The shim passes the container's stdout on fd 3, stderr on fd 4 and a ready pipe on fd 5 (closed once we are
set up; the container starts then), an environment of only CONTAINER_ID and CONTAINER_NAMESPACE (no PATH),
and each URI query key and its value as arguments, in random order: ``log <json-file path>`` and, when the
container has a restart policy or ``--rm``, ``address <containerd socket>``. Output goes to the json-file log
(see logfile.py). When the container's init process exits the logger applies the restart policy
(restart.py); when both streams end it flushes and exits 0. On task delete the shim closes the pipes and
sends SIGTERM (SIGKILL 12 s later): the logger flushes what it has and exits 0.

One of these runs per container for as long as it runs, so it stays small: only ``os``/``select``/
``signal``/``json``/``time`` are loaded while copying; grpc (the containerd client) only in a short-lived
child at start and, after the exit, when a decision is needed.

Usage by hand: ``ctk-run-logger log /path/to/json.log [address /run/containerd/containerd.sock]``
(or ``python -m ctk_run.logger …``) with fds 3 and 4 open.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

READ_SIZE = 32768
FIND_EVERY = 0.1  # how often to look for the container's init.pid until found
FIND_FOR = 30.0  # …and for how long
TERM_DRAIN = 5.0  # after SIGTERM: keep reading while data still arrives, at most this long


def build_log_uri(logger_path: str, log_path: str, address: str | None) -> str:
    """``binary:///abs/logger?log=/abs/json.log&address=/run/containerd/containerd.sock`` (the shim parses it
    with Go's net/url: ``+`` would read as a space, so everything but ``/`` is percent-encoded)."""
    from urllib.parse import quote

    query = [("log", os.path.abspath(log_path))]
    if address:
        query.append(("address", address))
    q = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query)
    return f"binary://{quote(os.path.abspath(logger_path), safe='/')}?{q}"


def _args(argv: list[str]) -> dict[str, str]:
    """``[prog, k1, v1, k2, v2, …]`` → ``{k1: v1, …}`` (a key without a value is ignored)."""
    pairs = argv[1:]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}


def _say(msg: str) -> None:
    """Diagnostics: the shim gives us /dev/null as stderr, a person running us by hand sees them."""
    try:
        sys.stderr.write(f"ctk-run-logger: {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _mark_started(address: str, namespace: str, cid: str) -> None:
    """A task started (by ctk or by containerd's restart monitor): note when, for ps and inspect."""
    from datetime import UTC, datetime

    from ctk_shared.containerd import Client

    from . import labels as L

    try:
        Client(address, namespace).containers.update_labels(
            cid, {L.STARTED_AT: datetime.now(UTC).isoformat(timespec="microseconds")})
    except Exception as e:  # noqa: BLE001 - background process
        _say(str(e))


def main(argv: list[str] | None = None) -> int:
    from .logfile import JsonLogWriter

    argv = sys.argv if argv is None else argv
    args = _args(argv)
    log_path = args.get("log")
    if not log_path:
        _say("no log path: this program is started by containerd's shim with `log <path>` "
             "(binary:///path/to/ctk-run-logger?log=/path/to/json.log)")
        return 2
    try:
        writer = JsonLogWriter(log_path)
    except OSError as e:
        _say(f"cannot open {log_path}: {e}")
        return 1
    term: list[int] = []
    deciding = False

    def on_term(signum: int, _frame: object) -> None:
        term.append(signum)
        if deciding:  # the shim is deleting the task and waits for our exit: it answers no Wait meanwhile
            raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    address = args.get("address") or None
    cid = os.environ.get("CONTAINER_ID", "")
    namespace = os.environ.get("CONTAINER_NAMESPACE") or "default"
    decides = bool(address and cid)
    if decides:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
        if os.fork() == 0:  # the label update needs grpc: a short-lived child does it, this process stays small
            for fd in (3, 4, 5):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                _mark_started(address, namespace, cid)  # type: ignore[arg-type]
            finally:
                os._exit(0)
    try:
        os.close(5)  # ready: the shim may start the container
    except OSError:
        pass

    streams: dict[int, str] = {}
    poller = select.poll()
    for fd, name in ((3, "stdout"), (4, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            continue  # not given: nothing to copy
        streams[fd] = name
        poller.register(fd, select.POLLIN)  # POLLHUP and POLLERR are always reported
    watch = _ExitWatch(os.getppid()) if decides else None
    decided = False
    write_failed = False
    term_at = 0.0

    def decide() -> None:
        nonlocal decided, deciding
        if decided:
            return
        decided = True
        if not term:
            deciding = True
            try:
                _decide(address, namespace, cid, log_path)  # type: ignore[arg-type]
                return
            except _Terminated:
                pass
            finally:
                deciding = False
        # SIGTERM: the task is being deleted (rm, stop, the restart monitor): record the exit, without a Wait
        _decide(address, namespace, cid, log_path, wait=False)  # type: ignore[arg-type]

    while True:
        if watch is not None and not decided:
            watch.find(poller, force=not streams)
            if watch.exited:  # the container's init exited: decide now, before the restart monitor acts
                watch.close(poller)
                decide()
        if not streams and (watch is None or watch.fd is None or decided):
            break  # both streams ended (and, when it is watched, the init process exited)
        try:
            events = poller.poll(100 if watch is not None and watch.searching else 250)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            events = []
        for fd, _ev in events:
            if watch is not None and fd == watch.fd:
                watch.exited = True
                continue
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                try:
                    writer.write(streams[fd], data)
                    write_failed = False
                except OSError as e:  # disk full: keep draining, so the container never blocks on its output
                    if not write_failed:
                        _say(f"writing {log_path}: {e}")
                    write_failed = True
            else:
                poller.unregister(fd)
                del streams[fd]
        if term:
            term_at = term_at or time.monotonic()
            if not events or time.monotonic() - term_at > TERM_DRAIN:
                break  # the shim closed its pipe ends and asked us to go: what was readable has been read
    try:
        writer.close()
    except OSError as e:
        _say(f"writing {log_path}: {e}")
    if decides and not decided:
        decide()
    return 0


class _ExitWatch:
    """Notices the container's exit without asking containerd: the shim (our parent) runs in the task's bundle
    directory, where runc writes ``init.pid``; a pidfd on that pid becomes readable when the process exits.
    Deciding at the exit rather than at the end of output matters: the init's children may keep the pipes
    open, and containerd's restart monitor must not act on an exit before the policy has been applied."""

    def __init__(self, shim_pid: int) -> None:
        self.shim_pid = shim_pid
        self.fd: int | None = None
        self.searching = True  # init.pid not found yet
        self.exited = False
        self._since = time.monotonic()
        self._last = 0.0

    def find(self, poller: select.poll, force: bool = False) -> None:
        if not self.searching:
            return
        now = time.monotonic()
        if not force and now - self._last < FIND_EVERY:
            return
        self._last = now
        if now - self._since > FIND_FOR:
            self.searching = False  # not under a runc shim: the decision waits for the end of output
            return
        try:
            with open(f"/proc/{self.shim_pid}/cwd/init.pid") as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            if force:
                self.searching = False  # the output ended and there is nothing to watch
            return
        if pid <= 0:
            return
        self.searching = False
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.exited = True
            return
        except OSError:
            return  # no pidfd here: decide at the end of output instead
        poller.register(self.fd, select.POLLIN)

    def close(self, poller: select.poll) -> None:
        if self.fd is not None:
            try:
                poller.unregister(self.fd)
            except KeyError:
                pass
            os.close(self.fd)
        self.fd = None


def _self_uri(log_path: str, address: str) -> str:
    """The log URI that started us, for a task the logger recreates itself (on-failure)."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not me or me.endswith(".py") or not os.access(me, os.X_OK):  # python -m ctk_run.logger
        me = os.path.join(os.path.dirname(sys.executable), "ctk-run-logger")
    return build_log_uri(me, log_path, address)


class _Terminated(BaseException):
    """SIGTERM during a restart decision: a BaseException, so the decision's own error handling lets it by."""


def _decide(address: str, namespace: str, cid: str, log_path: str, wait: bool = True) -> None:
    """Apply the restart policy (see restart.py); never raises but :class:`_Terminated`."""
    try:
        from ctk_shared.containerd import Client

        from . import labels as L
        from .restart import decide_exit, monitored, parse_policy

        decision = decide_exit(Client(address, namespace), cid, wait=wait)
        if decision is None:
            return
        restart, labels = decision
        if restart:
            if not monitored(parse_policy(labels.get(L.RESTART_POLICY) or "no")):
                _spawn("relaunch_main", address, namespace, cid, _self_uri(log_path, address))
        elif labels.get(L.AUTO_REMOVE) == "true":
            _spawn("remove_main", address, namespace, cid)
        elif labels.get(L.NETWORKS):
            _spawn("release_main", address, namespace, cid)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        _say(f"restart decision for {cid[:12]} failed: {e}")


def _spawn(entry: str, *args: str) -> None:
    """Run ``ctk_run.restart.<entry>(args)`` in its own session: touching the task from the logger itself
    would deadlock, since deleting the task makes the shim wait for the logger to exit."""
    import subprocess

    subprocess.Popen([sys.executable, "-c", f"import sys; from ctk_run.restart import {entry}; {entry}(sys.argv[1:])",
                      *args], start_new_session=True, close_fds=True, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
