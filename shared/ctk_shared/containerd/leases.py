"""Leases: keep content, ingests and snapshots from the garbage collector while an operation is in flight."""
from __future__ import annotations

import builtins
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.leases.v1 import leases_pb2 as pb
from .channel import Service
from .convert import to_datetime
from .models import Lease, LeaseResource
from .owners import owner_labels

GC_EXPIRE = "containerd.io/gc.expire"
DEFAULT_EXPIRE = timedelta(hours=24)  # as the Go client's WithLease


def new_lease_id() -> str:
    """A random id; containerd refuses an empty one (metadata/leases.go)."""
    return f"ctk-{time.time_ns()}-{os.urandom(4).hex()}"  # secrets.token_hex, without its imports


def _lease(p: pb.Lease) -> Lease:
    return Lease(p.id, to_datetime(p, "created_at"), dict(p.labels))


class LeaseManager(Service):
    SERVICE = "containerd.services.leases.v1.Leases"

    def create(self, id: str = "", labels: Mapping[str, str] | None = None,
               expire: timedelta | None = DEFAULT_EXPIRE) -> str:
        """Create a lease and return its id; with ``expire`` it is ignored, then collected, after that time
        (so a crashed process cannot pin objects forever). The lease names this process as its owner
        (:mod:`.owners`), so a later ctk can reclaim it once this process is gone."""
        all_labels = {**owner_labels(), **(labels or {})}
        if expire is not None:
            at = datetime.now(UTC) + expire
            all_labels[GC_EXPIRE] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = self._call("Create", pb.CreateRequest(id=id or new_lease_id(), labels=all_labels), pb.CreateResponse)
        return resp.lease.id

    def delete(self, id: str, sync: bool = False) -> None:
        """Delete the lease; ``sync`` runs garbage collection before returning."""
        self._call("Delete", pb.DeleteRequest(id=id, sync=sync), empty_pb2.Empty)

    def list(self, filters: Sequence[str] = ()) -> list[Lease]:
        return [_lease(p) for p in self._call("List", pb.ListRequest(filters=list(filters)), pb.ListResponse).leases]

    def add_resource(self, id: str, rid: str, rtype: str) -> None:
        """Add a resource: ``rtype`` is 'content' (digest), 'ingests' (ref) or 'snapshots/<snapshotter>' (key)."""
        req = pb.AddResourceRequest(id=id, resource=pb.Resource(id=rid, type=rtype))
        self._call("AddResource", req, empty_pb2.Empty)

    def delete_resource(self, id: str, rid: str, rtype: str) -> None:
        req = pb.DeleteResourceRequest(id=id, resource=pb.Resource(id=rid, type=rtype))
        self._call("DeleteResource", req, empty_pb2.Empty)

    def list_resources(self, id: str) -> builtins.list[LeaseResource]:
        resp = self._call("ListResources", pb.ListResourcesRequest(id=id), pb.ListResourcesResponse)
        return [LeaseResource(r.id, r.type) for r in resp.resources]
