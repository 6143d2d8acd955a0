"""containerd's container records. A record roots its snapshot and image against garbage collection."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import any_pb2, empty_pb2

from .._proto.containerd.api.services.containers.v1 import containers_pb2 as pb
from .channel import Service
from .convert import label_mask, to_datetime
from .models import Container

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def _container(p: pb.Container) -> Container:
    return Container(p.id, p.image, dict(p.labels), p.runtime.name, bytes(p.spec.value), p.snapshotter,
                     p.snapshot_key, to_datetime(p, "created_at"), to_datetime(p, "updated_at"))


def _to_pb(c: Container) -> pb.Container:
    return pb.Container(id=c.id, image=c.image, labels=dict(c.labels),
                        runtime=pb.Container.Runtime(name=c.runtime),
                        spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=c.spec),
                        snapshotter=c.snapshotter, snapshot_key=c.snapshot_key)


class ContainerStore(Service):
    SERVICE = "containerd.services.containers.v1.Containers"

    def get(self, id: str) -> Container:
        return _container(self._call("Get", pb.GetContainerRequest(id=id), pb.GetContainerResponse).container)

    def list(self, filters: Sequence[str] = ()) -> list[Container]:
        resp = self._call("List", pb.ListContainersRequest(filters=list(filters)), pb.ListContainersResponse)
        return [_container(c) for c in resp.containers]

    def create(self, container: Container) -> Container:
        req = pb.CreateContainerRequest(container=_to_pb(container))
        return _container(self._call("Create", req, pb.CreateContainerResponse).container)

    def update_labels(self, id: str, labels: Mapping[str, str]) -> Container:
        """Set only these labels (an empty value removes the key)."""
        values, mask = label_mask(labels)
        req = pb.UpdateContainerRequest(container=pb.Container(id=id, labels=values))
        req.update_mask.CopyFrom(mask)
        return _container(self._call("Update", req, pb.UpdateContainerResponse).container)

    def delete(self, id: str) -> None:
        self._call("Delete", pb.DeleteContainerRequest(id=id), empty_pb2.Empty)
