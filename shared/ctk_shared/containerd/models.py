"""Plain records returned by the containerd wrappers: no grpc, no protobuf, so callers can use them freely.

Datetimes are timezone-aware UTC; descriptors are :class:`ctk_shared.oci.Descriptor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from ..oci import Descriptor


@dataclass(frozen=True)
class ContentInfo:
    """A blob in containerd's content store, as ``Content.Info`` reports it."""

    digest: str
    size: int
    created_at: datetime | None
    updated_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestStatus:
    """An unfinished write (ingest) kept by containerd, resumable from ``offset``."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Image:
    """containerd's image record: a name pointing at a manifest or index descriptor."""

    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Lease:
    """A containerd lease: while it exists, GC keeps what it holds."""

    id: str
    created_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


class LeaseResource(NamedTuple):
    """What a lease holds: type is ``content`` (digest), ``ingests`` (ref) or ``snapshots/<snapshotter>`` (key)."""

    id: str
    type: str


@dataclass(frozen=True)
class Mount:
    """One mount(8) call; a snapshot's filesystem is the list of them applied in order."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot, as ``Snapshots.Stat`` reports it."""

    name: str
    parent: str
    kind: str  # 'view', 'active' or 'committed'
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PluginInfo:
    """A containerd plugin, as ``Introspection.Plugins`` reports it (how a snapshotter's presence is checked)."""

    type: str
    id: str
    exports: dict[str, str] = field(default_factory=dict)
    init_error: str = ""  # why the plugin failed to load ("" when it is usable)
    requires: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    """containerd's container record: metadata only (the running process is a task).

    ``spec`` is the OCI runtime spec as JSON bytes, stored verbatim as the bundle's config.json.
    """

    id: str
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "io.containerd.runc.v2"
    spec: bytes = b""
    snapshotter: str = ""
    snapshot_key: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ExitInfo:
    """How a task or exec process ended (``Tasks.Wait``/``Delete``). After a signal, ``exit_status`` is 128+sig."""

    exit_status: int
    exited_at: datetime | None = None
    pid: int = 0


@dataclass(frozen=True)
class TaskInfo:
    """A task (a container's init process) or an exec process, as containerd reports it.

    ``id`` is the container id for a task and the exec id for an exec process. ``status`` is one of
    'created', 'running', 'stopped', 'paused', 'pausing', 'unknown'. ``stdin``/``stdout``/``stderr`` are the
    IO URIs or FIFO paths the process was created with (reopen them to re-attach).
    """

    id: str
    pid: int
    status: str
    exit_status: int = 0
    exited_at: datetime | None = None
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    container_id: str = ""


@dataclass(frozen=True)
class Event:
    """One envelope from ``Events.Subscribe``; ``payload`` is the decoded event as a dict of its proto fields
    (snake_case names, timestamps as RFC 3339 strings, zero values included); {} for unknown types, whose bytes
    are in ``value`` (e.g. ctk's own JSON events)."""

    timestamp: datetime | None
    namespace: str
    topic: str
    type_url: str
    payload: dict[str, Any] = field(default_factory=dict)
    value: bytes = b""  # the Any's raw bytes: how events of types outside containerd's protos are read
