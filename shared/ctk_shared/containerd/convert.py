"""Conversions between containerd's protobuf types and ctk's records (shared by the service wrappers)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf import field_mask_pb2

from .._proto.containerd.api.types import descriptor_pb2, mount_pb2
from ..oci import Descriptor
from .models import Mount

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp


def to_datetime(msg: Any, name: str) -> datetime | None:
    """``msg.<name>`` as an aware UTC datetime, or None when unset."""
    if not msg.HasField(name):
        return None
    ts: Timestamp = getattr(msg, name)
    return ts.ToDatetime(tzinfo=UTC)


def descriptor_to_pb(desc: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                                     annotations=dict(desc.annotations))


def descriptor_from_pb(pb: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(pb.media_type, pb.digest, pb.size, dict(pb.annotations))


def mount_to_pb(m: Mount) -> mount_pb2.Mount:
    return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))


def mounts_to_pb(mounts: Iterable[Mount]) -> list[mount_pb2.Mount]:
    return [mount_to_pb(m) for m in mounts]


def mounts_from_pb(pbs: Iterable[mount_pb2.Mount]) -> list[Mount]:
    return [Mount(p.type, p.source, p.target, tuple(p.options)) for p in pbs]


def label_mask(labels: Mapping[str, str]) -> tuple[dict[str, str], field_mask_pb2.FieldMask]:
    """Labels to send and the ``labels.<key>`` mask that sets exactly those keys; "" removes a key."""
    return ({k: v for k, v in labels.items() if v != ""},
            field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels]))


def field_mask(paths: Iterable[str]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))
