"""ctk-run-logger: the logging binary containerd's shim starts for a container (``binary://`` log URI).

The shim passes the container's stdout on fd 3, stderr on fd 4 and a ready pipe on fd 5 (the container starts
once it is closed: by the shell front that starts us, or at once, or after a health state is reset), an
environment of only CONTAINER_ID and CONTAINER_NAMESPACE (no PATH), and each URI query key and its value as
arguments, in random order: ``log <json-file path>`` and, when the container has a restart policy, runs
detached or has a health check, ``address <containerd socket>`` (``health 1``: it has a check; ``attached 1``:
a foreground run). Output goes to the json-file log (see logfile.py); lines lost to a full disk are counted and
noted in the log once space is back (``ctk-run-logger: N lines dropped: no space left on device``) and in
``log-dropped.json``. When the container's init process exits the logger applies the restart policy
(restart.py), waiting for a containerd that is restarting; a restart left to containerd's monitor is followed
by a short-lived watch child until the new task runs (a containerd restart in between can leave the task
unmade); a detached container that stays down has its task deleted by a short-lived child, so its shim, this
logger and its rootfs mount go at once (as a networked one's address and ports). When both streams end it
flushes and exits 0. On task delete the shim closes the pipes and sends SIGTERM (SIGKILL 12 s later): the
logger flushes what it has and exits 0.

Health checks (health.py) are run by a child started here only for a container that has one
(:class:`_HealthChecks`), and started again if it is killed while the container runs.

One of these runs per container for as long as it runs, so it stays small: only ``os``/``select``/
``signal``/``json``/``time`` are loaded while copying; grpc (the containerd client) only in a short-lived
child at start and, after the exit, when a decision is needed.

Usage by hand: ``ctk-run-logger log /path/to/json.log [address /run/containerd/containerd.sock]``
(or ``python -m ctk_run.logger …``) with fds 3 and 4 open.
"""
from __future__ import annotations

# _signal, not signal: signal's enums import enum (~3 ms before the container may start, and memory in every
# logger); the handlers here need only the numbers
import _signal as signal  # type: ignore[import-not-found]  # (no stubs: the C half of signal)
import os
import select
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing would add to every logger's memory (see test_logfile)
if TYPE_CHECKING:
    from typing import Any

    from .logfile import JsonLogWriter

READ_SIZE = 32768
FIND_EVERY = 0.1  # how often to look for the container's init.pid until found
FIND_FOR = 30.0  # …and for how long
TERM_DRAIN = 5.0  # after SIGTERM: keep reading while data still arrives, at most this long


def build_log_uri(logger_path: str, log_path: str, address: str | None, *, health: bool = False,
                  attached: bool = False) -> str:
    """``binary:///abs/logger?log=/abs/json.log&address=/run/containerd/containerd.sock`` (the shim parses it
    with Go's net/url: ``+`` would read as a space, so everything but ``/`` is percent-encoded). ``health``:
    the container has a health check (the logger starts the runner); ``attached``: a foreground run, whose
    CLI removes or releases the container itself at the exit."""
    from urllib.parse import quote

    query = [("log", os.path.abspath(log_path))]
    if address:
        query.append(("address", address))
    if health:
        query.append(("health", "1"))
    if attached:
        query.append(("attached", "1"))
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


def _socket_exists(address: str) -> bool:
    """Whether containerd's socket is there (ctk_shared.containerd.address.socket_path's reading of the
    address, without importing that package, which loads grpc)."""
    path = address.removeprefix("unix://") if address.startswith("unix://") else address.removeprefix("unix:")
    return os.path.exists(path)


START_MARK = "cli-started"  # in the container's directory: ctk-run itself started this task (see _announce_start)
STOP_MARK = "cli-stopping"  # …ctk-run is stopping it and deletes the task itself (see _Session.decide)


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv if argv is None else argv)
    log_path = args.get("log")
    if not log_path:
        _say("no log path: this program is started by containerd's shim with `log <path>` "
             "(binary:///path/to/ctk-run-logger?log=/path/to/json.log)")
        return 2
    early: list[int] = []  # SIGTERM/SIGINT before the session exists: it adopts them
    signal.signal(signal.SIGTERM, lambda signum, _frame: early.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: early.append(signum))
    closed = args.get("ready") == "1"  # the shell front (lifecycle.logger_launcher) closed fd 5 already
    ready = closed or args.get("health") != "1"
    if ready and not closed:
        _ready()
    from .logfile import JsonLogWriter

    try:
        writer = JsonLogWriter(log_path, terminal=args.get("tty") == "1")
    except OSError as e:
        _say(f"cannot open {log_path}: {e}")
        return 1
    session = _Session(args, log_path, writer, early)
    session.prepare(ready=ready)
    session.copy()
    session.finish()
    return 0


