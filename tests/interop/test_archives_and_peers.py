"""Interop with the peers: skopeo reads what ctk-pull saves and ctk-pull loads what skopeo writes;
ctr and ctk-pull see each other's images in a shared namespace."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.cli import run_tool
from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration



def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout


def test_save_is_read_by_skopeo_as_docker_archive_and_oci_archive(ctk, tmp_path, test_images):
    a, b = test_images["multilayer"], test_images["busybox"]
    assert ctk("-q", a.ref, b.ref).code == 0
    out = tmp_path / "images.tar"
    r = ctk("save", "-o", str(out), a.ref, b.ref)
    assert r.code == 0 and r.out == "", r.err
    layers = json.loads(_skopeo("inspect", "--raw", f"docker://{a.ref}", "--tls-verify=false"))["layers"]
    docker = json.loads(_skopeo("inspect", f"docker-archive:{out}:@0"))
    assert len(docker["Layers"]) == len(layers)
    oci = json.loads(_skopeo("inspect", "--raw", f"oci-archive:{out}:v1"))
    assert [x["digest"] for x in oci["layers"]] == [x["digest"] for x in layers]


def test_save_rm_load_round_trip(ctk, ctd, tmp_path, test_images):
    img = test_images["multilayer"]
    assert ctk("-q", img.ref).code == 0
    out = tmp_path / "one.tar"
    assert ctk("save", "-o", str(out), img.ref).code == 0
    assert ctk("rm", img.ref).code == 0
    r = ctk("load", "-i", str(out))
    assert r.code == 0, r.err
    manifest_digest = ctd.images.get(img.ref).target.digest
    assert r.lines == [f"{img.ref}@{manifest_digest}"]
    with mounted_image(ctd, img.ref) as root:
        for path, content in img.expect_files.get("linux/amd64", img.expect_files).items():
            if content is None:
                assert not (root / path.lstrip("/")).exists()
            else:
                assert (root / path.lstrip("/")).read_bytes() == content


def test_save_to_stdout_and_load_from_stdin(ctk, ctd, test_images):
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    saved = run_tool("ctk-pull", "save", "-o", "-", img.ref, address=ctd.address, namespace=ctd.namespace,
                     input=b"")
    assert saved.code == 0 and len(saved.out) > 0
    p = subprocess.run(["ctk-pull", "save", "-o", "-", img.ref, "--address", ctd.address, "-n", ctd.namespace],
                       capture_output=True, check=True)
    assert ctk("rm", img.ref).code == 0
    loaded = subprocess.run(["ctk-pull", "--address", ctd.address, "-n", ctd.namespace, "load"],
                            input=p.stdout, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr
    assert ctd.images.get(img.ref)


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_load_what_skopeo_wrote(ctk, ctd, tmp_path, test_images, transport):
    img = test_images["multilayer"]
    out = tmp_path / "sk.tar"
    name = "example.com/loaded/ml:v2"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{img.ref}", f"{transport}:{out}:{name}")
    r = ctk("load", "-i", str(out))
    assert r.code == 0, r.err
    assert r.lines[0].startswith(f"{name}@sha256:")
    with mounted_image(ctd, name) as root:
        assert (root / "data" / "c.txt").read_bytes() == b"c\n"
        assert not (root / "data" / "b.txt").exists()


def test_load_rejects_garbage(ctk, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar file at all" * 100)
    r = ctk("load", "-i", str(bad))
    assert r.code == 1 and "tar" in r.err and "Traceback" not in r.err


def test_ctr_and_ctk_see_each_others_images(containerd, ctd, ctk, test_images):
    a, b = test_images["busybox"], test_images["zstd"]
    subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "images", "pull", "--plain-http", a.ref],
                   check=True, capture_output=True)
    assert ctk("-q", b.ref).code == 0
    names = {json.loads(line)["Name"] for line in ctk("images").lines}
    assert {a.ref, b.ref} <= names
    ctr_ls = subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "images", "ls", "-q"],
                            check=True, capture_output=True, text=True).stdout.split()
    assert b.ref in ctr_ls
    # an image pulled by ctr is unpacked where ctk expects it: ctk can read its filesystem
    with mounted_image(ctd, a.ref) as root:
        assert (root / "bin" / "busybox").exists()
