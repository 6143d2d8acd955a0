"""Run one ``RUN`` step as a containerd task on an active snapshot, streaming its output live.

The container record exists only for the step (containerd needs one to create a task): created, task
created and started on FIFOs, waited for, then task and record deleted, in a ``finally`` so Ctrl-C
or an error leaves neither behind. The last lines of output are kept to explain a failure.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError, NotFound

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Mount

    from .stepspec import StepProcess

RUNTIME = "io.containerd.runc.v2"
STEP_LABEL = "ctk/build.step"  # on the short-lived container record of a RUN step
PID_LABEL = "ctk/build.pid"  # the ctk-build process that made it
TAIL_LINES = 10
OUTPUT_GRACE = 2.0  # after the exit: seconds of silence before we stop waiting for the output's EOF


class StepFailed(CtkError):
    """A RUN command exited non-zero; ``exit_code`` and the ``tail`` of its output are kept."""

    def __init__(self, message: str, exit_code: int, tail: list[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_status = exit_code
        self.tail = tail


class _Tail:
    """Remembers the last lines written (both streams) while passing the bytes on."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.partial = b""
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.sink(data)
            buf = self.partial + data
            *done, self.partial = buf.split(b"\n")
            for line in done:
                self.lines.append(line.decode(errors="replace").rstrip("\r"))
            if len(self.partial) > 4096:
                self.lines.append(self.partial.decode(errors="replace"))
                self.partial = b""

    def result(self) -> list[str]:
        out = list(self.lines)
        if self.partial:
            out.append(self.partial.decode(errors="replace"))
        return out[-TAIL_LINES:]


class RunningTasks:
    """The step containers running now, so a failing or interrupted build can stop the others at once."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, cid: str) -> None:
        with self._lock:
            self._ids.add(cid)

    def discard(self, cid: str) -> None:
        with self._lock:
            self._ids.discard(cid)

    def kill_all(self, client: Client) -> None:
        with self._lock:
            ids = list(self._ids)
        for cid in ids:
            with contextlib.suppress(CtkError):
                client.tasks.kill(cid, signal.SIGKILL, all=True)


def step_container_id(key: str) -> str:
    """The id of the step's short-lived container record (from the snapshot key: unique while it runs)."""
    return key.replace(" ", "-")[:76]


def step_files_dir(data_root: str, container_id: str) -> str:
    """Where a step's generated /etc files live while it runs: named by the container, so the files of a step
    whose ctk-build was killed go with its container (:func:`remove_stale_steps`)."""
    return os.path.join(data_root, "build", "etc", container_id)


def secrets_dir(data_root: str, container_id: str) -> str:
    """The step's own tmpfs for the files of its ``RUN --mount=type=secret`` mounts."""
    return os.path.join(data_root, "build", "secrets", container_id)


class _Deletion:
    """A step container's task and record being deleted in a thread of their own (see :func:`settle`)."""

    def __init__(self, client: Client, cid: str) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client, cid), daemon=True, name="ctk-build-delete")

    def _run(self, client: Client, cid: str) -> None:
        try:
            _delete_step_container(client, cid, created=True)
        except BaseException as e:  # noqa: BLE001 -- raised by settle() in the building thread
            self.error = e


_deleting: dict[str, _Deletion] = {}  # snapshot key -> the deletion of the step container that used it
_deleting_lock = threading.Lock()


def settle(key: str) -> None:
    """Wait until the step container that ran in the snapshot ``key`` is deleted (its rootfs unmounted), and
    raise what the deletion raised. Call before the snapshot is committed or removed: nothing may mount a
    directory that is still an overlay's upper one. A no-op for a key with no such deletion."""
    with _deleting_lock:
        pending = _deleting.pop(key, None)
    if pending is None:
        return
    pending.thread.join()
    if pending.error is not None:
        raise pending.error


def _delete_step_container(client: Client, cid: str, created: bool) -> None:
    if created:
        with contextlib.suppress(NotFound):
            client.tasks.delete(cid)
    with contextlib.suppress(NotFound):
        client.containers.delete(cid)


