"""Image records a kubelet sees: in containerd's ``k8s.io`` namespace, every image ctk writes also gets the names
and the label that containerd's CRI plugin gives the images it pulls itself.

The CRI plugin groups all image names that lead to the same config into one CRI image whose ID is the config
digest: names with a tag become ``RepoTags``, ``repo@sha256:…`` names become ``RepoDigests``. A kubelet asks for
images by tag, by ``repo@digest`` (an image spec pinned by digest) and by ID, so each of the three must exist as a
name. ``io.cri-containerd.image=managed`` marks the records as the CRI's own (``crictl``/``ctr -n k8s.io`` and
nerdctl set it too). Outside ``k8s.io`` nothing changes: a plain ``put``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import oci
from . import reference as refs
from .errors import CtkError
from .images import read_blob, resolve_manifest

if TYPE_CHECKING:
    from .containerd import Client, Image

CRI_NAMESPACE = "k8s.io"
MANAGED_LABEL = "io.cri-containerd.image"
MANAGED_VALUE = "managed"


def put_image(client: Client, image: Image) -> Image:
    """Create or repoint ``image``; in ``k8s.io`` also its ``repo@digest`` and ID names, all labelled managed."""
    if client.namespace != CRI_NAMESPACE:
        return client.images.put(image)
    image = replace(image, labels={**image.labels, MANAGED_LABEL: MANAGED_VALUE})
    record = client.images.put(image)
    for name in cri_names(client, image):
        if name != image.name:
            client.images.put(replace(image, name=name, created_at=None, updated_at=None))
    return record


def cri_names(client: Client, image: Image) -> list[str]:
    """The names the CRI plugin would give ``image``: ``repo@digest`` (for a name with a repository) and the ID."""
    names: list[str] = []
    try:
        ref = None if image.name.startswith("sha256:") else refs.parse(image.name, default_tag=False)
    except CtkError:
        ref = None  # not a repository name: only the ID
    if ref is not None:
        names.append(f"{ref.name}@{image.target.digest}")
    mdesc = resolve_manifest(client, image.target)
    manifest = oci.Manifest.parse(read_blob(client, mdesc), mdesc.media_type)
    names.append(manifest.config.digest)
    return names
