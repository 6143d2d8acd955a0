"""Deterministic test images, built locally from Debian's static busybox (no network, stable digests).

Images are assembled in memory (layers, configs, manifests, indexes) and either written as an OCI layout
or pushed straight to a test registry with plain HTTP calls, so the test rig does not depend on the
product code it tests.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import requests
import zstandard

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "true", "false", "sleep", "httpd", "wget", "env", "id", "hostname", "mkdir",
           "rm", "ps", "kill", "stat", "date", "head", "tail", "grep", "sed", "seq", "yes", "dd", "sync", "touch",
           "printf", "test", "nc", "sha256sum", "wc", "mount", "uname", "cp", "mv", "ln", "chmod", "top", "vi"]
CREATED = "2024-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Whiteout:
    """Marks a path deleted in this layer (an ``.wh.`` entry)."""


def layer_tar(files: dict[str, bytes | str | Whiteout | tuple[bytes, int]], dirs: dict[str, int] | None = None) -> bytes:
    """An uncompressed layer tar with fixed metadata. ``str`` values are symlink targets."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()

        def add_dir(path: str, mode: int = 0o755) -> None:
            if path in made or not path:
                return
            add_dir(os.path.dirname(path))
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
            made.add(path)

        for d, mode in sorted((dirs or {}).items()):
            add_dir(os.path.dirname(d.strip("/")))
            info = tarfile.TarInfo(d.strip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
            made.add(d.strip("/"))
        for path, value in sorted(files.items()):
            path = path.strip("/")
            add_dir(os.path.dirname(path))
            if isinstance(value, Whiteout):
                path = os.path.join(os.path.dirname(path), ".wh." + os.path.basename(path))
                value = b""
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if isinstance(value, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, value, 0o777
                tar.addfile(info)
                continue
            data, mode = value if isinstance(value, tuple) else (value, 0o644)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_layer() -> bytes:
    files: dict[str, bytes | str | Whiteout | tuple[bytes, int]] = {
        "bin/busybox": (Path(BUSYBOX).read_bytes(), 0o755),
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    }
    files.update({f"bin/{a}": "busybox" for a in APPLETS})
    return layer_tar(files, dirs={"tmp": 0o1777, "root": 0o700, "proc": 0o755, "sys": 0o755, "dev": 0o755,
                                  "etc": 0o755})


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def compress(raw: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(raw)
    return raw


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass
class BuiltImage:
    """A manifest or index with every blob under it, ready to write or push."""

    top: Blob
    blobs: list[Blob] = field(default_factory=list)
    platform: dict[str, str] | None = None

    @property
    def digest(self) -> str:
        return self.top.digest


def image(layers: list[bytes], *, compression: str = "gzip", docker: bool = False,
          config: dict[str, object] | None = None, platform: tuple[str, str] = ("linux", "amd64")) -> BuiltImage:
    kind = "docker" if docker else "oci"
    blobs = [Blob(LAYER_TYPES[(kind, compression)], compress(raw, compression)) for raw in layers]
    cfg = {
        "created": CREATED, "architecture": platform[1], "os": platform[0],
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"],
                   **(config or {})},
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw) for raw in layers]},
        "history": [{"created": CREATED, "created_by": f"ctk test layer {i}"} for i in range(len(layers))],
    }
    cfg_blob = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
                "config": cfg_blob.descriptor(), "layers": [b.descriptor() for b in blobs]}
    top = Blob(manifest["mediaType"], json.dumps(manifest, sort_keys=True).encode())  # type: ignore[arg-type]
    return BuiltImage(top, [cfg_blob, *blobs], {"os": platform[0], "architecture": platform[1]})


def index(images: list[BuiltImage], *, docker: bool = False) -> BuiltImage:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX,
           "manifests": [i.top.descriptor(platform=i.platform) for i in images]}
    top = Blob(doc["mediaType"], json.dumps(doc, sort_keys=True).encode())  # type: ignore[arg-type]
    blobs = [b for i in images for b in (*i.blobs, i.top)]
    return BuiltImage(top, blobs)


def write_layout(img: BuiltImage, root: Path, ref_name: str) -> Path:
    """An OCI image layout directory (what skopeo's ``oci:DIR:REF`` reads)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for b in (*img.blobs, img.top):
        (blobs / b.digest[7:]).write_bytes(b.data)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    idx_path = root / "index.json"
    idx = json.loads(idx_path.read_text()) if idx_path.exists() else {"schemaVersion": 2, "manifests": []}
    idx["manifests"] = [m for m in idx["manifests"]
                        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref_name]
    idx["manifests"].append(img.top.descriptor(annotations={"org.opencontainers.image.ref.name": ref_name}))
    idx_path.write_text(json.dumps(idx))
    return root


def push(img: BuiltImage, registry_url: str, repo: str, tag: str, *, auth: tuple[str, str] | None = None,
         verify: bool | str = True) -> str:
    """Upload with plain distribution-API calls (monolithic uploads); returns the manifest digest."""
    s = requests.Session()
    s.auth = auth
    s.verify = verify
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    seen: set[str] = set()
    for b in img.blobs:
        if b.digest in seen or b.media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
            continue
        seen.add(b.digest)
        r = s.post(f"{registry_url}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else registry_url + loc
        sep = "&" if "?" in loc else "?"
        s.put(f"{loc}{sep}digest={b.digest}", data=b.data,
              headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    for b in img.blobs:  # child manifests of an index, by digest
        if b.media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
            s.put(f"{registry_url}/v2/{repo}/manifests/{b.digest}", data=b.data,
                  headers={"Content-Type": b.media_type}).raise_for_status()
    r = s.put(f"{registry_url}/v2/{repo}/manifests/{tag}", data=img.top.data,
              headers={"Content-Type": img.top.media_type})
    r.raise_for_status()
    assert r.headers.get("Docker-Content-Digest", img.digest) == img.digest
    return img.digest


def write_archive(img: BuiltImage, path: Path, name: str) -> Path:
    """An OCI layout as a tar (what ``ctk-pull load`` and ``skopeo oci-archive:`` read)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_layout(img, Path(d), name)
        idx = json.loads((Path(d) / "index.json").read_text())
        idx["manifests"][-1]["annotations"]["io.containerd.image.name"] = name
        (Path(d) / "index.json").write_text(json.dumps(idx))
        with tarfile.open(path, "w") as tar:
            for p in sorted(Path(d).rglob("*")):
                tar.add(p, arcname=str(p.relative_to(d)), recursive=False)
    return path


def web_image() -> BuiltImage:
    """busybox httpd serving a page on port 80: the demo's and the run tests' web server."""
    page = b"<h1>hello from ctk</h1>\n"
    return image([busybox_layer(), layer_tar({"www/index.html": page})],
                 config={"Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/www"], "ExposedPorts": {"80/tcp": {}},
                         "WorkingDir": "/www"})


if __name__ == "__main__":  # used by scripts/demo: python3 -m tests.support.imagebuild web OUT.tar NAME
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "web":
        sys.exit("usage: python3 -m tests.support.imagebuild web OUT.tar NAME")
    write_archive(web_image(), Path(sys.argv[2]), sys.argv[3])
