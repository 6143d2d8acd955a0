"""What a kubelet sees: the CRI ImageService of a containerd whose CRI plugin is on, over its socket.

Only the few messages the tests need are declared here, by hand, from the CRI API (``runtime.v1``):

* ``ListImagesRequest {ImageFilter filter = 1}`` — sent empty;
* ``ImageStatusRequest {ImageSpec image = 1; bool verbose = 2}``, ``ImageSpec {string image = 1}``;
* ``ListImagesResponse {repeated Image images = 1}``, ``ImageStatusResponse {Image image = 1}``;
* ``Image {string id = 1; repeated string repo_tags = 2; repeated string repo_digests = 3; uint64 size = 4}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import grpc

_SERVICE = "/runtime.v1.ImageService/"


@dataclass
class CriImage:
    id: str = ""
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) for each field: an int for varints, bytes for length-delimited ones."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
            out.append((num, v))
        elif wire == 2:
            n, i = _varint(buf, i)
            out.append((num, buf[i:i + n]))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def _image(buf: bytes) -> CriImage:
    img = CriImage()
    for num, v in _fields(buf):
        if num == 1 and isinstance(v, bytes):
            img.id = v.decode()
        elif num == 2 and isinstance(v, bytes):
            img.repo_tags.append(v.decode())
        elif num == 3 and isinstance(v, bytes):
            img.repo_digests.append(v.decode())
        elif num == 4 and isinstance(v, int):
            img.size = v
    return img


def _bytes_field(num: int, data: bytes) -> bytes:
    key, n = (num << 3) | 2, len(data)
    out = bytearray([key])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + data


class CriImages:
    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(f"unix://{address}")

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: bytes) -> bytes:
        rpc = self._channel.unary_unary(_SERVICE + method, request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        return rpc(request, timeout=10)

    def list(self) -> list[CriImage]:
        return [_image(v) for num, v in _fields(self._call("ListImages", b"")) if num == 1 and isinstance(v, bytes)]

    def status(self, ref: str) -> CriImage | None:
        """The image CRI resolves ``ref`` (tag, repo@digest or ID) to; None when it finds none."""
        req = _bytes_field(1, _bytes_field(1, ref.encode()))
        for num, v in _fields(self._call("ImageStatus", req)):
            if num == 1 and isinstance(v, bytes):
                return _image(v)
        return None
