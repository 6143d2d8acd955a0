"""Images a kubelet sees: what ctk-pull, ctk-build and tag write into k8s.io is listed by containerd's own CRI
ImageService (what crictl and the kubelet call), found by tag, by repo@digest and by ID."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctk_shared.containerd import Client

from tests.support.cli import run_tool
from tests.support.containerd_daemon import ContainerdDaemon, start_containerd
from tests.support.cri import CriImage, CriImages

pytestmark = pytest.mark.integration
NS = "k8s.io"


@pytest.fixture(scope="module")
def cri_containerd() -> Iterator[ContainerdDaemon]:
    base = Path(tempfile.mkdtemp(prefix="ctk-cri-", dir="/tmp"))
    daemon = start_containerd(base, cri=True)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cri(cri_containerd: ContainerdDaemon) -> Iterator[CriImages]:
    c = CriImages(cri_containerd.address)
    yield c
    c.close()


def _tool(daemon: ContainerdDaemon, tool: str, *args: str, data_root: Path | None = None):
    env = {"CTK_DATA_ROOT": str(data_root)} if data_root else None
    return run_tool(tool, *args, address=daemon.address, namespace=NS, env=env)


def _config_digest(daemon: ContainerdDaemon, ref: str) -> str:
    r = _tool(daemon, "ctk-pull", "inspect", ref)
    assert r.code == 0, r.err
    rec = json.loads(r.out)[0]
    return rec.get("Id") or rec["ID"]


def _listed(cri: CriImages, tag: str, wait: float = 10.0) -> CriImage:
    """The CRI plugin learns of new records from containerd's events: give it a moment."""
    deadline = time.monotonic() + wait
    while True:
        hits = [i for i in cri.list() if tag in i.repo_tags]
        if hits or time.monotonic() > deadline:
            assert hits, f"{tag} not listed by CRI: {[i.repo_tags for i in cri.list()]}"
            return hits[0]
        time.sleep(0.2)


def test_a_pulled_image_is_listed_with_its_tag_digest_and_id(cri_containerd, cri, test_images):
    img = test_images["busybox"]
    r = _tool(cri_containerd, "ctk-pull", img.ref, "-q")
    assert r.code == 0, r.err
    listed = _listed(cri, img.ref)
    repo = img.ref.rsplit(":", 1)[0]
    assert f"{repo}@{img.digest}" in listed.repo_digests
    assert listed.id == _config_digest(cri_containerd, img.ref)
    for spec in (img.ref, f"{repo}@{img.digest}", listed.id):
        found = cri.status(spec)
        assert found is not None and found.id == listed.id, spec
    # the records carry the CRI's own label, as crictl's pulls do
    records = Client(cri_containerd.address, NS).images.list()
    names = {i.name for i in records if i.labels.get("io.cri-containerd.image") == "managed"}
    assert {img.ref, f"{repo}@{img.digest}", listed.id} <= names


def test_a_built_and_a_tagged_image_are_listed(cri_containerd, cri, test_images, tmp_path):
    base = test_images["busybox"].ref
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello kubelet\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY hello.txt /hello.txt\nLABEL purpose=cri-test\n")
    r = _tool(cri_containerd, "ctk-build", "-q", "-t", "app:2", str(ctx), data_root=tmp_path / "data")
    assert r.code == 0, r.err
    built_ref, _, digest = r.out.strip().partition("@")
    listed = _listed(cri, built_ref)
    assert listed.id == _config_digest(cri_containerd, built_ref)
    assert cri.status(built_ref) is not None
    by_digest = cri.status(f"{built_ref.rsplit(':', 1)[0]}@{digest}")
    assert by_digest is not None and by_digest.id == listed.id

    t = _tool(cri_containerd, "ctk-pull", "tag", built_ref, "app:3")
    assert t.code == 0, t.err
    assert "docker.io/library/app:3" in _listed(cri, "docker.io/library/app:3").repo_tags


def test_other_namespaces_get_no_cri_names(cri_containerd, test_images):
    img = test_images["busybox"]
    r = run_tool("ctk-pull", img.ref, "-q", address=cri_containerd.address, namespace="plain")
    assert r.code == 0, r.err
    names = {i.name for i in Client(cri_containerd.address, "plain").images.list()}
    assert names == {img.ref}
