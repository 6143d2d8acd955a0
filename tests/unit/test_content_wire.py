"""The hand-encoded WRITE request of ContentWriter.write_all decodes, with containerd's own protobuf schema, to the
same message protobuf would build: every offset width (1 to 9 varint bytes) and empty, small and 1 MiB chunks."""
from __future__ import annotations

import pytest
from ctk_shared._proto.containerd.api.services.content.v1 import content_pb2 as pb
from ctk_shared.containerd.content import _write_request


@pytest.mark.parametrize("offset", [0, 1, 127, 128, 16_383, 16_384, 1 << 31, (1 << 62) + 5])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 1 << 20])
def test_write_request_matches_protobuf(offset: int, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = _write_request(offset, data).SerializeToString()
    msg = pb.WriteContentRequest.FromString(wire)
    assert (msg.action, msg.offset, msg.data, msg.ref, msg.total) == (pb.WRITE, offset, data, "", 0)
    if offset and size:  # proto3 leaves a zero offset or empty data out; ours says them, which decodes the same
        assert wire == pb.WriteContentRequest(action=pb.WRITE, offset=offset, data=data).SerializeToString()
