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
    p = subprocess.run(["ctk-pull", "save", "-o", "-", img.ref, "--address", ctd.address,
                        "--namespace", ctd.namespace], capture_output=True, check=True)
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


# -- save -o onto things that are not regular files ---------------------------------------------------------
# Only private device nodes under tmp_path: nothing here may ever target the machine's /dev/null or
# /dev/stdout by name (an old `save` renamed its temp file over whatever -o named; see notes/machine.md).


def _null_device(path):
    import os
    import stat

    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _tar_names(data: bytes) -> set[str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        return set(t.getnames())


def _tar_member(data: bytes, name: str) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        f = t.extractfile(name)
        assert f is not None
        return f.read()


def test_save_onto_a_char_device_writes_into_it_and_never_replaces_it(ctk, tmp_path, test_images):
    import os
    import stat

    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    real_null = os.stat("/dev/null")
    dev = _null_device(tmp_path / "null")
    r = ctk("save", "-o", str(dev), img.ref)
    assert r.code == 0 and r.out == "", r.err
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temp file left beside it
    now = os.stat("/dev/null")
    assert stat.S_ISCHR(now.st_mode) and (now.st_ino, now.st_rdev) == (real_null.st_ino, real_null.st_rdev)


def test_save_onto_a_fifo_streams_a_whole_tar(ctk, tmp_path, test_images):
    import os
    import stat
    import threading

    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = ctk("save", "-o", str(fifo), img.ref, timeout=60)
    reader.join(30)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    names = _tar_names(got[0])
    assert {"index.json", "oci-layout", "manifest.json"} <= names
    index = json.loads(_tar_member(got[0], "index.json"))
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [img.ref]


def test_save_through_a_symlink_writes_the_target_and_keeps_the_link(ctk, tmp_path, test_images):
    import os

    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    real = tmp_path / "archives" / "busybox.tar"
    real.parent.mkdir()
    real.write_bytes(b"an older save")
    link = tmp_path / "latest.tar"
    link.symlink_to(real)
    r = ctk("save", "-o", str(link), img.ref)
    assert r.code == 0, r.err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "index.json" in _tar_names(real.read_bytes())


def test_save_to_the_descriptor_of_stdout_streams_into_the_pipe(ctk, ctd, test_images):
    """/proc/self/fd/1 is what /dev/stdout points at; it is used here (not /dev/stdout by name) because the
    old code would have renamed a file over the name it was given."""
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    p = subprocess.run(["ctk-pull", "--address", ctd.address, "-n", ctd.namespace, "save", "-o", "/proc/self/fd/1",
                        img.ref], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert "index.json" in _tar_names(p.stdout)


def test_save_onto_a_directory_is_a_one_line_error(ctk, tmp_path, test_images):
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    r = ctk("save", "-o", str(tmp_path), img.ref)
    assert r.code == 1 and "Traceback" not in r.err
    assert r.err.splitlines()[0].startswith("ctk-pull: error:") and "is a directory" in r.err
    assert list(tmp_path.iterdir()) == []
