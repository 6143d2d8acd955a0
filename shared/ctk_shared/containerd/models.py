"""Plain records returned by the containerd wrappers: no grpc, no protobuf, so callers can use them freely.

Datetimes are timezone-aware UTC; descriptors are :class:`ctk_shared.oci.Descriptor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from ..oci import Descriptor


@dataclass(frozen=True)
class ContentInfo:
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
    name: str
    parent: str
    kind: str  # 'view', 'active' or 'committed'
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PluginInfo:
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
