"""containerd's tasks: the running processes of containers (init process and exec processes).

A task is created from a container record plus its rootfs mounts (``Snapshots.Mounts`` of the container's
snapshot key), then started. It belongs to containerd and its shim, not to the client: it keeps running when
the client exits, and its exit status is kept until :meth:`TaskService.delete`. IO is given as URIs the shim
opens itself: FIFO paths (see :mod:`ctk_shared.taskio`), ``file:///abs/path`` or ``binary:///abs/path?k=v``;
all three empty means /dev/null. See notes/containerd.md §1.7 and §3.
"""
from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from .._proto.containerd.api.services.tasks.v1 import tasks_pb2 as pb
from .._proto.containerd.api.types.task import task_pb2
from .channel import Service
from .convert import mounts_to_pb
from .errors import rpc_errors
from .models import ExitInfo, Mount, TaskInfo

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

_STATUS = {task_pb2.UNKNOWN: "unknown", task_pb2.CREATED: "created", task_pb2.RUNNING: "running",
           task_pb2.STOPPED: "stopped", task_pb2.PAUSED: "paused", task_pb2.PAUSING: "pausing"}
_GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z: how gogo encodes Go's zero time.Time ("not exited")


def _time(msg: Any, name: str) -> datetime | None:
    """A timestamp field as aware UTC datetime; None when unset or Go's zero time."""
    if not msg.HasField(name):
        return None
    ts: Timestamp = getattr(msg, name)
    if ts.seconds <= _GO_ZERO_TIME or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _process(p: task_pb2.Process, container_id: str = "") -> TaskInfo:
    return TaskInfo(p.id, p.pid, _STATUS.get(p.status, "unknown"), p.exit_status, _time(p, "exited_at"),
                    p.stdin, p.stdout, p.stderr, p.terminal, p.container_id or container_id or p.id)


def _any(type_url_value: tuple[str, bytes] | None) -> any_pb2.Any | None:
    if type_url_value is None:
        return None
    type_url, value = type_url_value
    return any_pb2.Any(type_url=type_url, value=value)


def _json_any(type_url: str, doc: Mapping[str, Any] | bytes) -> any_pb2.Any:
    value = doc if isinstance(doc, bytes) else json.dumps(doc, separators=(",", ":")).encode()
    return any_pb2.Any(type_url=type_url, value=value)


