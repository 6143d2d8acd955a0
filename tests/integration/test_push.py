"""ctk-pull push: what lands in the registry, mounts across repositories, and the pipe contract."""
from __future__ import annotations

import subprocess

import pytest
import requests

pytestmark = pytest.mark.integration


def _manifest_digest(registry, repo: str, tag: str) -> str:
    r = requests.head(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": ",".join([
        "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json"])})
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def test_pull_tag_push_pipeline_mounts_layers(containerd, ctd, registry, test_images):
    """`ctk-pull REF | ctk-pull tag - NEW | ctk-pull push -`: each step prints the ref the next one reads."""
    img = test_images["multilayer"]
    new = f"{registry.host}/copies/multilayer:pushed"
    g = ["--address", containerd.address, "-n", ctd.namespace]
    pipeline = (f"ctk-pull {' '.join(g)} -q {img.ref} | ctk-pull {' '.join(g)} tag - {new} | "
                f"ctk-pull {' '.join(g)} push -")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"{new}@{img.digest}"]
    # every layer came from another repository of the same registry: mounted, not uploaded
    assert p.stderr.count(": mounted") == 4 and "uploading" not in p.stderr  # config + 3 layers
    assert _manifest_digest(registry, "copies/multilayer", "pushed") == img.digest


def test_push_of_one_platform_of_an_index(containerd, ctd, registry, test_images):
    img = test_images["multiarch"]
    g = ["--address", containerd.address, "-n", ctd.namespace]
    subprocess.run(["ctk-pull", *g, "-q", img.ref], check=True, capture_output=True)
    dst = f"{registry.host}/copies/onearch:v1"
    subprocess.run(["ctk-pull", *g, "tag", img.ref, dst], check=True, capture_output=True)
    p = subprocess.run(["ctk-pull", *g, "push", dst], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pushed = p.stdout.strip().split("@", 1)[1]
    assert pushed != img.digest  # only the host platform's manifest is in the store, so that is what goes
    assert _manifest_digest(registry, "copies/onearch", "v1") == pushed
    assert "only linux/amd64" in p.stderr


def test_push_to_unreachable_registry(containerd, ctd, test_images):
    img = test_images["busybox"]
    g = ["--address", containerd.address, "-n", ctd.namespace]
    subprocess.run(["ctk-pull", *g, "-q", img.ref], check=True, capture_output=True)
    subprocess.run(["ctk-pull", *g, "tag", img.ref, "127.0.0.1:1/nowhere/bb:1"], check=True, capture_output=True)
    p = subprocess.run(["ctk-pull", *g, "push", "127.0.0.1:1/nowhere/bb:1"], capture_output=True, text=True)
    assert p.returncode == 1 and "127.0.0.1:1" in p.stderr and "Traceback" not in p.stderr
