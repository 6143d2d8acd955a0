"""Starting, stopping, killing and removing containers, keeping the labels the restart policy reads in step.

Explicit stops are recorded (``ctk/stopped``, restart status ``stopped``) *before* the signal is sent, so
neither containerd's restart monitor nor the logger's policy check ever undoes them.
"""
from __future__ import annotations

import signal as signals
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ctk_shared.errors import Conflict, CtkError, NotFound, Timeout

from . import labels as L
from . import state

if TYPE_CHECKING:
    from pathlib import Path

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container, Mount
    from ctk_shared.containerd.models import TaskInfo

DEFAULT_STOP_TIMEOUT = 10
BUNDLE_GONE_WAIT = 5.0  # seconds a new task waits for the previous task's bundle to be removed


_CREATED_HERE: dict[str, list[Mount]] = {}


def created_here(cid: str, rootfs: list[Mount]) -> None:
    """Note that this process made container ``cid`` moments ago, ``rootfs`` the mounts its Prepare returned:
    its first start (``run``) looks for no earlier task and asks for no mounts (two RPCs, issue 20)."""
    _CREATED_HERE[cid] = rootfs


def now_label() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_signal(text: str | int | None, default: int = signals.SIGTERM) -> int:
    """``SIGTERM``, ``term`` or ``15``; a number must be a signal of this host (1 to SIGRTMAX)."""
    from ctk_shared.errors import UsageError

    if text is None or text == "":
        return default
    if isinstance(text, int) or str(text).isdigit():
        if not 0 < int(text) <= signals.SIGRTMAX:
            raise UsageError(f"invalid signal: {text}", hint=f"signals are 1 to {int(signals.SIGRTMAX)}, or names "
                             "such as SIGTERM")
        return int(text)
    name = str(text).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal: {text}", hint="signal names such as SIGTERM, SIGINT, SIGQUIT") from None


def stored_stop_signal(c: Container) -> int:
    """The container's stop signal; one its labels hold but this host does not know (written before it was
    checked, or an image's StopSignal) is reported and replaced by SIGTERM, so a stop always ends the container."""
    text = c.labels.get(L.STOP_SIGNAL) or c.labels.get("io.containerd.image.config.stop-signal")
    try:
        return parse_signal(text)
    except CtkError:
        sys.stderr.write(f"ctk-run: warning: container {c.id[:12]} has an invalid stop signal {text!r}; "
                         "sending SIGTERM\n")
        return signals.SIGTERM


def logger_executable() -> str | None:
    """The real ctk-run-logger script: the one installed beside this interpreter first, since the shim runs it
    with an empty environment (no PATH, so wrappers such as pyenv shims cannot work)."""
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "ctk-run-logger"
    if beside.is_file():
        return str(beside)
    import shutil

    found = shutil.which("ctk-run-logger")
    return str(Path(found).resolve()) if found else None


def logger_launcher(data_root: str) -> str | None:
    """``<data root>/bin/ctk-run-logger``: the logger started without ``site`` (``python -I -S``, see
    :mod:`ctk_shared.launchers`). The console script's interpreter spends about half of the logger's start-up
    (~23 ms of CPU here) on ``site`` and ``.pth`` files, and the shim waits for the logger before the
    container may start (issue 20). Rewritten when this installation's paths change; None (use the console
    script) when it cannot be made or written. What the URI names is the shell front before it
    (``ctk-run-logger-front``, below) when that can be written."""
    from pathlib import Path

    from ctk_shared.launchers import Entry, ensure

    # grpc and protobuf: the logger's exit work (restart policy, --rm, releasing a detached task) dials containerd
    launcher = ensure(Path(data_root) / "bin" / "ctk-run-logger", Entry("ctk_run.logger", "main"),
                      needs=("ctk_shared", "grpc", "google"), note="ctk-run-logger", data_root=data_root)
    return _ready_front(data_root, launcher) or launcher if launcher else None