def run_step(client: Client, snapshotter: str, key: str, mounts: Sequence[Mount], proc: StepProcess,
             fifo_dir: str, output: Callable[[bytes], None], running: RunningTasks | None = None,
             labels: dict[str, str] | None = None, exited: Callable[[], None] | None = None,
             defer_delete: bool = False) -> None:
    """Run ``proc`` in the snapshot ``key``; raise :class:`StepFailed` on a non-zero exit. ``exited`` is called
    once the process has exited and its output is read, before the task and record are deleted (what only
    the running process needed, such as its network namespace, can go meanwhile).

    ``defer_delete``: after a successful step the task and record are deleted in a thread while the caller
    goes on (the layer is read from the upper directory meanwhile; the task's delete, ``shim delete`` and
    ``runc delete`` in containerd 1.6, was 30-60 ms of every RUN); the caller must :func:`settle` ``key``
    before it commits or removes the snapshot. A failed step is deleted at once, as before.

    A network hook in the spec is released by runc when the task is deleted, which the ``finally`` below
    always does once the task exists (and runc itself does when creating the task fails)."""
    from ctk_shared.containerd import Container
    from ctk_shared.taskio import FifoSet, copy_output

    from .stepspec import build_step_spec

    cid = step_container_id(key)
    spec = build_step_spec(cid, client.namespace, proc)
    client.containers.create(Container(id=cid, runtime=RUNTIME, spec=json.dumps(spec).encode(),
                                       snapshotter=snapshotter, snapshot_key=key,
                                       labels={**(labels or {}), STEP_LABEL: "true", PID_LABEL: str(os.getpid())}))
    tail = _Tail(output)
    created = False
    try:
        os.makedirs(fifo_dir, exist_ok=True)
        with FifoSet(fifo_dir, cid) as fifos:
            client.tasks.create(cid, mounts, **fifos.uris())
            created = True
            if running is not None:
                running.add(cid)
            waiter = client.tasks.wait_async(cid)
            client.tasks.start(cid)
            stop = threading.Event()
            sinks = {fd: tail.write for fd in fifos.output_fds()}
            # to EOF: the shim may still be copying the last output when the exit arrives; stop waiting only
            # once the output has been quiet for OUTPUT_GRACE after the exit
            pump = threading.Thread(target=copy_output, args=(sinks, stop), kwargs={"grace": OUTPUT_GRACE},
                                    daemon=True, name="ctk-build-io")
            pump.start()
            code = waiter.result().exit_status
            stop.set()
            pump.join()
            if exited is not None:
                exited()
    except BaseException:
        if created:
            with contextlib.suppress(CtkError):
                client.tasks.kill(cid, signal.SIGKILL, all=True)
            with contextlib.suppress(CtkError):
                client.tasks.wait(cid, timeout=10)
        if running is not None:
            running.discard(cid)
        _delete_step_container(client, cid, created)
        raise
    if running is not None:
        running.discard(cid)
    if defer_delete and code == 0:
        deletion = _Deletion(client, cid)
        with _deleting_lock:
            _deleting[key] = deletion
        deletion.thread.start()
        return
    _delete_step_container(client, cid, created)
    if code != 0:
        raise StepFailed(f"exit code {code}", code, tail.result())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_steps(client: Client, data_root: str | None = None, *, all_steps: bool = False) -> int:
    """Remove RUN-step containers (task, record, snapshot, files under ``data_root``) left by a ctk-build that
    was killed (SIGKILL, power loss): their process is gone. Deleting the task runs its network hook's
    poststop, which releases the step's address and rules. ``all_steps`` removes every one (``ctk-build
    prune``). Returns how many."""
    removed = 0
    for c in client.containers.list([f'labels."{STEP_LABEL}"']):
        pid = c.labels.get(PID_LABEL, "")
        if not all_steps and pid.isdigit() and _alive(int(pid)):
            continue
        from .stepnet import SANDBOX_LABEL, detach

        if c.labels.get(SANDBOX_LABEL):  # a pooled network namespace: no task, its record holds the hook
            detach(client, c.id, c)
            removed += 1
            continue
        with contextlib.suppress(CtkError):
            client.tasks.kill(c.id, signal.SIGKILL, all=True)
        with contextlib.suppress(CtkError):
            client.tasks.wait(c.id, timeout=10)
        with contextlib.suppress(CtkError):
            client.tasks.delete(c.id)
        with contextlib.suppress(CtkError):
            client.containers.delete(c.id)
        if c.snapshot_key:
            with contextlib.suppress(CtkError):
                client.snapshots(c.snapshotter or "overlayfs").remove(c.snapshot_key)
        if data_root:
            shutil.rmtree(step_files_dir(data_root, c.id), ignore_errors=True)
            secrets = secrets_dir(data_root, c.id)
            if os.path.isdir(secrets):  # a killed step's secret tmpfs: unmounted, never read
                from .mounting import unmount

                unmount(secrets)
                with contextlib.suppress(OSError):
                    os.rmdir(secrets)
        removed += 1
    return removed
