"""Multi-platform builds (issue 19): ``ctk-build --platform linux/amd64,linux/arm64`` runs the Dockerfile once
per platform, arm64 RUN steps under QEMU user emulation (qemu-user-static registered with binfmt_misc by
scripts/setup), and the result is one OCI index, tagged locally and pushed with ``--push``.

The arm64 base is a real Debian arm64 root filesystem (``debian-arm64`` of scripts/images, made by mmdebstrap
under QEMU); the multi-platform base is an index of it and the amd64 ``debian`` image, assembled in the test
registry through its API (blobs mounted across repositories), so FROM has a real choice to make.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from .conftest import write

pytestmark = pytest.mark.integration

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ",".join((OCI_INDEX, "application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json"))


def _get(registry: Any, repo: str, ref: str) -> requests.Response:
    r = requests.get(f"{registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}, timeout=10)
    assert r.status_code == 200, (repo, ref, r.status_code, r.text[:300])
    return r


def _config(registry: Any, repo: str, manifest: dict[str, Any]) -> dict[str, Any]:
    r = requests.get(f"{registry.url}/v2/{repo}/blobs/{manifest['config']['digest']}", timeout=10)
    assert r.status_code == 200
    return dict(r.json())


@pytest.fixture(scope="module")
def multi_base(registry: Any, real_images: Any) -> str:
    """``REGISTRY/real/debian-multi:latest``: an OCI index of the amd64 and arm64 Debian images."""
    repo = "real/debian-multi"
    entries = []
    for name, arch in (("debian", "amd64"), ("debian-arm64", "arm64")):
        img = real_images[name]
        r = _get(registry, f"real/{name}", img.digest)
        doc = r.json()
        for blob in (doc["config"], *doc["layers"]):
            m = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/",
                              params={"mount": blob["digest"], "from": f"real/{name}"}, timeout=30)
            assert m.status_code == 201, (m.status_code, m.text[:300])
        media_type = r.headers["Content-Type"]
        p = requests.put(f"{registry.url}/v2/{repo}/manifests/{img.digest}", data=r.content,
                         headers={"Content-Type": media_type}, timeout=10)
        assert p.status_code == 201, p.text[:300]
        entries.append({"mediaType": media_type, "digest": img.digest, "size": len(r.content),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    p = requests.put(f"{registry.url}/v2/{repo}/manifests/latest", data=index,
                     headers={"Content-Type": OCI_INDEX}, timeout=10)
    assert p.status_code == 201, p.text[:300]
    return f"{registry.host}/{repo}:latest"


def test_an_arm64_run_step_runs_under_qemu_and_the_image_is_one_arm64_manifest(build, real_images, registry,
                                                                                 tmp_path):
    base = real_images["debian-arm64"].ref
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {base}\nRUN uname -m && dpkg --print-architecture\n"})
    ref = f"{registry.host}/mp/arm64:1"
    r = build("--progress", "plain", "--platform", "linux/arm64", "-t", ref, "--push", str(ctx), timeout=600)
    assert r.code == 0, r.err[-3000:]
    assert " aarch64" in r.err and " arm64" in r.err, r.err[-2000:]
    assert "[linux/arm64" not in r.err  # one platform: steps are named as before
    # a single --platform keeps today's result: one manifest (no index), its config for arm64
    m = _get(registry, "mp/arm64", "1")
    assert m.headers["Content-Type"] != OCI_INDEX
    cfg = _config(registry, "mp/arm64", m.json())
    assert (cfg["os"], cfg["architecture"]) == ("linux", "arm64")


MULTI_DOCKERFILE = """\
ARG BASE
FROM --platform=$BUILDPLATFORM $BASE AS native
ARG TARGETARCH
RUN echo "native-stage target=$TARGETARCH runs-on=$(uname -m)" | tee /native.txt

FROM $BASE
RUN echo "before-arg=[$TARGETARCH]"
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDOS
ARG BUILDARCH
COPY --from=native /native.txt /native.txt
RUN echo "target=$TARGETPLATFORM os=$TARGETOS arch=$TARGETARCH variant=[$TARGETVARIANT]" \\
         "build=$BUILDPLATFORM/$BUILDOS/$BUILDARCH" "machine=$(uname -m) dpkg=$(dpkg --print-architecture)"
