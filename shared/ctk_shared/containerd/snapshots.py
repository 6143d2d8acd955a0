"""One snapshotter (overlayfs by default): layer filesystems as a parent chain, and the mounts to use them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.snapshots.v1 import snapshots_pb2 as pb
from .channel import Connection, Metadata, Service
from .convert import label_mask, mounts_from_pb, to_datetime
from .models import Mount, SnapshotInfo

_KINDS = {pb.VIEW: "view", pb.ACTIVE: "active", pb.COMMITTED: "committed"}


def _info(p: pb.Info) -> SnapshotInfo:
    return SnapshotInfo(p.name, p.parent, _KINDS.get(p.kind, "unknown"), dict(p.labels),
                        to_datetime(p, "created_at"), to_datetime(p, "updated_at"))


class Snapshotter(Service):
    SERVICE = "containerd.services.snapshots.v1.Snapshots"

    def __init__(self, conn: Connection, md: Metadata, name: str = "overlayfs") -> None:
        super().__init__(conn, md)
        self.name = name

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A writable (active) snapshot on top of ``parent``; AlreadyExists when the key, or a
        ``containerd.io/snapshot.ref`` target, exists (remote snapshotters use that signal)."""
        req = pb.PrepareSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {}))
        return mounts_from_pb(self._call("Prepare", req, pb.PrepareSnapshotResponse).mounts)

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A read-only snapshot of ``parent``."""
        req = pb.ViewSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {}))
        return mounts_from_pb(self._call("View", req, pb.ViewSnapshotResponse).mounts)

    def mounts(self, key: str) -> list[Mount]:
        req = pb.MountsRequest(snapshotter=self.name, key=key)
        return mounts_from_pb(self._call("Mounts", req, pb.MountsResponse).mounts)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Freeze the active snapshot ``key`` as committed snapshot ``name``."""
        req = pb.CommitSnapshotRequest(snapshotter=self.name, name=name, key=key, labels=dict(labels or {}))
        self._call("Commit", req, empty_pb2.Empty)

    def remove(self, key: str) -> None:
        self._call("Remove", pb.RemoveSnapshotRequest(snapshotter=self.name, key=key), empty_pb2.Empty)

    def stat(self, key: str) -> SnapshotInfo:
        req = pb.StatSnapshotRequest(snapshotter=self.name, key=key)
        return _info(self._call("Stat", req, pb.StatSnapshotResponse).info)

    def list(self, filters: Sequence[str] = ()) -> list[SnapshotInfo]:
        req = pb.ListSnapshotsRequest(snapshotter=self.name, filters=list(filters))
        return [_info(i) for resp in self._stream("List", req, pb.ListSnapshotsResponse) for i in resp.info]

    def usage(self, key: str) -> tuple[int, int]:
        """(bytes, inodes) used by the snapshot itself, not its parents."""
        resp = self._call("Usage", pb.UsageRequest(snapshotter=self.name, key=key), pb.UsageResponse)
        return resp.size, resp.inodes

    def update_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotInfo:
        """Set (or, with value "", remove) only the given label keys."""
        if not labels:
            return self.stat(key)
        values, mask = label_mask(labels)
        req = pb.UpdateSnapshotRequest(snapshotter=self.name, info=pb.Info(name=key, labels=values),
                                       update_mask=mask)
        return _info(self._call("Update", req, pb.UpdateSnapshotResponse).info)

    def cleanup(self) -> None:
        """Ask the snapshotter to reclaim space of removed snapshots (UNIMPLEMENTED for some)."""
        self._call("Cleanup", pb.CleanupRequest(snapshotter=self.name), empty_pb2.Empty)