def _ready() -> None:
    """Close the ready pipe (fd 5): the shim may start the container. Done first thing, before the imports
    and the log file, when nothing has to happen before the container runs: its output waits in the pipes
    (fds 3 and 4 are open already) until the copy starts, and the start is not held up by this interpreter's
    start-up. A container with a health check waits for its state to be reset (:meth:`_Session.prepare`).
    With ``ready 1`` the shell front in front of this interpreter has closed it even earlier."""
    try:
        os.close(5)
    except OSError:
        pass


class _Session:
    """One task's life as its logger sees it: set up (health runner, drop counter, start mark), tell the shim
    we are ready, copy both streams into the log until they end (deciding on the restart policy as soon as the
    init process exits), then flush and make the decision if it was not made yet."""

    def __init__(self, args: dict[str, str], log_path: str, writer: JsonLogWriter, term: list[int]) -> None:
        self.log_path = log_path
        self.writer = writer
        self.address = args.get("address") or ""
        self.cid = os.environ.get("CONTAINER_ID", "")
        self.namespace = os.environ.get("CONTAINER_NAMESPACE") or "default"
        self.decides = bool(self.address and self.cid)
        # containerd was there when this task started: if it is unreachable at the exit it is restarting, and
        # the decision waits for it; a socket that never existed (a hand run) fails at once, as before
        self.waits_for_containerd = self.decides and _socket_exists(self.address)
        self.attached = args.get("attached") == "1"
        self.wants_health = self.decides and args.get("health") == "1"
        self.cdir = os.path.dirname(os.path.abspath(log_path))
        self.term = term  # signals seen already (main's handlers), shared with ours
        self.deciding = False  # a restart decision is being made (SIGTERM then interrupts it)
        self.decided = False
        self.checks: _HealthChecks | None = None
        self.drops: _Drops | None = None
        self.poller = select.poll()
        self.streams: dict[int, str] = {}
        self.watch: _ExitWatch | None = None
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)

    def _on_term(self, signum: int, _frame: object) -> None:
        self.term.append(signum)
        if self.deciding:  # the shim is deleting the task and waits for our exit: it answers no Wait meanwhile
            raise _Terminated

    def prepare(self, *, ready: bool) -> None:
        """Everything before the container may start; ends by closing the ready pipe (fd 5) unless main closed
        it already (``ready``)."""
        if self.wants_health:
            from . import health
            from .logfile import rfc3339nano

            try:
                health.reset(self.cdir, rfc3339nano())  # before the container runs: ps never shows the last run's
            except OSError as e:
                _say(f"resetting the health state: {e}")
            self.checks = _HealthChecks(self.address, self.namespace, self.cid, self.cdir)
        self.drops = _Drops(self.cdir)
        if self.decides:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
            _announce_start(self.address, self.namespace, self.cid, self.cdir)
        for fd in (3, 4):
            try:
                os.set_inheritable(fd, False)  # never handed to the health runner
            except OSError:
                pass
        if not ready:
            _ready()
        for fd, name in ((3, "stdout"), (4, "stderr")):
            try:
                os.fstat(fd)
            except OSError:
                continue  # not given: nothing to copy
            self.streams[fd] = name
            self.poller.register(fd, select.POLLIN)  # POLLHUP and POLLERR are always reported
        self.watch = _ExitWatch(os.getppid()) if self.decides else None
        if self.checks is not None:
            self.checks.spawn(self.poller)

    def decide(self) -> None:
        """Apply the restart policy once; under SIGTERM (the task is being deleted: rm, stop, the restart
        monitor) only record the exit, without a Wait. Nothing when ctk-run's ``stop`` left :data:`STOP_MARK`:
        an explicit stop is never restarted, and that CLI deletes the task and records the exit itself."""
        if self.decided:
            return
        self.decided = True
        try:  # `stop`/`rm -f`: the CLI records the exit and deletes the task; no grpc here, no release child
            os.unlink(os.path.join(self.cdir, STOP_MARK))
            return
        except OSError:
            pass
        health = self.checks is not None
        if not self.term:
            self.deciding = True
            try:
                _decide(self.address, self.namespace, self.cid, self.log_path, attached=self.attached, health=health,
                        retry=self.waits_for_containerd)
                return
            except _Terminated:
                pass
            finally:
                self.deciding = False
        _decide(self.address, self.namespace, self.cid, self.log_path, wait=False, attached=self.attached,
                health=health, retry=self.waits_for_containerd)

    def copy(self) -> None:
        """Copy until both streams end (and, when the init is watched, it exited) or SIGTERM's drain is over."""
        watch = self.watch
        term_at = 0.0
        while True:
            if watch is not None and not self.decided:
                watch.find(self.poller, force=not self.streams)
                if watch.exited:  # the container's init exited: decide now, before the restart monitor acts
                    watch.close(self.poller)
                    self.decide()
            if not self.streams and (watch is None or watch.fd is None or self.decided):
                break  # both streams ended (and, when it is watched, the init process exited)
            try:
                events = self.poller.poll(100 if watch is not None and watch.searching else 250)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                events = []
            for fd, _ev in events:
                self._on_event(fd)
            if self.term:
                term_at = term_at or time.monotonic()
                if not events or time.monotonic() - term_at > TERM_DRAIN:
                    break  # the shim closed its pipe ends and asked us to go: what was readable has been read

    def _on_event(self, fd: int) -> None:
        watch, checks = self.watch, self.checks
        if watch is not None and fd == watch.fd:
            watch.exited = True
            return
        if checks is not None and fd == checks.fd:
            checks.ended(self.poller)
            if not (self.decided or self.term or (watch is not None and watch.done())):
                checks.spawn(self.poller)  # the runner was killed while the container runs: start it again
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._log(self.streams[fd], data)
        else:
            self.poller.unregister(fd)
            del self.streams[fd]

    def _log(self, stream: str, data: bytes) -> None:
        """Write a chunk; on a full disk keep draining (the container never blocks on its output) and count
        what is lost, noting it in the log once space is back."""
        drops = self.drops
        assert drops is not None
        try:
            if drops.pending:
                self.writer.write_record("stderr", drops.marker())  # space is back: say what was lost
                drops.written()
            self.writer.write(stream, data)
        except OSError as e:
            if not drops.pending:
                _say(f"writing {self.log_path}: {e}")
            drops.lost(data, e)

    def finish(self) -> None:
        try:
            self.writer.close()
        except OSError as e:
            _say(f"writing {self.log_path}: {e}")
        if self.decides and not self.decided:
            self.decide()
        if self.checks is not None:
            self.checks.ended(self.poller)


