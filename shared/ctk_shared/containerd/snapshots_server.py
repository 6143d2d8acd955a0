"""The server side of containerd's Snapshots service, for snapshotters ctk runs as containerd proxy plugins.

containerd (``[proxy_plugins.NAME] type = "snapshot"``) calls ``containerd.services.snapshots.v1.Snapshots``
on a unix socket. This module only translates: protobuf requests in, calls on a :class:`SnapshotBackend`
(plain Python, no grpc), protobuf replies out, and ctk errors out as the gRPC codes containerd's
``errdefs.FromGRPC`` understands (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument).
The generated stubs hold no servicer for this service, so handlers are registered generically by method name.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.snapshots.v1 import snapshots_pb2 as pb
from ..errors import AlreadyExists, Conflict, CtkError, InvalidArgument, NotFound
from .channel import MAX_MESSAGE_SIZE
from .convert import mounts_to_pb
from .models import Mount, SnapshotInfo

if TYPE_CHECKING:
    import grpc

SERVICE = "containerd.services.snapshots.v1.Snapshots"
log = logging.getLogger("ctk.snapshotter")

_KIND_TO_PB = {"view": pb.VIEW, "active": pb.ACTIVE, "committed": pb.COMMITTED}
_LIST_BATCH = 100  # infos per List response message (containerd's own server sends them in batches)


class SnapshotBackend(Protocol):
    """What a snapshotter implements; errors are ctk errors (NotFound, AlreadyExists, Conflict, InvalidArgument)."""

    def prepare(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]: ...
    def view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def commit(self, name: str, key: str, labels: dict[str, str]) -> None: ...
    def remove(self, key: str) -> None: ...
    def stat(self, key: str) -> SnapshotInfo: ...
    def update(self, name: str, labels: dict[str, str], paths: Sequence[str]) -> SnapshotInfo: ...
    def usage(self, key: str) -> tuple[int, int]: ...
    def walk(self, filters: Sequence[str]) -> Iterable[SnapshotInfo]: ...
    def cleanup(self) -> None: ...


def _info_to_pb(info: SnapshotInfo) -> pb.Info:
    msg = pb.Info(name=info.name, parent=info.parent, kind=_KIND_TO_PB.get(info.kind, pb.UNKNOWN),
                  labels=dict(info.labels))
    if info.created_at is not None:
        msg.created_at.FromDatetime(info.created_at)
    if info.updated_at is not None:
        msg.updated_at.FromDatetime(info.updated_at)
    return msg


def _code(err: Exception) -> grpc.StatusCode:
    import grpc

    if isinstance(err, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(err, AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(err, Conflict):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(err, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.UNKNOWN


class _Servicer:
    def __init__(self, backend: SnapshotBackend) -> None:
        self.b = backend

    def _guard(self, name: str, fn: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        try:
            return fn()
        except CtkError as e:
            log.debug("%s: %s", name, e)
            context.abort(_code(e), str(e))
        except Exception as e:  # a bug or an OS error: report it to containerd, keep serving
            log.exception("%s failed", name)
            context.abort(_code(e), f"{name}: {e}")

    def Prepare(self, req: pb.PrepareSnapshotRequest, ctx: grpc.ServicerContext) -> pb.PrepareSnapshotResponse:
        log.debug("Prepare key=%r parent=%r labels=%r", req.key, req.parent, dict(req.labels))
        mounts = self._guard("Prepare", lambda: self.b.prepare(req.key, req.parent, dict(req.labels)), ctx)
        return pb.PrepareSnapshotResponse(mounts=mounts_to_pb(mounts))

    def View(self, req: pb.ViewSnapshotRequest, ctx: grpc.ServicerContext) -> pb.ViewSnapshotResponse:
        mounts = self._guard("View", lambda: self.b.view(req.key, req.parent, dict(req.labels)), ctx)
        return pb.ViewSnapshotResponse(mounts=mounts_to_pb(mounts))

    def Mounts(self, req: pb.MountsRequest, ctx: grpc.ServicerContext) -> pb.MountsResponse:
        return pb.MountsResponse(mounts=mounts_to_pb(self._guard("Mounts", lambda: self.b.mounts(req.key), ctx)))

    def Commit(self, req: pb.CommitSnapshotRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self._guard("Commit", lambda: self.b.commit(req.name, req.key, dict(req.labels)), ctx)
        return empty_pb2.Empty()

    def Remove(self, req: pb.RemoveSnapshotRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self._guard("Remove", lambda: self.b.remove(req.key), ctx)
        return empty_pb2.Empty()

    def Stat(self, req: pb.StatSnapshotRequest, ctx: grpc.ServicerContext) -> pb.StatSnapshotResponse:
        return pb.StatSnapshotResponse(info=_info_to_pb(self._guard("Stat", lambda: self.b.stat(req.key), ctx)))

    def Update(self, req: pb.UpdateSnapshotRequest, ctx: grpc.ServicerContext) -> pb.UpdateSnapshotResponse:
        info = self._guard("Update", lambda: self.b.update(req.info.name, dict(req.info.labels),
                                                           list(req.update_mask.paths)), ctx)
        return pb.UpdateSnapshotResponse(info=_info_to_pb(info))

    def Usage(self, req: pb.UsageRequest, ctx: grpc.ServicerContext) -> pb.UsageResponse:
        size, inodes = self._guard("Usage", lambda: self.b.usage(req.key), ctx)
        return pb.UsageResponse(size=size, inodes=inodes)

    def List(self, req: pb.ListSnapshotsRequest, ctx: grpc.ServicerContext) -> Iterable[pb.ListSnapshotsResponse]:
        infos = self._guard("List", lambda: list(self.b.walk(list(req.filters))), ctx)
        for i in range(0, len(infos), _LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[_info_to_pb(x) for x in infos[i:i + _LIST_BATCH]])

    def Cleanup(self, req: pb.CleanupRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self._guard("Cleanup", self.b.cleanup, ctx)
        return empty_pb2.Empty()


_UNARY: dict[str, tuple[Any, Any]] = {
    "Prepare": (pb.PrepareSnapshotRequest, pb.PrepareSnapshotResponse),
    "View": (pb.ViewSnapshotRequest, pb.ViewSnapshotResponse),
    "Mounts": (pb.MountsRequest, pb.MountsResponse),
    "Commit": (pb.CommitSnapshotRequest, empty_pb2.Empty),
    "Remove": (pb.RemoveSnapshotRequest, empty_pb2.Empty),
    "Stat": (pb.StatSnapshotRequest, pb.StatSnapshotResponse),
    "Update": (pb.UpdateSnapshotRequest, pb.UpdateSnapshotResponse),
    "Usage": (pb.UsageRequest, pb.UsageResponse),
    "Cleanup": (pb.CleanupRequest, empty_pb2.Empty),
}


class SnapshotServer:
    """A running gRPC server for one backend on one unix socket; ``stop()`` ends it."""

    def __init__(self, backend: SnapshotBackend, socket: str, max_workers: int = 16) -> None:
        import grpc

        servicer = _Servicer(backend)
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=req.FromString,
                                                      response_serializer=resp.SerializeToString)
            for name, (req, resp) in _UNARY.items()}
        handlers["List"] = grpc.unary_stream_rpc_method_handler(
            servicer.List, request_deserializer=pb.ListSnapshotsRequest.FromString,
            response_serializer=pb.ListSnapshotsResponse.SerializeToString)
        self.socket = os.path.abspath(socket)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
        ])
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        if os.path.lexists(self.socket):
            os.unlink(self.socket)  # a stale socket of a previous run
        os.makedirs(os.path.dirname(self.socket), exist_ok=True)
        if not self._server.add_insecure_port(f"unix://{self.socket}"):
            raise CtkError(f"cannot listen on {self.socket}")
        self._server.start()
        os.chmod(self.socket, 0o660)

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def stop(self, grace: float = 5.0) -> None:
        self._server.stop(grace).wait()
        try:
            os.unlink(self.socket)
        except OSError:
            pass
