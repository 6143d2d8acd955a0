"""What leaves a build: tars (-o), the registry (--push), reproducible digests, and cleanup on Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time

import pytest
import requests

from .conftest import write

pytestmark = pytest.mark.integration


def test_output_tar_to_stdout(build, containerd, ctd, bb, tmp_path):
    """``-o type=oci,dest=-``: the tar is all that stdout carries (no ref line after it), and it is whole."""
    import io

    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo x > /x\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env.update(build.env)
    p = subprocess.run(["ctk-build", "--address", containerd.address, "-n", ctd.namespace, "-q", "-t", "tostdout",
                        "-o", "type=oci,dest=-", str(ctx)], capture_output=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        index = json.loads(t.extractfile("index.json").read())  # type: ignore[union-attr]
        names = t.getnames()
    assert "oci-layout" in names and len(index["manifests"]) == 1
    assert f"blobs/sha256/{index['manifests'][0]['digest'][7:]}" in names
    assert b"tostdout:latest@sha256:" not in p.stdout[-1024:]  # nothing after the tar


def test_output_tar_and_push(build, ctd, registry, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo x > /x\nCMD [\"cat\", \"/x\"]\n"})
    dest = tmp_path / "app.tar"
    name = f"{registry.host}/built/app:v1"
    r = build("-q", "-t", name, "-t", f"{registry.host}/built/app:latest", "-o", f"type=oci,dest={dest}", "--push", str(ctx))
    assert r.code == 0, r.err
    assert len(r.lines) == 1 and r.lines[0].startswith(f"{name}@sha256:")
    digest = r.lines[0].split("@", 1)[1]
    with tarfile.open(dest) as t:
        names = t.getnames()
        index = json.loads(t.extractfile("index.json").read())
        manifest = json.loads(t.extractfile(f"blobs/sha256/{digest[7:]}").read())
    assert "manifest.json" in names and "oci-layout" in names
    assert index["manifests"][0]["digest"] == digest
    # layers that leave the machine are gzip (the base's, and ours: converted from the local cache form)
    assert {m["mediaType"] for m in manifest["layers"]} <= {"application/vnd.oci.image.layer.v1.tar+gzip",
                                                             "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    local = build("-q", "-t", "local", str(ctx))
    assert local.code == 0
    from ctk_shared import images as store

    img = store.load_local(ctd, "docker.io/library/local:latest")
    assert img.manifest.layers[-1].media_type == "application/vnd.oci.image.layer.v1.tar"  # auto: uncompressed
    assert img.config.diff_ids == json.loads(tarfile.open(dest).extractfile(
        f"blobs/sha256/{manifest['config']['digest'][7:]}").read())["rootfs"]["diff_ids"]
    h = requests.head(f"{registry.url}/v2/built/app/manifests/v1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert h.status_code == 200 and h.headers["Docker-Content-Digest"] == digest


def test_source_date_epoch_gives_reproducible_digests(build, ctd, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo x > /x && rm -f /etc/group\n"
                                                 f"COPY f /f\nENV A=1\n", "f": "data\n"})
    first = build("-q", "--no-cache", "--source-date-epoch", "1700000000", "-t", "r1", str(ctx))
    assert first.code == 0, first.err
    time.sleep(1.1)
    os.utime(ctx / "f", None)  # a new mtime in the context must not matter either
    second = build("-q", "--no-cache", "-t", "r2", str(ctx), env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert second.code == 0, second.err
    assert first.out.split("@")[1] == second.out.split("@")[1]
    from ctk_shared import images as store

    cfg = store.load_local(ctd, "docker.io/library/r1:latest").config.raw
    assert cfg["created"] == "2023-11-14T22:13:20Z"
    assert {h["created"] for h in cfg["history"][-3:]} == {"2023-11-14T22:13:20Z"}


def test_ctrl_c_mid_run_cleans_up(containerd, ctd, data_root, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo started; sleep 60\n"})
    # pull the base first, so the interrupt lands in the RUN step
    subprocess.run(["ctk-pull", "--address", containerd.address, "-n", ctd.namespace, "-q", bb], check=True,
                   capture_output=True)
    before = {s.name for s in ctd.snapshots().list()}
    env = {**os.environ, "CTK_DATA_ROOT": str(data_root)}
    p = subprocess.Popen(["ctk-build", "--address", containerd.address, "-n", ctd.namespace, "-t", "int",
                          str(ctx)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ctd.tasks.list():
        time.sleep(0.1)
    assert ctd.tasks.list(), "the RUN step never started"
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert out == "" and "interrupted" in err
    assert ctd.tasks.list() == [] and ctd.containers.list() == []
    assert [s for s in ctd.snapshots().list() if s.name not in before] == []
    assert ctd.leases.list() == []
    assert [i for i in ctd.images.list() if "int" in i.name] == []


def test_leftovers_of_a_killed_build_are_removed_by_the_next(build, containerd, ctd, data_root, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN sleep 60\n"})
    subprocess.run(["ctk-pull", "--address", containerd.address, "-n", ctd.namespace, "-q", bb], check=True,
                   capture_output=True)
    env = {**os.environ, "CTK_DATA_ROOT": str(data_root)}
    p = subprocess.Popen(["ctk-build", "--address", containerd.address, "-n", ctd.namespace, "-q", str(ctx)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ctd.tasks.list():
        time.sleep(0.1)
    p.kill()  # SIGKILL: no cleanup of its own
    p.wait()
    # its RUN step's container, and the record of the network namespace the step joined (stepnet's pool)
    assert sorted(bool(c.labels.get("ctk/build.netns")) for c in ctd.containers.list()) == [False, True]
    r = build("prune")
    assert r.code == 0, r.err
    assert ctd.containers.list() == [] and ctd.tasks.list() == []


def test_output_and_digestfile_onto_a_fifo_and_a_device_are_streamed_not_replaced(build, bb, tmp_path):
    """-o dest= onto a FIFO gets the whole tar through the FIFO; --digestfile onto a (private, /dev/null-like)
    char device leaves the device a device. Nothing is ever renamed over either."""
    import stat
    import threading

    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nCMD [\"true\"]\n"})
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "image.pipe"
    os.mkfifo(fifo)
    dev = out / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = build("-q", "-t", "streamed", "-o", f"type=oci,dest={fifo}", "--digestfile", str(dev), str(ctx))
    reader.join(30)
    assert r.code == 0, r.err
    digest = r.lines[0].split("@", 1)[1]
    import io

    with tarfile.open(fileobj=io.BytesIO(got[0])) as t:
        assert json.loads(t.extractfile("index.json").read())["manifests"][0]["digest"] == digest
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in out.iterdir()) == ["image.pipe", "null"]  # no temp files beside them


def test_digestfile_through_a_symlink_and_onto_a_directory(build, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n"})
    real = tmp_path / "ids" / "digest"
    real.parent.mkdir()
    link = tmp_path / "digest"
    link.symlink_to(real)
    r = build("-q", "-t", "linked", "--digestfile", str(link), str(ctx))
    assert r.code == 0, r.err
    assert link.is_symlink() and real.read_text() == r.lines[0].split("@", 1)[1]
    bad = build("-q", "-t", "linked", "--digestfile", str(tmp_path / "ids"), str(ctx))
    assert bad.code == 1 and bad.err.splitlines()[0].startswith("ctk-build: error:") and "directory" in bad.err