def _announce_start(address: str, namespace: str, cid: str, cdir: str) -> None:
    """Record the start time for ps and inspect, unless ctk-run started this task itself and recorded it
    already (it leaves :data:`START_MARK` for us): a task the restart monitor or our relaunch created needs it.
    The label update needs grpc: a short-lived child does it, so this process stays small."""
    try:
        os.unlink(os.path.join(cdir, START_MARK))
        return
    except OSError:
        pass
    if os.fork() == 0:
        for fd in (3, 4, 5):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            _mark_started(address, namespace, cid)
        finally:
            os._exit(0)


class _HealthChecks:
    """The health runner (health_runner.py), a child this logger starts when the container has a check:
    it runs in its own session, so it outlives a SIGKILLed logger; when it dies while the container runs,
    it is started again, at most :data:`RESPAWNS` times a minute (then the state says checks stopped)."""

    RESPAWNS = 5

    def __init__(self, address: str, namespace: str, cid: str, cdir: str) -> None:
        self.argv = [sys.executable, "-m", "ctk_run.health_runner", address, namespace, cid, cdir,
                     str(os.getppid())]
        self.cdir = cdir
        self.fd: int | None = None
        self.starts: list[float] = []

    def spawn(self, poller: select.poll) -> None:
        from . import health

        now = time.monotonic()
        self.starts = [t for t in self.starts if now - t < 60]
        if len(self.starts) >= self.RESPAWNS:
            health.record_stop(self.cdir, f"the health check runner exited {self.RESPAWNS} times within a minute; "
                               "checks resume when the container is started again")
            return
        doc = health.load(self.cdir)
        if doc is not None and doc.get("Stopped"):
            return  # the runner stopped on purpose (and said why)
        self.starts.append(now)
        lock = -1
        try:
            # the runner's lock is taken here and handed over, so readers never see a runner-less gap at start
            import fcntl

            from ctk_shared.outputs import open_owned

            lock = open_owned(os.path.join(self.cdir, health.LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a runner is alive (one the logger before us started)
            os.set_inheritable(lock, True)
            pid = os.posix_spawn(self.argv[0], [*self.argv, str(lock)], dict(os.environ), setsid=True)
            self.fd = os.pidfd_open(pid)
        except OSError as e:
            health.record_stop(self.cdir, f"cannot start the health check runner: {e}")
            return
        finally:
            if lock >= 0:
                os.close(lock)
        poller.register(self.fd, select.POLLIN)

    def ended(self, poller: select.poll) -> None:
        _forget_fd(poller, self.fd)
        self.fd = None


class _Drops:
    """Log lines lost to a full disk: counted while writes fail, noted in the log with one record once space
    is back, and kept in ``log-dropped.json`` beside the log for ``logs`` and ``inspect``. That file is made
    (padded) when the logger starts and rewritten in place, so it can be updated while the disk is full."""

    SIZE = 160

    def __init__(self, cdir: str) -> None:
        self.path = os.path.join(cdir, DROPS_FILE)
        self.pending = 0  # lines lost since the last marker
        self.total = 0
        self.reason = ""
        old = read_drops(cdir)
        if old:
            self.total = int(old.get("Lines") or 0)
            self.reason = str(old.get("Reason") or "")
        self._save()

    def lost(self, data: bytes, e: OSError) -> None:
        import errno

        n = data.count(b"\n") or 1
        self.pending += n
        self.total += n
        self.reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e)).lower()
        self._save()

    def marker(self) -> str:
        return f"ctk-run-logger: {self.pending} lines dropped: {self.reason}\n"

    def written(self) -> None:
        self.pending = 0
        self._save()

    def _save(self) -> None:
        import json

        doc = json.dumps({"Lines": self.total, "Pending": self.pending, "Reason": self.reason}).encode()
        try:
            from ctk_shared.outputs import open_owned

            fd = open_owned(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, doc.ljust(self.SIZE)[: self.SIZE], 0)  # in place: no new block needed
            finally:
                os.close(fd)
        except OSError:
            pass


