"""containerd's event stream: task, container, image, content, snapshot and namespace events.

``Events.Subscribe`` sees **every namespace** unless filtered (``namespace=="ns"``); filters in one string are
ANDed (``topic=="/tasks/exit",namespace=="ns"``), list entries are ORed. Each envelope carries an ``Any`` whose
type URL is the bare protobuf name (``containerd.events.TaskExit``); it is decoded here into a plain dict.
See notes/containerd.md §1.8.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from functools import cache
from types import TracebackType
from typing import Any, Protocol, Self

from google.protobuf import any_pb2, empty_pb2

from .._proto.containerd.api.services.events.v1 import events_pb2 as pb
from ..errors import CtkError, Interrupted, Timeout
from .channel import Service
from .convert import to_datetime
from .errors import rpc_errors
from .models import Event

READY_TOPIC = "/ctk/subscribe-ready"  # + "/<token>": marker events used by ``subscribe(ready=True)``
_REPUBLISH = 0.2  # seconds between marker events while waiting for the subscription to go live


@cache
def _event_types() -> dict[str, Any]:
    """type URL -> message class for every event containerd publishes (the ``api/events`` protos)."""
    import importlib

    table: dict[str, Any] = {}
    for mod in ("task", "container", "image", "content", "namespace", "snapshot"):
        module = importlib.import_module(f"..._proto.containerd.api.events.{mod}_pb2", __name__)
        package = module.DESCRIPTOR.package
        for name in module.DESCRIPTOR.message_types_by_name:
            table[f"{package}.{name}"] = getattr(module, name)
    return table


def decode(type_url: str, value: bytes) -> dict[str, Any]:
    """An event Any as a dict of its fields (proto names, zero values included); {} for unknown types."""
    from google.protobuf import json_format

    cls = _event_types().get(type_url.removeprefix("type.googleapis.com/"))
    if cls is None:
        return {}
    msg = cls()
    try:
        msg.ParseFromString(value)
    except Exception:  # a newer daemon's incompatible payload: show the envelope, not a crash
        return {}
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _EnvelopeStream(Protocol):
    """The Subscribe call as grpc returns it: an iterator of envelopes that can be cancelled."""

    def __next__(self) -> pb.Envelope: ...

    def cancel(self) -> bool: ...


def _event(env: pb.Envelope) -> Event:
    return Event(to_datetime(env, "timestamp"), env.namespace, env.topic, env.event.type_url,
                 decode(env.event.type_url, env.event.value), env.event.value)


class Subscription:
    """An open ``Events.Subscribe`` stream: iterate for :class:`Event` objects; :meth:`cancel` (from any thread,
    or by leaving the ``with`` block) ends the iteration cleanly."""

    def __init__(self, call: _EnvelopeStream, address: str, marker: str = "") -> None:
        self._call = call
        self._address = address
        self._marker = marker
        self._pending: deque[Event] = deque()
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._pending:
            return self._pending.popleft()
        while True:
            env = self._receive()
            if self._marker and env.topic.startswith(self._marker):
                continue  # a late duplicate of the readiness marker
            return _event(env)

    def _receive(self) -> pb.Envelope:
        import grpc

        if self._cancelled.is_set():
            raise StopIteration
        try:
            with rpc_errors(self._address):
                try:
                    return next(self._call)
                except grpc.RpcError:
                    if self._cancelled.is_set():  # our own cancel(), maybe from another thread
                        raise StopIteration from None
                    raise
        except StopIteration:
            self._cancelled.set()
            raise

    def _wait_marker(self, publish: Any, timeout: float) -> None:
        """Publish marker events until one comes back: from then on no event can be missed."""
        stop = threading.Event()
        timed_out = threading.Event()

        def publisher() -> None:
            deadline = time.monotonic() + timeout
            while not stop.is_set():
                if time.monotonic() >= deadline:
                    timed_out.set()
                    self._call.cancel()
                    return
                try:
                    publish()
                except Exception:  # the read side reports a dead daemon; keep trying until the deadline
                    pass
                stop.wait(_REPUBLISH)

        thread = threading.Thread(target=publisher, name="ctk-events-ready", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    env = self._receive()
                except (StopIteration, CtkError) as e:
                    if timed_out.is_set():
                        raise Timeout(f"event subscription not live after {timeout:g}s") from None
                    if isinstance(e, StopIteration):  # not from subscribe(): a StopIteration would look like []
                        raise Interrupted("the event stream ended before it was live") from None
                    raise
                if env.topic.startswith(self._marker):
                    return
                self._pending.append(_event(env))
        finally:
            stop.set()
            thread.join()

    def cancel(self) -> None:
        """Stop the stream; a blocked ``next()`` in another thread ends with StopIteration."""
        self._cancelled.set()
        self._call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cancel()


class EventService(Service):
    SERVICE = "containerd.services.events.v1.Events"

    def subscribe(self, filters: Sequence[str] = (), *, ready: bool = False, timeout: float = 10.0) -> Subscription:
        """Open the event stream (all namespaces unless a filter says otherwise).

        With ``ready=True`` this returns only once the daemon is delivering to the stream (it publishes marker
        events ``/ctk/subscribe-ready/<token>`` in this client's namespace until one comes back), so an action
        taken afterwards cannot have its events missed. Timeout if that takes over ``timeout`` seconds.
        """
        filters = list(filters)
        marker = ""
        if ready:
            marker = f"{READY_TOPIC}/{secrets.token_hex(8)}"
            if filters:
                filters.append(f'topic=="{marker}"')  # list entries are ORed
        with rpc_errors(self.address):
            fn = self._conn.callable("unary_stream", self._path("Subscribe"), pb.Envelope)
            call = fn(pb.SubscribeRequest(filters=filters), metadata=self._md, wait_for_ready=False)
        sub = Subscription(call, self.address, marker)
        if ready:
            try:
                sub._wait_marker(lambda: self.publish(marker, "", b"", timeout=timeout), timeout)
            except BaseException:
                sub.cancel()
                raise
        return sub

    def publish(self, topic: str, type_url: str, value: bytes, timeout: float | None = None) -> None:
        """Publish an event (``topic`` like ``/ctk/x``) in this client's namespace."""
        req = pb.PublishRequest(topic=topic, event=any_pb2.Any(type_url=type_url, value=value))
        self._call("Publish", req, empty_pb2.Empty, timeout=timeout)