# The shim waits for the logger's ready pipe (fd 5) before it creates the container, and the interpreter alone
# takes ~6 ms to start (the logger's imports more): this front, run by /bin/sh, closes the pipe first and then
# starts the Python launcher, saying so with ``ready 1``. A container with a health check (``health 1``) keeps
# the wait: its health state is reset before it runs.
_FRONT = """#!/bin/sh
# ctk-run-logger's front (ctk_run.lifecycle.logger_launcher): ready before Python starts
has_check() {{ while [ $# -ge 2 ]; do [ "$1" = health ] && [ "$2" = 1 ] && return 0; shift 2; done; return 1; }}
has_check "$@" && exec {launcher} "$@"
exec {launcher} ready 1 "$@" 5>&-
"""


def _ready_front(data_root: str, launcher: str) -> str | None:
    """``<data root>/bin/ctk-run-logger-front`` for ``launcher`` (written unless current); None when it cannot
    be written (the launcher is used directly)."""
    import os
    import shlex

    from ctk_shared import dataroot
    from ctk_shared.launchers import is_current
    from ctk_shared.outputs import write_owned

    target = os.path.join(os.path.dirname(launcher), "ctk-run-logger-front")
    text = _FRONT.format(launcher=shlex.quote(launcher)).encode()
    if is_current(target, text):
        return target
    try:
        dataroot.makedirs(data_root, os.path.dirname(target))
        write_owned(target, text, mode=0o755)
    except OSError:
        return None
    return target




def logger_uri(client: Client, gopts: GlobalOptions, c: Container, detached: bool = True) -> str:
    """The ``binary://`` URI that makes the shim start ctk-run-logger for this container's output."""
    from .logger import build_log_uri

    exe = logger_launcher(gopts.data_root) or logger_executable()
    if not exe:
        raise CtkError("ctk-run-logger is not on PATH", hint="reinstall ctk-run (pip install ./tools/run)")
    path = c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id))
    # the logger talks to containerd to apply a restart policy or --rm, to release a detached container's task
    # at its exit (so its shim, the logger and its rootfs mount go, and a networked one's address and ports are
    # freed), and to run health checks; a foreground run's CLI does the exit work itself (``attached``)
    from .healthcheck import LABEL as HEALTH

    health = HEALTH in c.labels
    needs_ctd = c.labels.get(L.RESTART_POLICY, "no") not in ("", "no") or detached or health
    return build_log_uri(exe, path, gopts.socket_path if needs_ctd else None, health=health,
                         attached=not detached)


def task_of(client: Client, cid: str) -> TaskInfo | None:
    try:
        return client.tasks.get(cid)
    except NotFound:
        return None


def _record_exit(client: Client, cid: str, code: int) -> None:
    try:
        client.containers.update_labels(cid, {L.EXIT_CODE: str(code), L.FINISHED_AT: now_label()})
    except NotFound:
        pass


def delete_task(client: Client, cid: str, record: bool = True) -> int | None:
    """Delete a stopped task (recording its exit, unless ``record`` is False: the container goes next) so the
    shim goes away; None if there was none.

    A shim that exits while containerd deletes its task answers ``ttrpc: closed`` (seen after a containerd
    restart, with a restart policy): containerd finishes the cleanup on its own, so look again a few times."""
    for attempt in range(10):
        try:
            info = client.tasks.delete(cid)
            break
        except NotFound:
            return None
        except CtkError as e:
            if "ttrpc: closed" not in str(e) or attempt == 9:
                raise
            time.sleep(0.2)
    if record:
        _record_exit(client, cid, info.exit_status)
    return info.exit_status


def has_terminal(c: Container) -> bool:
    """The container's process was created with a terminal (``-t``: the spec's ``process.terminal``)."""
    import json

    try:
        spec = json.loads(c.spec or b"{}")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(spec, dict) and bool((spec.get("process") or {}).get("terminal"))