"""


def test_two_platforms_make_one_index_pushed_with_both_manifests(build, multi_base, registry, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": MULTI_DOCKERFILE})
    ref = f"{registry.host}/mp/app:1"
    r = build("--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--build-arg", f"BASE={multi_base}",
              "-t", ref, "--push", "--format", "json", str(ctx), timeout=900)
    assert r.code == 0, r.err[-3000:]
    out = json.loads(r.out)
    assert out["Platforms"] == ["linux/amd64", "linux/arm64"]
    # the automatic platform ARGs, per platform; FROM took each platform's base (dpkg's own architecture)
    for arch, machine in (("amd64", "x86_64"), ("arm64", "aarch64")):
        assert (f"target=linux/{arch} os=linux arch={arch} variant=[] build=linux/amd64/linux/amd64 "
                f"machine={machine} dpkg={arch}") in r.err, r.err[-3000:]
    assert "before-arg=[]" in r.err  # a stage sees a platform ARG only after declaring it
    # FROM --platform=$BUILDPLATFORM runs natively for either target
    assert "native-stage target=amd64 runs-on=x86_64" in r.err
    assert "native-stage target=arm64 runs-on=x86_64" in r.err
    assert "[linux/arm64 stage-1" in r.err and "[linux/amd64 native" in r.err  # BuildKit's step names

    # the registry holds the index and both manifests, each config for its platform
    idx = _get(registry, "mp/app", "1")
    assert idx.headers["Content-Type"] == OCI_INDEX
    assert idx.headers["Docker-Content-Digest"] == out["Digest"]
    entries = idx.json()["manifests"]
    assert [(e["platform"]["os"], e["platform"]["architecture"]) for e in entries] == \
        [("linux", "amd64"), ("linux", "arm64")]
    for e in entries:
        cfg = _config(registry, "mp/app", _get(registry, "mp/app", e["digest"]).json())
        assert cfg["architecture"] == e["platform"]["architecture"] and cfg["os"] == "linux"

    # tagged locally as the index: the image record points at it
    images = build("images", "--format", "json", tool="ctk-pull")
    assert any(json.loads(line).get("Digest") == out["Digest"] for line in images.lines), images.out
    # a second build is all cached and gives the same index
    again = build("--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--build-arg",
                  f"BASE={multi_base}", "-t", ref, "--push", str(ctx), timeout=600)
    assert again.code == 0 and again.out.strip() == f"{ref}@{out['Digest']}", again.err[-2000:]
    assert "(8 of 12 steps cached)" in again.err, again.err[-2000:]  # every RUN and COPY; FROMs are not "cached"
    assert "resolving" not in again.err  # both platforms of the base are still in the store


def test_an_index_without_the_platform_fails_naming_what_it_has(build, multi_base, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {multi_base}\nCMD [\"true\"]\n"})
    r = build("--platform", "linux/ppc64le", "-t", "mp:none", str(ctx), timeout=300)
    assert r.code != 0
    assert "linux/ppc64le" in r.err and "linux/amd64" in r.err and "linux/arm64" in r.err, r.err
    assert "Traceback" not in r.err


def test_a_single_platform_base_of_another_platform_is_used_with_a_warning(build, bb, tmp_path):
    """BuildKit's InvalidBaseImagePlatform: a warning naming both platforms; the image says the target's."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nCMD [\"true\"]\n"})
    r = build("--progress", "plain", "--platform", "linux/arm64", "-t", "mp:warned", "--format", "json", str(ctx))
    assert r.code == 0, r.err
    warning = [ln for ln in r.err.splitlines() if "InvalidBaseImagePlatform" in ln]
    assert warning and "linux/amd64" in warning[0] and "linux/arm64" in warning[0], r.err


@pytest.mark.parametrize("binfmt", ["empty", "missing"])
def test_a_missing_emulator_fails_before_any_step_naming_the_fix(build, bb, tmp_path, binfmt):
    directory = tmp_path / "binfmt"
    if binfmt == "empty":  # binfmt_misc mounted, nothing registered for aarch64
        directory.mkdir()
        (directory / "status").write_text("enabled\n")
        (directory / "register").write_text("")
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo STEP-RAN\n"})
    r = build("--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "mp:noemu", str(ctx),
              env={"CTK_BINFMT_DIR": str(directory)})
    assert r.code == 1, r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ctk-build: error:")]
    assert len(errors) == 1 and "linux/arm64" in errors[0] and str(directory) in errors[0], r.err
    if binfmt == "empty":
        assert "qemu-aarch64" in errors[0] and "apt-get install qemu-user-static" in errors[0]
        assert "scripts/setup" in errors[0]
    else:
        assert "mount -t binfmt_misc" in errors[0]
    assert "STEP-RAN" not in r.err and "#1 " not in r.err  # no step started, not even the amd64 ones
    images = build("images", tool="ctk-pull")
    assert images.code == 0 and "noemu" not in images.out
