"""containerd's container records. A record roots its snapshot and image against garbage collection."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from google.protobuf import any_pb2, empty_pb2

from .._proto.containerd.api.services.containers.v1 import containers_pb2 as pb
from .channel import Service
from .convert import field_mask, label_mask, to_datetime
from .models import Container

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
UPDATE_FIELDS = ("labels", "spec", "image", "snapshotkey", "extensions")  # and labels.<k>, extensions.<k>


def runc_options(*, binary_name: str = "", root: str = "", systemd_cgroup: bool = False,
                 no_pivot_root: bool = False, no_new_keyring: bool = False, shim_cgroup: str = "",
                 io_uid: int = 0, io_gid: int = 0, criu_path: str = "") -> tuple[str, bytes]:
    """runc shim options (``containerd.runc.v1.Options``) as the ``(type_url, value)`` pair that
    :meth:`ContainerStore.create` and ``tasks.create`` take. Unset fields keep the shim's defaults
    (binary ``runc``, root ``/run/containerd/runc``)."""
    from .._proto.containerd.runtime.v2.runc.options import oci_pb2

    opts = oci_pb2.Options(binary_name=binary_name, root=root, systemd_cgroup=systemd_cgroup,
                           no_pivot_root=no_pivot_root, no_new_keyring=no_new_keyring, shim_cgroup=shim_cgroup,
                           io_uid=io_uid, io_gid=io_gid, criu_path=criu_path)
    return RUNC_OPTIONS_TYPE_URL, opts.SerializeToString()


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

    def create(self, container: Container, runtime_options: tuple[str, bytes] | None = None) -> Container:
        """Store the record; ``runtime_options`` is the runtime's options Any as ``(type_url, value)``, e.g.
        :func:`runc_options` (used by every task of the container unless the task gives its own)."""
        p = _to_pb(container)
        if runtime_options is not None:
            p.runtime.options.CopyFrom(any_pb2.Any(type_url=runtime_options[0], value=runtime_options[1]))
        req = pb.CreateContainerRequest(container=p)
        return _container(self._call("Create", req, pb.CreateContainerResponse).container)

    def runtime_options(self, id: str) -> tuple[str, bytes] | None:
        """The container's runtime options Any as ``(type_url, value)``, or None when it has none."""
        p = self._call("Get", pb.GetContainerRequest(id=id), pb.GetContainerResponse).container
        if not p.runtime.HasField("options"):
            return None
        return p.runtime.options.type_url, bytes(p.runtime.options.value)

    def update(self, container: Container, fields: Iterable[str]) -> Container:
        """Write the given fields of ``container`` (mask paths ``labels``, ``labels.<k>``, ``spec``, ``image``,
        ``snapshotkey``, ``extensions``); ``labels`` replaces the whole map. Other paths are InvalidArgument.
        No fields at all replaces every updatable field (``container`` must then repeat the record's runtime and
        snapshotter, which are immutable)."""
        req = pb.UpdateContainerRequest(container=_to_pb(container))
        req.update_mask.CopyFrom(field_mask(fields))
        return _container(self._call("Update", req, pb.UpdateContainerResponse).container)

    def update_spec(self, id: str, spec: bytes) -> Container:
        """Replace the OCI spec (JSON bytes); a running task keeps the spec it was created with."""
        return self.update(Container(id, spec=spec), ["spec"])

    def update_labels(self, id: str, labels: Mapping[str, str]) -> Container:
        """Set only these labels (an empty value removes the key). No labels: nothing to do (an empty mask
        would mean "replace every field")."""
        if not labels:
            return self.get(id)
        values, mask = label_mask(labels)
        req = pb.UpdateContainerRequest(container=pb.Container(id=id, labels=values))
        req.update_mask.CopyFrom(mask)
        return _container(self._call("Update", req, pb.UpdateContainerResponse).container)

    def delete(self, id: str) -> None:
        self._call("Delete", pb.DeleteContainerRequest(id=id), empty_pb2.Empty)