def stdin_fifo(gopts: GlobalOptions, namespace: str, c: Container, make: bool = False) -> str:
    """The FIFO a ``-i`` container reads its input from (in its directory under the data root);
    "" when it has none. With ``make`` it is created when missing (anything else found there is replaced).
    The shim keeps its own writer open until the task ends, so the container never reads EOF when no client
    is attached; ``attach`` writes into it."""
    import os
    import stat

    if c.labels.get(L.STDIN_OPEN) != "true":
        return ""
    path = state.container_dir(gopts.data_root, namespace, c.id) / "stdin"
    if make:
        from ctk_shared import dataroot

        dataroot.makedirs(gopts.data_root, path.parent)
        try:
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                os.unlink(path)
                os.mkfifo(path, 0o600)
        except FileNotFoundError:
            os.mkfifo(path, 0o600)
    return str(path)


def _create_task(client: Client, cid: str, rootfs: list[Mount], terminal: bool, streams: dict[str, str]) -> None:
    """Create the init task, waiting out the previous task's deletion by another process: an exited detached
    container's task is deleted by its logger's child, and until containerd has removed that task's bundle a
    new one fails with 'failed to start shim: mkdir …: file exists' (seen on a start right after an exit).
    A task that a containerd restart left unmade answers 'already exists': it is cleared (once) and the
    create tried again (see restart.clear_unmade_task)."""
    deadline = time.monotonic() + BUNDLE_GONE_WAIT
    cleared = False
    while True:
        try:
            client.tasks.create(cid, rootfs, terminal=terminal, stdin=streams.get("stdin", ""),
                                stdout=streams.get("stdout", ""), stderr=streams.get("stderr", ""))
            return
        except CtkError as e:
            if "already exists" in e.message and not cleared:
                from .restart import clear_unmade_task

                cleared = True
                if clear_unmade_task(client, cid):
                    continue
            if "file exists" not in e.message or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def start_task(client: Client, gopts: GlobalOptions, c: Container, *, io: dict[str, str] | None = None,
               terminal: bool = False, detached: bool = True,
               before_start: Callable[[], None] | None = None) -> int:
    """Create and start the init task. ``io`` None = the json-file logger (detached and plain foreground); a
    container with a terminal (``-t``) then gets it too, its output logged as it comes (attach follows the
    log) and, with ``-i``, its input from :func:`stdin_fifo`. ``before_start`` runs between the task's
    creation and its start (a terminal's window size is set there, before the process runs)."""
    from .errors import exec_error

    fresh = _CREATED_HERE.pop(c.id, None)  # made by this process: no task yet, its mounts known
    old = task_of(client, c.id) if fresh is None else None
    if old is not None:
        if old.status in ("running", "paused", "pausing"):
            raise Conflict(f"container {c.id[:12]} is already running")
        delete_task(client, c.id)
    from .network import check_joinable

    check_joinable(client, gopts, c)  # --network container:X needs X running
    rootfs = fresh if fresh is not None else \
        client.snapshots(c.snapshotter or gopts.snapshotter).mounts(c.snapshot_key or c.id)
    from .restart import monitored, parse_policy

    policy = c.labels.get(L.RESTART_POLICY, "no")
    watched = monitored(parse_policy(policy or "no"), c.labels)
    uri = logger_uri(client, gopts, c, detached) if io is None or watched else ""
    if io is None:
        terminal = has_terminal(c)
        if terminal:
            uri += "&tty=1"  # ctk-run-logger: write partial lines at once (see logger._tty_passthrough)
        streams = {"stdin": stdin_fifo(gopts, client.namespace, c, make=True) if terminal else "", "stdout": uri,
                   "stderr": uri}
    else:
        streams = io
    # -i without -t: stdin through FIFOs, the output to a logger of ours (see stdinrelay)
    relay = io is None and not terminal and c.labels.get(L.STDIN_OPEN) == "true"
    relay_pid = 0
    # a start by the user begins a new run: the policy's restart count starts again from 0 (as in Docker)
    first = not c.labels.get(L.STARTED_AT) or c.labels.get(L.NEVER_STARTED) == "true"
    # a stopped container's monitor label says "stopped", and containerd's restart monitor kills any task of
    # such a container: the new task would die between its create and its start. Without the label the
    # monitor leaves the container alone until the task runs and the label says "running" (below).
    unwatched = {L.RESTART_STATUS: ""} if L.RESTART_STATUS in c.labels else {}
    # ``run`` wrote these labels into the record it made (create's ``starting``): nothing to update then
    labelled = fresh is not None and first and L.STARTED_AT in c.labels and not unwatched and \
        not c.labels.get(L.EXPLICITLY_STOPPED) and c.labels.get(L.RESTART_COUNT, "0") == "0"
    if not labelled:
        client.containers.update_labels(c.id, {L.STARTED_AT: now_label(), L.EXPLICITLY_STOPPED: "",
                                               L.RESTART_COUNT: "0", **({L.NEVER_STARTED: "true"} if first else {}),
                                               **unwatched})
    # only a logger that talks to containerd reads the mark (the URI gives it the address)
    mark = _start_mark(c, gopts, client.namespace) if io is None and "&address=" in uri else None
    try:
        if relay:
            from . import stdinrelay

            streams, relay_pid = stdinrelay.start(
                state.container_dir(gopts.data_root, client.namespace, c.id),
                stdin_fifo(gopts, client.namespace, c, make=True), uri, client.namespace, c.id)
        _create_task(client, c.id, rootfs, terminal, streams)
        if before_start is not None:
            before_start()
        pid = client.tasks.start(c.id)
    except CtkError as e:
        try:
            client.tasks.delete(c.id)
        except CtkError:
            pass
        if mark is not None:
            mark.unlink(missing_ok=True)
        if relay_pid:
            import os

            try:
                os.kill(relay_pid, signals.SIGTERM)
            except OSError:
                pass
        raise exec_error(e) from e
    if first:
        try:
            client.containers.update_labels(c.id, {L.NEVER_STARTED: ""})
        except NotFound:
            pass  # a quick --rm container may be gone already
    if watched:
        # only now: marked earlier, containerd's restart monitor could race us to create the task
        client.containers.update_labels(c.id, {L.RESTART_STATUS: "running", L.RESTART_LOGURI: uri})
    return pid


