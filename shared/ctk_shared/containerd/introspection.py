"""Which plugins the daemon loaded (snapshotters, differs, the restart monitor) and why others failed."""
from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.introspection.v1 import introspection_pb2 as pb
from .channel import Service
from .models import PluginInfo


class Introspection(Service):
    SERVICE = "containerd.services.introspection.v1.Introspection"

    def plugins(self, filters: Sequence[str] = ()) -> list[PluginInfo]:
        """Filters like ``type==io.containerd.snapshotter.v1`` or ``id==overlayfs``."""
        resp = self._call("Plugins", pb.PluginsRequest(filters=list(filters)), pb.PluginsResponse)
        return [PluginInfo(p.type, p.id, dict(p.exports), p.init_err.message if p.HasField("init_err") else "",
                           tuple(p.requires), tuple(p.capabilities)) for p in resp.plugins]

    def server_uuid(self) -> str:
        return self._call("Server", empty_pb2.Empty(), pb.ServerResponse).uuid
