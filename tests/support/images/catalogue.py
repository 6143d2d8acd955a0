"""The standard catalogue of test images the integration tests use (fixture ``test_images``)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layouts import ImageInfo, LayerInfo, build_image, build_index
from .media import BUSYBOX_PATH, DEFAULT_PATH, DOCKER_LIST, GROUP, OCI_INDEX, PASSWD, host_platform, platform_string
from .push import push_layout
from .tars import busybox_layer_tar, extra_layer_tar


# --- the standard catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogImage:
    """A standard test image as pushed to the test registry."""
    name: str  # catalogue key, e.g. "busybox"
    ref: str  # full ref, e.g. "127.0.0.1:5000/library/busybox:latest"
    digest: str  # what the tag points at: the manifest's, or the index's for multi-platform images
    media_type: str  # of that document
    layout: Path  # the OCI layout it was built in
    layout_ref: str  # its ref name inside the layout
    image: ImageInfo  # the host platform's image (for an index: the host entry)
    platforms: dict[str, ImageInfo] = field(default_factory=dict)  # "linux/arm64" -> image, for indexes
    # what an unpacked rootfs of the host platform's image holds: path -> content, None = must not exist
    expect_files: dict[str, bytes | None] = field(default_factory=dict)
    expect_symlinks: dict[str, str] = field(default_factory=dict)  # path -> link target
    expect_modes: dict[str, int] = field(default_factory=dict)  # path -> permission bits (S_IMODE)
    platform_files: dict[str, dict[str, bytes | None]] = field(default_factory=dict)  # platform -> expect_files

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    @property
    def host(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    @property
    def config(self) -> dict[str, Any]:
        """The host image's run config (``Cmd``, ``Env``, ...)."""
        return self.image.config.get("config", {})

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        return self.image.layers


STANDARD_REPOS = {
    "busybox": "library/busybox:latest",
    "multilayer": "test/multilayer:v1",
    "zstd": "test/zstd:v1",
    "plain": "test/plain:v1",
    "docker": "test/docker:v1",
    "multiarch": "test/multiarch:v1",
    "dockerlist": "test/dockerlist:v1",
}
BUSYBOX_CONFIG = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
OTHER_ARCH = "arm64"


def _busybox_expectations(busybox: Path) -> tuple[dict[str, bytes | None], dict[str, str], dict[str, int]]:
    files: dict[str, bytes | None] = {"/etc/passwd": PASSWD, "/etc/group": GROUP,
                                      "/bin/busybox": busybox.read_bytes()}
    links = {"/bin/sh": "busybox", "/bin/ls": "busybox", "/usr/bin/env": "../../bin/busybox"}
    modes = {"/tmp": 0o1777, "/root": 0o700, "/bin/busybox": 0o755}
    return files, links, modes


def build_standard_layouts(workdir: str | os.PathLike[str], *, busybox: str | os.PathLike[str] = BUSYBOX_PATH,
                           ) -> dict[str, dict[str, Any]]:
    """Build every standard image into ``<workdir>/<name>/`` (one OCI layout each, tagged ``<name>``).

    Returns name -> the keyword arguments of :class:`CatalogImage` except ``ref`` (no registry involved).
    """
    work = Path(workdir)
    bb_path = Path(busybox)
    bb = busybox_layer_tar(bb_path)
    bb_files, bb_links, bb_modes = _busybox_expectations(bb_path)
    host = host_platform()
    host_s = platform_string(host)
    out: dict[str, dict[str, Any]] = {}

    def single(name: str, layers: list[bytes], files: Mapping[str, bytes | None], **kw: Any) -> None:
        layout = work / name
        info = build_image(layout, name, layers, config=BUSYBOX_CONFIG, **kw)
        out[name] = {"name": name, "digest": info.manifest_digest, "media_type": info.media_type, "layout": layout,
                     "layout_ref": name, "image": info, "expect_files": {**bb_files, **files},
                     "expect_symlinks": dict(bb_links), "expect_modes": dict(bb_modes)}

    # 1. the plain old busybox: one gzip layer, Cmd ["sh"]
    single("busybox", [bb], {}, history=["COPY busybox / # ctk test image"])

    # 2. three layers with a whiteout and an opaque directory; 3-5. the same in the other encodings
    l2 = extra_layer_tar({"/data/a.txt": b"a\n", "/data/b.txt": b"b\n", "/opq/old.txt": b"old\n",
                          "/data/run.sh": (b"#!/bin/sh\necho run\n", 0o755)})
    l3 = extra_layer_tar({"/data/c.txt": b"c\n", "/opq/new.txt": b"new\n"}, whiteouts=["/data/b.txt"],
                         opaque_dirs=["/opq"])
    ml_files: dict[str, bytes | None] = {
        "/data/a.txt": b"a\n", "/data/b.txt": None, "/data/c.txt": b"c\n", "/data/.wh.b.txt": None,
        "/opq/old.txt": None, "/opq/new.txt": b"new\n", "/opq/.wh..wh..opq": None,
        "/data/run.sh": b"#!/bin/sh\necho run\n"}
    for name, kw in (("multilayer", {}), ("zstd", {"compression": "zstd"}), ("plain", {"compression": "none"}),
                     ("docker", {"docker_media_types": True})):
        single(name, [bb, l2, l3], ml_files, **kw)
        out[name]["expect_modes"]["/data/run.sh"] = 0o755

    # 6-7. multi-platform: host = busybox + /platform, the other arch = just /platform (never run)
    other = ("linux", OTHER_ARCH if host[1] != OTHER_ARCH else "amd64")
    other_s = platform_string(other)
    for name, docker in (("multiarch", False), ("dockerlist", True)):
        layout = work / name
        host_img = build_image(layout, None, [bb, extra_layer_tar({"/platform": f"{host[1]}\n".encode()})],
                               config=BUSYBOX_CONFIG, platform=host, docker_media_types=docker)
        other_img = build_image(layout, None, [extra_layer_tar({"/platform": f"{other[1]}\n".encode()})],
                                config={"Env": [DEFAULT_PATH], "Cmd": ["/bin/true"]}, platform=other,
                                docker_media_types=docker)
        digest = build_index(layout, name, [host_img, other_img], docker_media_types=docker)
        out[name] = {
            "name": name, "digest": digest, "media_type": DOCKER_LIST if docker else OCI_INDEX, "layout": layout,
            "layout_ref": name, "image": host_img, "platforms": {host_s: host_img, other_s: other_img},
            "expect_files": {**bb_files, "/platform": f"{host[1]}\n".encode()},
            "expect_symlinks": dict(bb_links), "expect_modes": dict(bb_modes),
            "platform_files": {host_s: {"/platform": f"{host[1]}\n".encode()},
                               other_s: {"/platform": f"{other[1]}\n".encode(), "/bin/busybox": None}},
        }
    return out