def _start_mark(c: Container, gopts: GlobalOptions, namespace: str) -> Path | None:
    """Tell the logger this task's start time is recorded already (the labels were just updated): it then
    starts no grpc child to record it, which a start by the restart monitor needs (see logger.START_MARK).
    A stop mark left by a stop that found no task goes. None when the mark cannot be made (the logger then
    records the start itself, as before)."""
    from pathlib import Path

    from ctk_shared.outputs import write_owned

    from .logger import START_MARK, STOP_MARK

    log = c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, namespace, c.id))
    (Path(log).parent / STOP_MARK).unlink(missing_ok=True)
    mark = Path(log).parent / START_MARK
    try:
        write_owned(mark, b"")
    except OSError:
        return None
    return mark


def _stop_mark(c: Container) -> None:
    """Tell the container's logger that this stop deletes the task and records the exit (see logger.STOP_MARK):
    it then makes no restart decision (no grpc import, no release child competing with us for the CPU)."""
    log = c.labels.get(L.LOG_PATH)
    if not log or c.labels.get(L.AUTO_REMOVE) == "true":
        return  # --rm: its logger removes it after the stop, as Docker does
    from pathlib import Path

    from ctk_shared.outputs import write_owned

    from .logger import STOP_MARK

    try:
        write_owned(Path(log).parent / STOP_MARK, b"")
    except OSError:
        pass  # the logger decides as before


def mark_stopped(client: Client, c: Container) -> None:
    update = {L.EXPLICITLY_STOPPED: "true"}
    if L.RESTART_STATUS in c.labels:
        update[L.RESTART_STATUS] = "stopped"
    client.containers.update_labels(c.id, update)