class ExitFuture:
    """A ``Tasks.Wait`` in flight (see :meth:`TaskService.wait_async`): ``result()`` blocks, ``cancel()`` stops it."""

    def __init__(self, future: Any, address: str, name: str = "process") -> None:
        self._future = future
        self._address = address
        self._name = name

    def result(self, timeout: float | None = None) -> ExitInfo:
        """The exit; :class:`~ctk_shared.errors.Timeout` if not there within ``timeout`` seconds (the wait goes on),
        :class:`~ctk_shared.errors.Interrupted` after :meth:`cancel`."""
        import grpc

        from ..errors import Interrupted, Timeout

        try:
            with rpc_errors(self._address):
                resp = self._future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Timeout(f"{self._name} did not exit within {timeout:g}s") from None
        except grpc.FutureCancelledError:
            raise Interrupted("wait cancelled") from None
        return ExitInfo(resp.exit_status, _time(resp, "exited_at"))

    def done(self) -> bool:
        return bool(self._future.done())

    def cancel(self) -> None:
        self._future.cancel()

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(self)`` (in a grpc thread) once the process exits or the wait fails."""
        self._future.add_done_callback(lambda _f: fn(self))


class TaskService(Service):
    SERVICE = "containerd.services.tasks.v1.Tasks"

    # -- init process -----------------------------------------------------------------------------
    def create(self, container_id: str, rootfs: Iterable[Mount], *, stdin: str = "", stdout: str = "",
               stderr: str = "", terminal: bool = False, options: tuple[str, bytes] | None = None,
               runtime_path: str = "") -> int:
        """Create the task (runc create: namespaces made, process not yet running); returns its pid.

        ``options`` is a runtime options Any as ``(type_url, value)`` (e.g. ``containerd.runc.v1.Options``);
        unset, the shim uses the container record's runtime options.
        """
        req = pb.CreateTaskRequest(container_id=container_id, rootfs=mounts_to_pb(rootfs), stdin=stdin,
                                   stdout=stdout, stderr=stderr, terminal=terminal, runtime_path=runtime_path)
        opts = _any(options)
        if opts is not None:
            req.options.CopyFrom(opts)
        return int(self._call("Create", req, pb.CreateTaskResponse).pid)

    def start(self, container_id: str, exec_id: str = "") -> int:
        """Start the task, or the exec process ``exec_id`` added by :meth:`exec`; returns its pid."""
        return int(self._call("Start", pb.StartRequest(container_id=container_id, exec_id=exec_id),
                              pb.StartResponse).pid)

    def delete(self, container_id: str) -> ExitInfo:
        """Remove a stopped (or created) task and its shim; returns how it ended. Conflict while running."""
        resp = self._call("Delete", pb.DeleteTaskRequest(container_id=container_id), pb.DeleteResponse)
        return ExitInfo(resp.exit_status, _time(resp, "exited_at"), resp.pid)

    def delete_process(self, container_id: str, exec_id: str) -> ExitInfo:
        """Remove an exited exec process; returns how it ended."""
        resp = self._call("DeleteProcess", pb.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
                          pb.DeleteResponse)
        return ExitInfo(resp.exit_status, _time(resp, "exited_at"), resp.pid)

    # -- state ------------------------------------------------------------------------------------
    def get(self, container_id: str, exec_id: str = "") -> TaskInfo:
        """The task (or exec process); NotFound when the container has no task."""
        resp = self._call("Get", pb.GetRequest(container_id=container_id, exec_id=exec_id), pb.GetResponse)
        return _process(resp.process, container_id)

    def list(self, filter: str = "") -> list[TaskInfo]:
        """Every task of the namespace (``id`` and ``container_id`` are the container id)."""
        resp = self._call("List", pb.ListTasksRequest(filter=filter), pb.ListTasksResponse)
        return [_process(p) for p in resp.tasks]

    def pids(self, container_id: str) -> builtins.list[int]:
        """Pids (host pid namespace) of every process in the task's cgroup."""
        resp = self._call("ListPids", pb.ListPidsRequest(container_id=container_id), pb.ListPidsResponse)
        return [p.pid for p in resp.processes]

    # -- signals and exit -------------------------------------------------------------------------
    def kill(self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False) -> None:
        """Send ``signal`` to the init process (or ``exec_id``); ``all`` signals every process of the task.

        NotFound once the process is gone. A PID 1 without a handler ignores SIGTERM: follow up with SIGKILL.
        """
        self._call("Kill", pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=int(signal), all=all),
                   empty_pb2.Empty)

    def wait(self, container_id: str, exec_id: str = "", timeout: float | None = None) -> ExitInfo:
        """Block until the process exits (returns at once if it already has; may be called before start).

        :class:`~ctk_shared.errors.Timeout` when ``timeout`` seconds pass first (the process keeps running).
        The timeout is kept client-side: a gRPC deadline would reach the shim, which answers UNKNOWN
        "context deadline exceeded" instead of DEADLINE_EXCEEDED.
        """
        fut = self.wait_async(container_id, exec_id)
        try:
            return fut.result(timeout)
        finally:
            if not fut.done():
                fut.cancel()

    def wait_async(self, container_id: str, exec_id: str = "") -> ExitFuture:
        """Start a ``Wait`` without blocking (e.g. before :meth:`start`, while copying IO)."""
        with rpc_errors(self.address):
            fn = self._conn.callable("unary_unary", self._path("Wait"), pb.WaitResponse)
            fut = fn.future(pb.WaitRequest(container_id=container_id, exec_id=exec_id), metadata=self._md,
                            wait_for_ready=False)
        return ExitFuture(fut, self.address, f"{container_id}/{exec_id}" if exec_id else container_id)

    # -- exec processes ---------------------------------------------------------------------------
    def exec(self, container_id: str, exec_id: str, process_spec: Mapping[str, Any] | bytes, *, stdin: str = "",
             stdout: str = "", stderr: str = "", terminal: bool = False) -> None:
        """Add an exec process (an OCI ``process`` object: args, env, cwd, user, terminal…); then :meth:`start`
        it with ``exec_id``, :meth:`wait` for it and :meth:`delete_process` it."""
        req = pb.ExecProcessRequest(container_id=container_id, exec_id=exec_id, stdin=stdin, stdout=stdout,
                                    stderr=stderr, terminal=terminal,
                                    spec=_json_any(PROCESS_TYPE_URL, process_spec))
        self._call("Exec", req, pb.ExecProcessResponse)

    # -- IO ---------------------------------------------------------------------------------------
    def resize(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        """Set the terminal size (columns × rows) of a process created with ``terminal=True``."""
        req = pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id, width=width, height=height)
        self._call("ResizePty", req, empty_pb2.Empty)

    def close_io(self, container_id: str, exec_id: str = "", stdin: bool = True) -> None:
        """Close the process's stdin (the program sees EOF)."""
        self._call("CloseIO", pb.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=stdin),
                   empty_pb2.Empty)

    # -- control ----------------------------------------------------------------------------------
    def pause(self, container_id: str) -> None:
        self._call("Pause", pb.PauseTaskRequest(container_id=container_id), empty_pb2.Empty)

    def resume(self, container_id: str) -> None:
        self._call("Resume", pb.ResumeTaskRequest(container_id=container_id), empty_pb2.Empty)

    def update(self, container_id: str, resources: Mapping[str, Any] | bytes,
               annotations: Mapping[str, str] | None = None) -> None:
        """Change a running task's resources (an OCI ``linux.resources`` object)."""
        req = pb.UpdateTaskRequest(container_id=container_id, resources=_json_any(RESOURCES_TYPE_URL, resources),
                                   annotations=dict(annotations or {}))
        self._call("Update", req, empty_pb2.Empty)