DROPS_FILE = "log-dropped.json"


def read_drops(cdir: str) -> dict[str, Any] | None:
    """``{"Lines": N, "Pending": M, "Reason": …}`` when the logger of the container in ``cdir`` ever dropped
    lines (M of them not yet noted in the log), else None. A bounded read of a file under the data root."""
    import json

    try:
        fd = os.open(os.path.join(cdir, DROPS_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("Lines"), int) or doc["Lines"] <= 0:
        return None
    return doc


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

    def done(self) -> bool:
        """The init process has exited (seen already, or its pidfd is readable now)."""
        if self.exited:
            return True
        if self.fd is not None and select.select([self.fd], [], [], 0)[0]:
            self.exited = True
        return self.exited

    def close(self, poller: select.poll) -> None:
        _forget_fd(poller, self.fd)
        self.fd = None


def _self_uri(log_path: str, address: str, health: bool = False) -> str:
    """The log URI that started us, for a task the logger recreates itself (on-failure)."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not me or me.endswith(".py") or not os.access(me, os.X_OK):  # python -m ctk_run.logger
        me = os.path.join(os.path.dirname(sys.executable), "ctk-run-logger")
    return build_log_uri(me, log_path, address, health=health)


def _forget_fd(poller: select.poll, fd: int | None) -> None:
    """Stop polling ``fd`` (if it is polled) and close it; the caller then sets its slot to None."""
    if fd is not None:
        try:
            poller.unregister(fd)
        except KeyError:
            pass
        os.close(fd)
    return None


class _Terminated(BaseException):
    """SIGTERM during a restart decision: a BaseException, so the decision's own error handling lets it by."""


def _decide(address: str, namespace: str, cid: str, log_path: str, wait: bool = True,
            attached: bool = False, health: bool = False, retry: bool = False) -> None:
    """Apply the restart policy (see restart.py); ``retry``: wait for containerd if it is unreachable (it is
    restarting). A restart the monitor carries out is followed by a watch child. Never raises but
    :class:`_Terminated`."""
    try:
        from . import labels as L
        from .restart import RETRY_FOR, decide_when_reachable, monitored, parse_policy

        decision = decide_when_reachable(address, namespace, cid, wait=wait, retry_for=RETRY_FOR if retry else 0.0)
        if decision is None:
            return
        restart, labels = decision
        if restart:
            if not monitored(parse_policy(labels.get(L.RESTART_POLICY) or "no"), labels):
                _spawn("relaunch_main", address, namespace, cid, _self_uri(log_path, address, health))
            else:  # the monitor restarts it; a containerd restart meanwhile can leave it down (watch_restart)
                _spawn("watch_main", address, namespace, cid)
        elif attached:
            return  # a foreground run: its CLI removes the container or deletes the task
        elif labels.get(L.AUTO_REMOVE) == "true":
            _spawn("remove_main", address, namespace, cid)
        else:  # delete the task: its shim, this logger and the rootfs mount go; the network is freed
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
