"""The diff service: apply a layer blob onto mounts (unpack), or compute a layer from two mount sets."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import any_pb2

from .._proto.containerd.api.services.diff.v1 import diff_pb2 as pb
from ..oci import Descriptor
from .channel import Service
from .convert import descriptor_from_pb, descriptor_to_pb, mounts_to_pb
from .models import Mount


class DiffService(Service):
    SERVICE = "containerd.services.diff.v1.Diff"

    def apply(self, desc: Descriptor, mounts: Sequence[Mount],
              payloads: Mapping[str, tuple[str, bytes]] | None = None) -> Descriptor:
        """Unpack the layer ``desc`` (from the content store) onto ``mounts``; returns the uncompressed tar's
        descriptor (its digest is the diffID). ``payloads`` are stream-processor id -> (type_url, value),
        sent as Any with the type URL verbatim (containerd's URLs have no type.googleapis.com/ prefix)."""
        req = pb.ApplyRequest(diff=descriptor_to_pb(desc), mounts=mounts_to_pb(mounts))
        for pid, (type_url, value) in (payloads or {}).items():
            req.payloads[pid].CopyFrom(any_pb2.Any(type_url=type_url, value=value))
        return descriptor_from_pb(self._call("Apply", req, pb.ApplyResponse).applied)

    def diff(self, left: Sequence[Mount], right: Sequence[Mount], media_type: str = "", ref: str = "",
             labels: Mapping[str, str] | None = None) -> Descriptor:
        """Write the changes from ``left`` to ``right`` as a layer into the content store (gzip when
        ``media_type`` is empty; 1.6 cannot produce zstd). Run it under a lease."""
        req = pb.DiffRequest(left=mounts_to_pb(left), right=mounts_to_pb(right), media_type=media_type, ref=ref,
                             labels=dict(labels or {}))
        return descriptor_from_pb(self._call("Diff", req, pb.DiffResponse).diff)
