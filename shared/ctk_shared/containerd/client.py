"""The containerd client: one socket, one namespace, optionally one lease; services created on first use.

Service modules (and their generated ``_pb2`` stubs) are imported only when a service is first touched,
so a command pays only for what it calls.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Self

from ..errors import CtkError
from .channel import Connection, Metadata, Service, metadata

if TYPE_CHECKING:
    from .containers import ContainerStore
    from .content import ContentStore
    from .diff import DiffService
    from .events import EventService
    from .images import ImageStore
    from .introspection import Introspection
    from .leases import LeaseManager
    from .namespaces import NamespaceStore
    from .snapshots import Snapshotter
    from .tasks import TaskService

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


@contextmanager
def _stubs() -> Iterator[None]:
    """Turn a missing generated module into an error that says how to make it."""
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("ctk_shared._proto"):
            raise CtkError("the containerd API stubs (ctk_shared._proto) are not generated",
                           hint="run scripts/gen-protos from the source tree") from e
        raise


class _Version(Service):
    SERVICE = "containerd.services.version.v1.Version"


class Client:
    """containerd over gRPC. Thread-safe; clients made by :meth:`with_lease` share the channel.

    The channel is opened on the first call (after checking the socket exists, so a stopped daemon fails
    fast with :class:`~ctk_shared.errors.Unavailable`). Every call carries ``containerd-namespace`` and,
    when bound to a lease, ``containerd-lease``.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, namespace: str = "default", *,
                 lease: str | None = None, _conn: Connection | None = None) -> None:
        self._conn = _conn or Connection(address)
        self._namespace = namespace
        self._lease = lease or None
        self._md: Metadata = metadata(namespace, self._lease)

    def __repr__(self) -> str:
        lease = f", lease={self._lease!r}" if self._lease else ""
        return f"Client({self.address!r}, {self._namespace!r}{lease})"

    @property
    def address(self) -> str:
        return self._conn.address

    def connect_soon(self) -> None:
        """Start dialing containerd now (:meth:`Connection.connect_soon`), for a command that has work to do
        before its first call."""
        self._conn.connect_soon()

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def lease(self) -> str | None:
        return self._lease

    def with_lease(self, lease_id: str) -> Client:
        """The same client with every call made under ``lease_id`` (objects it creates join the lease)."""
        return Client(namespace=self._namespace, lease=lease_id, _conn=self._conn)

    def with_namespace(self, namespace: str) -> Client:
        """The same connection in another namespace (no lease)."""
        return Client(namespace=namespace, _conn=self._conn)

    def close(self) -> None:
        """Close the shared channel (for derived clients too); a later call reopens it."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- services ---------------------------------------------------------------------------------
    @cached_property
    def content(self) -> ContentStore:
        with _stubs():
            from .content import ContentStore
        return ContentStore(self._conn, self._md)

    @cached_property
    def containers(self) -> ContainerStore:
        with _stubs():
            from .containers import ContainerStore
        return ContainerStore(self._conn, self._md)

    @cached_property
    def tasks(self) -> TaskService:
        with _stubs():
            from .tasks import TaskService
        return TaskService(self._conn, self._md)

    @cached_property
    def events(self) -> EventService:
        with _stubs():
            from .events import EventService
        return EventService(self._conn, self._md)

    @cached_property
    def images(self) -> ImageStore:
        with _stubs():
            from .images import ImageStore
        return ImageStore(self._conn, self._md)

    @cached_property
    def leases(self) -> LeaseManager:
        with _stubs():
            from .leases import LeaseManager
        return LeaseManager(self._conn, self._md)

    @cached_property
    def diff(self) -> DiffService:
        with _stubs():
            from .diff import DiffService
        return DiffService(self._conn, self._md)

    @cached_property
    def introspection(self) -> Introspection:
        with _stubs():
            from .introspection import Introspection
        return Introspection(self._conn, self._md)

    @cached_property
    def namespaces(self) -> NamespaceStore:
        with _stubs():
            from .namespaces import NamespaceStore
        return NamespaceStore(self._conn, self._md)

    def snapshots(self, snapshotter: str = "overlayfs") -> Snapshotter:
        with _stubs():
            from .snapshots import Snapshotter
        return Snapshotter(self._conn, self._md, snapshotter)

    def version(self) -> tuple[str, str]:
        """(version, revision) of the daemon, e.g. ('1.6.20~ds1', '1.6.20~ds1-1+deb12u3')."""
        from google.protobuf import empty_pb2

        with _stubs():
            from .._proto.containerd.api.services.version.v1 import version_pb2

        resp = _Version(self._conn, self._md)._call("Version", empty_pb2.Empty(), version_pb2.VersionResponse)
        return resp.version, resp.revision

    @contextmanager
    def lease_scope(self, expire: timedelta | None = timedelta(hours=24), sync: bool = False,
                    labels: Mapping[str, str] | None = None) -> Iterator[Client]:
        """A client bound to a new lease (with ``labels``), deleted on exit, even on errors or Ctrl-C. A failure
        to delete is raised only when nothing else is (the lease expires anyway)."""
        lease_id = self.leases.create(labels=labels, expire=expire)
        try:
            yield self.with_lease(lease_id)
        except BaseException:
            try:
                self.leases.delete(lease_id, sync=sync)
            except CtkError:
                pass
            raise
        else:
            self.leases.delete(lease_id, sync=sync)
