"""The one gRPC channel to containerd's unix socket, and the base every service wrapper builds on.

Why a class of its own: a :class:`Connection` is shared by a Client and everything derived from it
(``with_lease``), is created lazily on the first call, and checks the socket first so a stopped
daemon fails at once with a clear hint instead of grpc's reconnect back-off. grpc channels are
thread-safe, so one Connection serves a whole thread pool. ``grpc`` itself is imported on the first
call, so building a Client (e.g. for ``--help``) costs nothing.
"""
from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PermissionDenied
from .address import not_running, socket_path

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

MAX_MESSAGE_SIZE = 16 << 20  # containerd's limit both ways (defaults/defaults.go); grpcio's receive default is 4 MiB
MAX_METADATA_SIZE = 4 << 20  # headers and trailers received, error messages included
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"

Metadata = tuple[tuple[str, str], ...]
R = TypeVar("R")


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


class Connection:
    """A lazily created grpc channel to one containerd socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.path = socket_path(address)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._callables: dict[tuple[str, str], Any] = {}

    def _check_socket(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise not_running(self.address) from None
        except PermissionError:
            raise PermissionDenied(f"cannot access the containerd socket {self.path}",
                                   hint="run as root, or as a user allowed to use the socket") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise not_running(self.address)

    def channel(self) -> grpc.Channel:
        ch = self._channel
        if ch is None:
            with self._lock:
                if self._channel is None:
                    self._check_socket()
                    from . import deferred  # here, not at module level: importing the client stays cheap

                    self._channel = deferred.grpc().insecure_channel(f"unix://{self.path}", options=[
                        ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
                        ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                        # containerd's error text travels in a trailer: grpcio's 8-16 KiB default turns a long
                        # one (a failed mount of a many-layer overlay names every layer) into a bare RST_STREAM
                        ("grpc.max_metadata_size", MAX_METADATA_SIZE),
                        ("grpc.absolute_max_metadata_size", MAX_METADATA_SIZE),
                        ("grpc.enable_http_proxy", 0),
                    ])
                    self._callables = {}
                ch = self._channel
        return ch

    def connect_soon(self) -> None:
        """Open the channel and start dialing now: grpc's own threads do the connect and the HTTP/2 handshake
        (~3 ms here) while this one goes on with what comes before the first call (a run's imports and
        spec). Best effort: a missing socket, or a grpc without the hook, is left for that call to report."""
        try:
            ch = self.channel()
        except Exception:  # noqa: BLE001 - the first call raises it again, with its context
            return
        core = getattr(ch, "_channel", None)  # grpcio's cygrpc channel: check_connectivity_state(try_to_connect)
        try_to_connect = getattr(core, "check_connectivity_state", None)
        if try_to_connect is not None:
            try_to_connect(True)

    def callable(self, kind: str, method: str, response_cls: Any) -> Any:
        """A cached multi-callable of ``kind`` ('unary_unary', 'unary_stream', 'stream_stream') for ``method``."""
        key = (kind, method)
        fn = self._callables.get(key)
        if fn is None:
            from ..collector import imports_done

            imports_done()  # grpc and the stubs are in: the collector back to normal (ctk_shared.collector)
            fn = getattr(self.channel(), kind)(method, request_serializer=_serialize,
                                               response_deserializer=response_cls.FromString)
            self._callables[key] = fn
        return fn

    def close(self) -> None:
        """Close the channel; a later call opens a new one."""
        with self._lock:
            ch, self._channel = self._channel, None
            self._callables = {}
        if ch is not None:
            ch.close()


def metadata(namespace: str, lease: str | None) -> Metadata:
    md: list[tuple[str, str]] = [(NAMESPACE_HEADER, namespace)]
    if lease:
        md.append((LEASE_HEADER, lease))
    return tuple(md)


class Service:
    """Base of the per-service wrappers: the RPC path prefix plus this client's namespace/lease metadata.

    ``_call`` and ``_stream`` are the only places RPCs are made, so error mapping happens once.
    """

    SERVICE = ""  # full protobuf service name, e.g. "containerd.services.content.v1.Content"

    def __init__(self, conn: Connection, md: Metadata) -> None:
        self._conn = conn
        self._md = md

    def _path(self, method: str) -> str:
        return f"/{self.SERVICE}/{method}"

    def _call(self, method: str, request: Any, response_cls: type[R], timeout: float | None = None) -> R:
        from .errors import rpc_errors

        with rpc_errors(self._conn.address):
            fn: grpc.UnaryUnaryMultiCallable[Any, R] = self._conn.callable("unary_unary", self._path(method),
                                                                           response_cls)
            return fn(request, metadata=self._md, timeout=timeout, wait_for_ready=False)

    def _stream(self, method: str, request: Any, response_cls: type[R]) -> Iterator[R]:
        """Server-streaming call; errors are mapped while iterating too. Closing the generator cancels the call."""
        from .errors import rpc_errors

        with rpc_errors(self._conn.address):
            fn = self._conn.callable("unary_stream", self._path(method), response_cls)
            call = fn(request, metadata=self._md, wait_for_ready=False)
        try:
            with rpc_errors(self._conn.address):
                yield from call
        finally:
            call.cancel()  # no-op once finished; stops the server when the caller stops early

    def _bidi(self, method: str, requests: Iterable[Any], response_cls: type[R]) -> Any:
        """Start a bidirectional stream; the caller maps errors with ``rpc_errors`` while reading it."""
        from .errors import rpc_errors

        with rpc_errors(self._conn.address):
            fn = self._conn.callable("stream_stream", self._path(method), response_cls)
            return fn(iter(requests), metadata=self._md, wait_for_ready=False)

    @property
    def address(self) -> str:
        return self._conn.address

