"""containerd's image records: a name pointing at a manifest or index, and a GC root for everything under it."""
from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.images.v1 import images_pb2 as pb
from ..errors import AlreadyExists, NotFound
from .channel import Service
from .convert import descriptor_from_pb, descriptor_to_pb, field_mask, to_datetime
from .models import Image


def _image(p: pb.Image) -> Image:
    return Image(p.name, descriptor_from_pb(p.target), dict(p.labels), to_datetime(p, "created_at"),
                 to_datetime(p, "updated_at"))


def _to_pb(image: Image) -> pb.Image:
    return pb.Image(name=image.name, labels=dict(image.labels), target=descriptor_to_pb(image.target))


class ImageStore(Service):
    SERVICE = "containerd.services.images.v1.Images"

    def get(self, name: str) -> Image:
        return _image(self._call("Get", pb.GetImageRequest(name=name), pb.GetImageResponse).image)

    def list(self, filters: Sequence[str] = ()) -> list[Image]:
        resp = self._call("List", pb.ListImagesRequest(filters=list(filters)), pb.ListImagesResponse)
        return [_image(i) for i in resp.images]

    def create(self, image: Image) -> Image:
        """Create the record; AlreadyExists if the name is taken."""
        return _image(self._call("Create", pb.CreateImageRequest(image=_to_pb(image)), pb.CreateImageResponse).image)

    def update(self, image: Image, fields: Sequence[str] | None = None) -> Image:
        """Update ``fields`` (mask paths: 'target', 'labels', 'labels.<k>', 'annotations'); None = target and
        all labels."""
        req = pb.UpdateImageRequest(image=_to_pb(image))
        if fields:
            req.update_mask.CopyFrom(field_mask(fields))
        return _image(self._call("Update", req, pb.UpdateImageResponse).image)

    def put(self, image: Image) -> Image:
        """Create, or point an existing name at the new target with the new labels (Go's createNewImage)."""
        for _ in range(3):
            try:
                return self.create(image)
            except AlreadyExists:
                pass
            try:
                return self.update(image, ["target", "labels"])
            except NotFound:
                continue  # deleted between our create and update: create again
        return self.update(image, ["target", "labels"])

    def delete(self, name: str, sync: bool = False) -> None:
        """Delete the record; ``sync`` runs garbage collection before returning."""
        self._call("Delete", pb.DeleteImageRequest(name=name, sync=sync), empty_pb2.Empty)