def _end_task(client: Client, cid: str, signum: int, timeout: int, task: TaskInfo | None | bool = True,
              record: bool = True) -> bool:
    """Signal a live task, SIGKILL it after ``timeout`` seconds, delete it; True when no task is left.
    ``task``: the task as the caller just saw it (True: look it up); ``record``: record the exit."""
    if task is True:
        task = task_of(client, cid)
    assert not isinstance(task, bool)
    if task is not None and task.status in ("running", "paused", "pausing", "created"):
        try:
            client.tasks.kill(cid, signum)
            if task.status in ("paused", "pausing"):
                client.tasks.resume(cid)  # as Docker: a paused container is thawed to receive its stop signal
            client.tasks.wait(cid, timeout=max(timeout, 0) or 0.001)
        except Timeout:
            try:  # it may exit (and a restart policy's task be deleted) under us meanwhile
                client.tasks.kill(cid, signals.SIGKILL, all=True)
                client.tasks.wait(cid, timeout=30)
            except NotFound:
                pass
        except NotFound:
            pass
    try:
        delete_task(client, cid, record)
    except CtkError as e:
        if "running" not in str(e):
            raise
        return False  # a new task appeared between our wait and our delete
    return task_of(client, cid) is None


def stop(client: Client, c: Container, timeout: int | None = None, sig: str | None = None, *,
         task: TaskInfo | None | bool = True, removing: bool = False) -> bool:
    """SIGTERM (or the stop signal), then SIGKILL after ``timeout`` seconds, as ``docker stop``; True when no
    task is left. ``task``: the task as the caller just saw it (True: look it up); ``removing``: the container
    goes next (``rm -f``), so its exit is not recorded."""
    from .restart import monitored, parse_policy

    # the signal first: a bad one must fail before the stop is recorded, or the container kept running with its
    # restart policy switched off
    signum = parse_signal(sig) if sig else stored_stop_signal(c)
    mark_stopped(client, c)
    _stop_mark(c)
    if timeout is None:
        timeout = int(c.labels.get(L.STOP_TIMEOUT) or DEFAULT_STOP_TIMEOUT)
    # A restart the monitor (or a logger) began before our mark may still create a new task under us: go
    # round again until no task runs, so an explicit stop is never undone.
    gone = False
    for _ in range(5):
        gone = _end_task(client, c.id, signum, timeout, task, record=not removing)
        task = True  # look again on the next round
        if gone:
            break
    if monitored(parse_policy(c.labels.get(L.RESTART_POLICY) or "no"), c.labels):
        # containerd's restart monitor may have read the labels just before our mark and still be creating a
        # task: give such a restart a moment to show itself and end it (it never outlives the stop)
        for _ in range(4):
            time.sleep(0.25)
            try:
                gone = _end_task(client, c.id, signals.SIGKILL, 0, record=not removing)
            except CtkError:
                pass
    return gone


def kill(client: Client, c: Container, sig: str | None) -> None:
    signum = parse_signal(sig, signals.SIGKILL)
    task = task_of(client, c.id)
    if task is None or task.status not in ("running", "paused", "pausing"):
        raise Conflict(f"container {c.id[:12]} is not running")
    if signum in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
        mark_stopped(client, c)  # as Docker: a killed container is not restarted by its policy
    client.tasks.kill(c.id, signum)
    if task.status in ("paused", "pausing") and signum == signals.SIGKILL:
        client.tasks.resume(c.id)  # a frozen process dies only once thawed


def remove(client: Client, gopts: GlobalOptions, c: Container, force: bool, volumes: bool = False,
           exited: bool = False) -> None:
    """``rm [-f] [-v]``: the container, its snapshot and files; with ``volumes`` (or ``--rm``) also its
    anonymous volumes, as Docker's ``rm -v``; named volumes stay. ``exited``: the caller saw its task exit
    (``run --rm``), so the task is deleted without looking at it first."""
    from .network import check_removable

    check_removable(client, c, force)  # a running container may share its network namespace
    task = None if exited else task_of(client, c.id)
    ended = False  # its task was deleted here, and runc ran the poststop hooks
    if exited:
        try:
            client.tasks.delete(c.id)
            ended = True
        except NotFound:
            pass  # none left (its logger deleted it): the poststop hooks run below
        except CtkError:
            task = task_of(client, c.id)  # not stopped after all: the checks below, as for any rm
    if task is not None and task.status in ("running", "paused", "pausing"):
        if not force:
            raise Conflict(f"cannot remove container {c.labels.get(L.NAME, c.id[:12])}: it is running",
                           hint="stop it first (ctk-run stop), or force the removal with -f")
        # as stop, SIGKILL at once: containerd's restart monitor may be starting a new task under us
        # (--restart=always), which would outlive the container record
        ended = stop(client, c, timeout=0, sig="SIGKILL", task=task, removing=True)
        task = None if ended else task_of(client, c.id)
    if task is not None:
        for _ in range(50):
            try:
                client.tasks.delete(c.id)
                break
            except NotFound:
                break
            except CtkError:
                time.sleep(0.1)  # the task may still be stopping
    elif not ended:
        run_poststop_hooks(c)
    client.containers.delete(c.id)
    try:
        client.snapshots(c.snapshotter or gopts.snapshotter).remove(c.snapshot_key or c.id)
    except NotFound:
        pass
    state.remove_container_dir(gopts.data_root, client.namespace, c.id)
    if volumes or c.labels.get(L.AUTO_REMOVE) == "true":
        from .volumes import remove_anonymous

        remove_anonymous(client, state.namespace_dir(gopts.data_root, client.namespace), c)