def standard_images(workdir: str | os.PathLike[str], registry_host: str, *, tls_verify: bool = False,
                    creds: str | tuple[str, str] | None = None, cert_dir: str | os.PathLike[str] | None = None,
                    ) -> dict[str, CatalogImage]:
    """Build the standard images and push them to ``registry_host`` (e.g. ``127.0.0.1:5000``).

    Returns name -> :class:`CatalogImage`; names and repositories are in ``STANDARD_REPOS``:
      busybox     library/busybox:latest  1 gzip layer, Cmd ["sh"]
      multilayer  test/multilayer:v1      3 gzip layers: busybox; /data/{a,b}.txt, /opq/old.txt, /data/run.sh
                                          (0755); whiteout of /data/b.txt + /data/c.txt, opaque /opq + /opq/new.txt
      zstd / plain / docker               the multilayer image with zstd layers / uncompressed layers /
                                          Docker schema2 media types (gzip)
      multiarch   test/multiarch:v1       OCI index: host (busybox + /platform "amd64\\n") and linux/arm64
                                          (only /platform "arm64\\n")
      dockerlist  test/dockerlist:v1      the same as a Docker manifest list of schema2 manifests
    """
    built = build_standard_layouts(workdir)
    out = {}
    for name, kw in built.items():
        ref = f"{registry_host}/{STANDARD_REPOS[name]}"
        push_layout(kw["layout"], kw["layout_ref"], ref, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir)
        out[name] = CatalogImage(ref=ref, **kw)
    return out


WEB_PAGE = b"<h1>hello from ctk</h1>\n"


def web_image(layout_dir: str | os.PathLike[str], ref_name: str) -> ImageInfo:
    """busybox httpd serving ``WEB_PAGE`` on port 80: the demo's web server."""
    return build_image(layout_dir, ref_name, [busybox_layer_tar(), extra_layer_tar({"www/index.html": WEB_PAGE})],
                       config={"Env": [DEFAULT_PATH], "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"],
                               "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/www"})


def busybox_image(layout_dir: str | os.PathLike[str], ref_name: str) -> ImageInfo:
    """A one-layer busybox base image (Debian's static busybox and its applet links), nothing else."""
    return build_image(layout_dir, ref_name, [busybox_layer_tar()], config={"Env": [DEFAULT_PATH], "Cmd": ["sh"]})


if __name__ == "__main__":  # scripts/demo: python3 -m tests.support.images web|busybox LAYOUT_DIR REF
    import sys

    makers = {"web": web_image, "busybox": busybox_image}
    if len(sys.argv) != 4 or sys.argv[1] not in makers:
        sys.exit("usage: python3 -m tests.support.images web|busybox LAYOUT_DIR REF")
    makers[sys.argv[1]](sys.argv[2], sys.argv[3])
