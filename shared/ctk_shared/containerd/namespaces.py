"""containerd namespaces: every object lives in one; the header on each call picks it."""
from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.namespaces.v1 import namespace_pb2 as pb
from .channel import Service
from .convert import label_mask


class NamespaceStore(Service):
    SERVICE = "containerd.services.namespaces.v1.Namespaces"

    def list(self) -> list[str]:
        resp = self._call("List", pb.ListNamespacesRequest(), pb.ListNamespacesResponse)
        return [n.name for n in resp.namespaces]

    def labels(self, name: str) -> dict[str, str]:
        resp = self._call("Get", pb.GetNamespaceRequest(name=name), pb.GetNamespaceResponse)
        return dict(resp.namespace.labels)

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """AlreadyExists if it exists; labels like ``containerd.io/defaults/snapshotter`` set defaults."""
        req = pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name, labels=dict(labels or {})))
        self._call("Create", req, pb.CreateNamespaceResponse)

    def update_labels(self, name: str, labels: Mapping[str, str]) -> None:
        if not labels:
            return
        values, mask = label_mask(labels)
        req = pb.UpdateNamespaceRequest(namespace=pb.Namespace(name=name, labels=values), update_mask=mask)
        self._call("Update", req, pb.UpdateNamespaceResponse)

    def delete(self, name: str) -> None:
        """Fails (Conflict) while the namespace still holds images, content, snapshots, containers or leases."""
        self._call("Delete", pb.DeleteNamespaceRequest(name=name), empty_pb2.Empty)
