"""The test-image builder itself: layouts are valid and digests do not change from one build to the next."""
from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
import zstandard

from tests.support import images as im


def _members(tar_bytes: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        return {m.name: m for m in tf.getmembers()}


def _digests(built: dict) -> dict[str, tuple]:
    return {name: (kw["digest"], kw["image"].config_digest, tuple(kw["image"].layer_digests),
                   tuple(sorted((p, i.manifest_digest) for p, i in kw.get("platforms", {}).items())))
            for name, kw in built.items()}


def test_standard_layouts_are_deterministic_and_valid(tmp_path):
    a = im.build_standard_layouts(tmp_path / "a")
    b = im.build_standard_layouts(tmp_path / "b")
    assert set(a) == set(im.STANDARD_REPOS)
    assert _digests(a) == _digests(b)
    for name, kw in a.items():
        assert im.validate_layout(kw["layout"]) == [], name
        # identical trees, byte for byte
        files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / name).rglob("*") if p.is_file())
        files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b" / name).rglob("*") if p.is_file())
        assert files_a == files_b
        for rel in files_a:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_layout_files(tmp_path):
    info = im.build_image(tmp_path, "v1", [im.extra_layer_tar({"/a": b"a"})])
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == im.OCI_INDEX
    [entry] = index["manifests"]
    assert entry == {"mediaType": im.OCI_MANIFEST, "digest": info.manifest_digest, "size": info.manifest_size,
                     "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    manifest = json.loads(im.read_blob(tmp_path, info.manifest_digest))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == im.OCI_MANIFEST
    assert manifest["config"] == {"mediaType": im.OCI_CONFIG, "digest": info.config_digest, "size": info.config_size}
    assert manifest["layers"] == [{"mediaType": im.OCI_LAYER_GZIP, "digest": info.layers[0].digest,
                                   "size": info.layers[0].size}]
    config = json.loads(im.read_blob(tmp_path, info.config_digest))
    assert config["rootfs"] == {"type": "layers", "diff_ids": info.diff_ids}
    assert (config["os"], config["architecture"]) == im.host_platform()
    assert config["created"] == im.CREATED and len(config["history"]) == 1
    assert config["config"] == {"Env": [im.DEFAULT_PATH]}
    # blobs are named by their digest; the gzip member has mtime 0
    blob = im.read_blob(tmp_path, info.layers[0].digest)
    assert blob[4:8] == b"\0\0\0\0"
    assert im.sha256_digest(gzip.decompress(blob)) == info.diff_ids[0]


def test_retagging_replaces_the_entry(tmp_path):
    a = im.build_image(tmp_path, "v1", [im.extra_layer_tar({"/a": b"a"})])
    b = im.build_image(tmp_path, "v1", [im.extra_layer_tar({"/a": b"b"})])
    im.build_image(tmp_path, "v2", [im.extra_layer_tar({"/a": b"a"})])
    refs = im.layout_refs(tmp_path)
    assert set(refs) == {"v1", "v2"} and refs["v1"]["digest"] == b.digest != a.digest
    assert refs["v2"]["digest"] == a.digest


@pytest.mark.parametrize("compression,docker,layer_type", [
    ("gzip", False, im.OCI_LAYER_GZIP), ("zstd", False, im.OCI_LAYER_ZSTD), ("none", False, im.OCI_LAYER),
    ("gzip", True, im.DOCKER_LAYER_GZIP), ("none", True, im.DOCKER_LAYER),
])
def test_media_types(tmp_path, compression, docker, layer_type):
    layer = im.extra_layer_tar({"/x": b"x" * 1000})
    info = im.build_image(tmp_path, "t", [layer], compression=compression, docker_media_types=docker,
                          config={"Cmd": ["sh"], "WorkingDir": "/x", "ExposedPorts": {"80/tcp": {}}})
    assert info.media_type == (im.DOCKER_MANIFEST if docker else im.OCI_MANIFEST)
    assert info.config_media_type == (im.DOCKER_CONFIG if docker else im.OCI_CONFIG)
    assert info.layers[0].media_type == layer_type
    assert im.decompress(im.read_blob(tmp_path, info.layers[0].digest), layer_type) == layer
    if compression == "zstd":
        params = zstandard.get_frame_parameters(im.read_blob(tmp_path, info.layers[0].digest))
        assert params.content_size == len(layer) and params.has_checksum
    config = json.loads(im.read_blob(tmp_path, info.config_digest))
    assert config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert im.validate_layout(tmp_path) == []


def test_bad_combinations(tmp_path):
    with pytest.raises(ValueError):
        im.build_image(tmp_path, "t", [b""], compression="zstd", docker_media_types=True)
    with pytest.raises(ValueError):
        im.build_image(tmp_path, "t", [b""], compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        im.build_image(tmp_path, "t", [b""], docker_media_types=True, annotations={"a": "b"})
    oci = im.build_image(tmp_path, None, [im.extra_layer_tar({"/a": b""})])
    with pytest.raises(ValueError, match="Docker schema2"):
        im.build_index(tmp_path, "l", [oci], docker_media_types=True)
    with pytest.raises(ValueError):
        im.build_index(tmp_path, "l", [])


def test_busybox_layer():
    tar = im.busybox_layer_tar()
    members = _members(tar)
    bb = members["bin/busybox"]
    assert bb.isfile() and bb.mode == 0o755 and bb.size > 100_000
    for applet in ("sh", "ls", "cat", "echo", "true", "false", "sleep", "httpd", "wget", "env", "id", "hostname",
                   "mkdir", "rm", "ps", "kill", "stat", "date", "head", "tail", "grep", "sed", "seq", "yes", "dd",
                   "sync", "touch", "printf", "test", "nc"):
        m = members[f"bin/{applet}"]
        assert m.issym() and m.linkname == "busybox", applet
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["root"].isdir() and members["root"].mode == 0o700
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (im.MTIME, 0, 0, "root", "root"), m.name
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        passwd = tf.extractfile("etc/passwd").read()  # type: ignore[union-attr]
    assert passwd.startswith(b"root:x:0:0:") and b"\nnobody:x:65534:65534:" in passwd
    # parents come before children
    names = list(members)
    assert names.index("bin") < names.index("bin/busybox") and names.index("usr") < names.index("usr/bin/env")
    assert im.busybox_layer_tar() == tar


def test_extra_layer_whiteouts_links_and_modes():
    tar = im.extra_layer_tar({"/data/c.txt": b"c\n", "/data/x.sh": (b"#!/bin/sh\n", 0o755)},
                             dirs={"/empty": 0o700}, whiteouts=["/data/b.txt", "/gone"], opaque_dirs=["/opq"],
                             symlinks={"/data/l": "c.txt"}, hardlinks={"/data/h": "/data/c.txt"})
    m = _members(tar)
    assert m["data/.wh.b.txt"].isfile() and m["data/.wh.b.txt"].size == 0
    assert ".wh.gone" in m
    assert m["opq"].isdir() and "opq/.wh..wh..opq" in m
    assert m["data/x.sh"].mode == 0o755 and m["data/c.txt"].mode == 0o644
    assert m["empty"].isdir() and m["empty"].mode == 0o700
    assert m["data"].isdir()  # implicit parent
    assert m["data/l"].issym() and m["data/l"].linkname == "c.txt"
    assert m["data/h"].islnk() and m["data/h"].linkname == "data/c.txt"
    names = list(m)
    assert names.index("data/c.txt") < names.index("data/h")
    with pytest.raises(ValueError):
        im.extra_layer_tar({"../escape": b""})


def test_index_and_manifest_list(tmp_path):
    amd = im.build_image(tmp_path, None, [im.extra_layer_tar({"/platform": b"amd64\n"})],
                         platform=("linux", "amd64"))
    arm = im.build_image(tmp_path, None, [im.extra_layer_tar({"/platform": b"arm64\n"})],
                         platform=("linux", "arm64", "v8"))
    digest = im.build_index(tmp_path, "multi", [amd, arm], annotations={"x": "y"})
    doc = json.loads(im.read_blob(tmp_path, digest))
    assert doc["mediaType"] == im.OCI_INDEX and doc["annotations"] == {"x": "y"}
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    cfg = json.loads(im.read_blob(tmp_path, arm.config_digest))
    assert (cfg["architecture"], cfg["variant"]) == ("arm64", "v8")
    assert im.layout_refs(tmp_path) == {"multi": {"mediaType": im.OCI_INDEX, "digest": digest,
                                                  "size": len(im.read_blob(tmp_path, digest)),
                                                  "annotations": {im.REF_NAME_ANNOTATION: "multi"}}}
    d_amd = im.build_image(tmp_path, None, [b""], platform=("linux", "amd64"), docker_media_types=True)
    d_arm = im.build_image(tmp_path, None, [b""], platform=("linux", "arm64"), docker_media_types=True)
    ldigest = im.build_index(tmp_path, "list", [d_amd, d_arm], docker_media_types=True)
    ldoc = json.loads(im.read_blob(tmp_path, ldigest))
    assert ldoc["mediaType"] == im.DOCKER_LIST
    assert {m["mediaType"] for m in ldoc["manifests"]} == {im.DOCKER_MANIFEST}
    assert im.validate_layout(tmp_path) == []


def test_validate_layout_finds_damage(tmp_path):
    info = im.build_image(tmp_path, "t", [im.extra_layer_tar({"/a": b"a"})])
    cfg_path = tmp_path / "blobs" / "sha256" / info.config_digest[7:]
    cfg_path.write_bytes(cfg_path.read_bytes().replace(b'"layers"', b'"layerz"'))
    problems = im.validate_layout(tmp_path)
    assert any("does not match its name" in p for p in problems)


def test_standard_catalogue_expectations(tmp_path):
    built = im.build_standard_layouts(tmp_path)
    ml = built["multilayer"]
    assert len(ml["image"].layers) == 3
    assert ml["expect_files"]["/data/b.txt"] is None and ml["expect_files"]["/data/c.txt"] == b"c\n"
    for name in ("zstd", "plain", "docker"):
        assert built[name]["image"].diff_ids == ml["image"].diff_ids  # same content, other encodings
    assert {x.media_type for x in built["zstd"]["image"].layers} == {im.OCI_LAYER_ZSTD}
    assert {x.media_type for x in built["plain"]["image"].layers} == {im.OCI_LAYER}
    assert built["docker"]["media_type"] == im.DOCKER_MANIFEST
    assert built["busybox"]["image"].config["config"]["Cmd"] == ["sh"]
    for name, mt in (("multiarch", im.OCI_INDEX), ("dockerlist", im.DOCKER_LIST)):
        kw = built[name]
        assert kw["media_type"] == mt and set(kw["platforms"]) == {"linux/amd64", "linux/arm64"}
        assert kw["platform_files"]["linux/arm64"]["/platform"] == b"arm64\n"


def test_bulk_layers_are_deterministic():
    r = im.random_layer_tar(1, 3 << 20, 1 / 3, file_size=1 << 20)
    assert r == im.random_layer_tar(1, 3 << 20, 1 / 3, file_size=1 << 20)
    assert r != im.random_layer_tar(2, 3 << 20, 1 / 3, file_size=1 << 20)
    members = _members(r)
    assert sorted(n.rsplit(".", 1)[1] for n, m in members.items() if m.isfile()) == ["bin", "bin", "txt"]
    assert sum(m.size for m in members.values()) == 3 << 20
    text = im.text_bytes(7, 1 << 20)
    assert len(text) == 1 << 20 and text == im.text_bytes(7, 1 << 20)
    assert 2.0 < len(text) / len(im.compress(text, "gzip")) < 8.0  # text-like, not degenerate
    rnd = im.random_bytes(7, 1 << 20)
    assert len(im.compress(rnd, "gzip")) > len(rnd)  # incompressible
    many = im.many_files_layer_tar(3, 600, total_size=2 << 20)
    assert many == im.many_files_layer_tar(3, 600, total_size=2 << 20)
    files = [m for m in _members(many).values() if m.isfile()]
    assert len(files) == 600
    assert 0.85 < len(many) / (2 << 20) < 1.1


def test_bench_image_script(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "make-bench-image.py"
    digests = []
    for out in (tmp_path / "a", tmp_path / "b"):
        p = subprocess.run([sys.executable, str(script), "--out", str(out), "--layer-mib", "0.25", "--files", "40",
                            "-q"], check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"{out}\n" and p.stderr == ""
        assert im.validate_layout(out) == []
        desc = im.layout_refs(out)["latest"]
        manifest = json.loads(im.read_blob(out, desc["digest"]))
        assert len(manifest["layers"]) == 8
        assert {x["mediaType"] for x in manifest["layers"]} == {im.OCI_LAYER_GZIP}
        digests.append(desc["digest"])
    assert digests[0] == digests[1]
    p = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "z"), "--zstd", "--layer-mib", "0.25",
                        "--files", "40"], check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    desc = im.layout_refs(tmp_path / "z")["latest"]
    layers = json.loads(im.read_blob(tmp_path / "z", desc["digest"]))["layers"]
    assert {x["mediaType"] for x in layers} == {im.OCI_LAYER_ZSTD}
    assert im.validate_layout(tmp_path / "z") == []