def run_poststop_hooks(c: Container) -> None:
    """Run the spec's poststop hooks once more before the container goes. runc runs them whenever a task is
    deleted; this covers a task whose creation was cut short (the CLI killed during ``run``), after which
    no task is left to delete. Hooks must be idempotent (ctk-net's detach is); failures are only reported."""
    import json
    import subprocess

    try:
        spec = json.loads(c.spec or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    hooks = (spec.get("hooks") or {}).get("poststop") or []
    if not hooks:
        return
    st = json.dumps({"ociVersion": spec.get("ociVersion", ""), "id": c.id, "status": "stopped", "pid": 0,
                     "bundle": "", "annotations": spec.get("annotations") or {}})
    for h in hooks:
        try:
            p = subprocess.run([h["path"], *(h.get("args") or [h["path"]])[1:]], input=st, text=True,
                               env=dict(e.split("=", 1) for e in h.get("env") or [] if "=" in e),
                               capture_output=True, timeout=h.get("timeout") or 60, check=False)
            if p.returncode != 0:
                sys.stderr.write(f"ctk-run: warning: poststop hook of {c.id[:12]}: {p.stderr.strip()}\n")
        except (OSError, subprocess.TimeoutExpired, KeyError) as e:
            sys.stderr.write(f"ctk-run: warning: poststop hook of {c.id[:12]}: {e}\n")


WAIT_AGAIN = 8  # Waits sent again for a task that still runs after its Wait failed (backoff to 2 s: ~10 s in all)


def exit_of_running(client: Client, cid: str) -> int:
    """The exit status of ``cid``'s task, which this process started and whose output it copies.

    A Wait can fail while the task still runs (containerd or its shim answered an error under load): the task
    is looked at, and while it runs the Wait is sent again, so that a foreground run never lets go of a
    running container's output (its client gone, the container would block on a full pipe). 255, Docker's
    code for a failure of the client, when the task is gone or the Waits keep failing."""
    warned = False
    for attempt in range(WAIT_AGAIN + 1):
        try:
            return client.tasks.wait(cid).exit_status
        except CtkError as e:
            try:
                task = client.tasks.get(cid)
            except CtkError:
                return 255
            if task.status == "stopped":
                return task.exit_status
            if not warned:
                sys.stderr.write(f"ctk-run: warning: waiting for {cid[:12]}: {e.message}; waiting again\n")
                warned = True
            time.sleep(min(0.1 * 2 ** attempt, 2.0))
    return 255


def wait_exit(client: Client, c: Container) -> int:
    """Block until the container exits; its exit status (also for one that already exited)."""
    task = task_of(client, c.id)
    if task is not None:
        try:
            return client.tasks.wait(c.id).exit_status
        except NotFound:
            pass  # deleted under us (its logger releases an exited task): the exit is in the labels by then
    try:
        c = client.containers.get(c.id)  # the labels as they are now, not as the caller read them
    except NotFound:
        pass
    return int(c.labels.get(L.EXIT_CODE, "0") or 0)
