"""The standard test images every integration test can pull, and what each must look like once unpacked."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import imagebuild as ib

MARKER_AMD64 = ib.layer_tar({"platform": b"amd64\n"})
MARKER_ARM64 = ib.layer_tar({"platform": b"arm64\n"})


@dataclass(frozen=True)
class TestImage:
    ref: str  # host/repo:tag
    digest: str  # of what the tag points at (index or manifest)
    expect_files: dict[str, bytes | None] = field(default_factory=dict)  # None: must not exist
    built: ib.BuiltImage | None = None


def _multilayer_layers() -> list[bytes]:
    return [
        ib.busybox_layer(),
        ib.layer_tar({"data/a.txt": b"a\n", "data/b.txt": b"b\n"}),
        ib.layer_tar({"data/b.txt": ib.Whiteout(), "data/c.txt": b"c\n"}),
    ]


def catalog() -> dict[str, tuple[str, ib.BuiltImage, dict[str, bytes | None]]]:
    """name → (repo:tag, image, expected files)."""
    bb = ib.busybox_layer()
    ml = _multilayer_layers()
    ml_expect: dict[str, bytes | None] = {"/data/a.txt": b"a\n", "/data/b.txt": None, "/data/c.txt": b"c\n"}
    amd = ib.image([bb, MARKER_AMD64])
    arm = ib.image([MARKER_ARM64], platform=("linux", "arm64"))
    amd_d = ib.image([bb, MARKER_AMD64], docker=True)
    arm_d = ib.image([MARKER_ARM64], docker=True, platform=("linux", "arm64"))
    return {
        "busybox": ("library/busybox:latest", ib.image([bb]), {}),
        "multilayer": ("test/multilayer:v1", ib.image(ml), ml_expect),
        "zstd": ("test/zstd:v1", ib.image(ml, compression="zstd"), ml_expect),
        "plain": ("test/plain:v1", ib.image(ml, compression="none"), ml_expect),
        "docker": ("test/docker:v1", ib.image(ml, docker=True), ml_expect),
        "multiarch": ("test/multiarch:v1", ib.index([amd, arm]), {"/platform": b"amd64\n"}),
        "dockerlist": ("test/dockerlist:v1", ib.index([amd_d, arm_d], docker=True), {"/platform": b"amd64\n"}),
    }


def push_catalog(registry_url: str, host: str, **kw: object) -> dict[str, TestImage]:
    out: dict[str, TestImage] = {}
    for name, (repo_tag, img, expect) in catalog().items():
        repo, tag = repo_tag.rsplit(":", 1)
        ib.push(img, registry_url, repo, tag, **kw)  # type: ignore[arg-type]
        out[name] = TestImage(f"{host}/{repo_tag}", img.digest, expect, img)
    return out
