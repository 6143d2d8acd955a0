"""A build cache shared through a registry or a directory (--cache-to / --cache-from): a build on a second,
fresh containerd reuses every step of a build made on the first and yields the same image digest; only the
layers of the steps used are fetched; a cache that is missing, corrupt or of another format costs one warning
and the build goes on cold; a refused export fails the build unless ignore-error=true."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ctk_shared.containerd import Client

from tests.support.cli import tool_runner
from tests.support.containerd_daemon import ContainerdDaemon, start_containerd

from .conftest import cached_steps, write

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM {base}
RUN echo one > /one
COPY a.txt /a.txt
ENV X=1
RUN cat /one /a.txt > /both
CMD ["cat", "/both"]
"""
LAYER_STEPS = 3  # RUN, COPY, RUN (FROM is a step but pulls its base; ENV and CMD are no steps)


@pytest.fixture(scope="module")
def second_containerd() -> Iterator[ContainerdDaemon]:
    """Another machine: a containerd with its own, empty state."""
    base = Path(tempfile.mkdtemp(prefix="ctk-rc-", dir="/tmp"))
    daemon = start_containerd(base)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh(second_containerd, cni_env, tmp_path):
    """ctk-build on the second containerd, in a namespace of its own, with its own data root."""
    ns = f"rc-{uuid.uuid4().hex[:8]}"
    go = tool_runner("ctk-build", address=second_containerd.address, namespace=ns,
                     data_root=tmp_path / "data2", env=cni_env.env)
    go.client = Client(second_containerd.address, ns)  # type: ignore[attr-defined]
    return go


@pytest.fixture
def ctx(tmp_path, bb):
    return write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE.format(base=bb), "a.txt": "A\n"})


def _cache_ref(registry) -> str:
    return f"{registry.host}/cache/app-{uuid.uuid4().hex[:8]}:buildcache"


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "cache from" in line]


def _manifest(registry, ref: str) -> dict:
    repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
    r = requests.get(f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    r.raise_for_status()
    return r.json()


def _steps(registry, ref: str) -> list[dict]:
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    config = _manifest(registry, ref)["config"]["digest"]
    return requests.get(f"http://{registry.host}/v2/{repo}/blobs/{config}", timeout=10).json()["steps"]


def test_registry_cache_makes_every_step_cached_on_a_fresh_machine_with_the_same_digest(build, fresh, ctx, registry):
    ref = _cache_ref(registry)
    first = build("--progress=plain", "--cache-to", f"type=registry,ref={ref}", "-t", "app", str(ctx))
    assert first.code == 0, first.err
    assert cached_steps(first.err) == []
    assert f"exported build cache to {ref}" in first.err
    m = _manifest(registry, ref)
    assert m["artifactType"] == "application/vnd.ctk.build.cache.v1"
    assert m["config"]["mediaType"] == "application/vnd.ctk.build.cache.config.v1+json"
    assert len(m["layers"]) == LAYER_STEPS
    assert all(layer["mediaType"].endswith("tar+gzip") for layer in m["layers"])

    second = fresh("--progress=plain", "--cache-from", f"type=registry,ref={ref}", "-t", "app", str(ctx))
    assert second.code == 0, second.err
    assert len(cached_steps(second.err)) == LAYER_STEPS, second.err
    assert _warnings(second.err) == []
    assert second.out == first.out  # same config: the history times came from the cache
    run = fresh("--network", "none", "--rm", "app", tool="ctk-run")
    assert run.code == 0, run.err
    assert run.out == "one\nA\n"  # the layers were unpacked for real


def test_local_cache_directory(build, fresh, ctx, tmp_path):
    dest = tmp_path / "cachedir"
    first = build("--progress=plain", "--cache-to", f"type=local,dest={dest},mode=max", "-t", "app", str(ctx))
    assert first.code == 0, first.err
    assert (dest / "oci-layout").is_file()
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    second = fresh("--progress=plain", "--cache-from", f"type=local,src={dest}", "-t", "app", str(ctx))
    assert second.code == 0, second.err
    assert len(cached_steps(second.err)) == LAYER_STEPS, second.err
    assert second.out == first.out
    # a second export to the same directory replaces the tag and leaves no blob of the old cache behind
    (ctx / "a.txt").write_text("B\n")
    third = build("--progress=plain", "--cache-to", f"type=local,dest={dest}", "-t", "app", str(ctx))
    assert third.code == 0, third.err
    index = json.loads((dest / "index.json").read_text())
    assert len(index["manifests"]) == 1
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((dest / "blobs" / "sha256" / manifest_digest[7:]).read_bytes())
    wanted = {manifest_digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
    assert {f"sha256:{p.name}" for p in (dest / "blobs" / "sha256").iterdir()} == wanted


def test_only_the_layers_of_reused_steps_are_fetched(build, fresh, ctx, registry):
    ref = _cache_ref(registry)
    assert build("--cache-to", f"type=registry,ref={ref},mode=max", "-t", "app", str(ctx)).code == 0
    m = _manifest(registry, ref)
    diff_ids = {s["diffID"] for s in _steps(registry, ref)}
    assert len(diff_ids) == LAYER_STEPS
    (ctx / "a.txt").write_text("changed\n")  # the COPY and the RUN after it miss; the first RUN hits
    r = fresh("--progress=plain", "--cache-from", f"type=registry,ref={ref}", "-t", "app", str(ctx))
    assert r.code == 0, r.err
    cached = cached_steps(r.err)
    assert len(cached) == 1 and "RUN echo one" in cached[0], r.err
    client = fresh.client
    # the build keeps layers uncompressed: the hit's layer was gunzipped on the way in (stored as its diff ID);
    # the layers of the two steps that missed were never fetched
    present = {d for d in diff_ids if client.content.exists(d)}
    assert len(present) == 1, present
    assert not any(client.content.exists(layer["digest"]) for layer in m["layers"])  # no gzip copy kept
    entries = [i for i in client.content.list() if "ctk/build.cache" in i.labels]
    assert len(entries) == LAYER_STEPS  # the imported step and the two rebuilt ones joined the local cache


def test_missing_cache_warns_once_and_builds_cold(fresh, ctx, registry):
    ref = f"{registry.host}/cache/nothing-{uuid.uuid4().hex[:8]}:buildcache"
    r = fresh("--progress=plain", "--cache-from", f"type=registry,ref={ref}", "-t", "app", str(ctx))
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert len(warn) == 1 and "not found" in warn[0], r.err
    assert cached_steps(r.err) == []


def test_an_image_or_a_buildkit_cache_is_another_format(fresh, ctx, bb, tmp_path):
    r = fresh("--progress=plain", "--cache-from", bb, "-t", "app", str(ctx))  # a ref alone: type=registry
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert len(warn) == 1 and "container image" in warn[0], r.err
    assert cached_steps(r.err) == []
    assert fresh("prune").code == 0
    layout = _layout(tmp_path / "bk", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": "sha256:" + "0" * 64,
                       "size": 10}]})
    r = fresh("--progress=plain", "--cache-from", f"type=local,src={layout}", "-t", "app", str(ctx))
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert len(warn) == 1 and "BuildKit cache" in warn[0], r.err
    assert cached_steps(r.err) == []


def _layout(root: Path, manifest: dict, config: bytes | None = None) -> Path:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    if config is not None:
        (blobs / hashlib.sha256(config).hexdigest()).write_bytes(config)
    data = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest[7:]).write_bytes(data)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"), "digest": digest,
         "size": len(data), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    return root


def test_corrupt_caches_are_ignored_with_one_warning(build, fresh, ctx, tmp_path):
    dest = tmp_path / "good"
    assert build("--cache-to", f"type=local,dest={dest}", "-t", "app", str(ctx)).code == 0
    # 1. bytes that do not match their digest (the manifest blob altered)
    bad = tmp_path / "bad-digest"
    shutil.copytree(dest, bad)
    entry = json.loads((bad / "index.json").read_text())["manifests"][0]
    path = bad / "blobs" / "sha256" / entry["digest"][7:]
    path.write_bytes(path.read_bytes().replace(b'"layers"', b'"layerz"'))
    # 2. a well-formed manifest whose step list is garbage
    config = b'{"version": 1, "steps": [{"key": "../../etc", "layer": 99}]}'
    garbage = _layout(tmp_path / "garbage", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.ctk.build.cache.v1",
        "config": {"mediaType": "application/vnd.ctk.build.cache.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": []}, config)
    # 3. a layer blob that fails its digest: the step is built instead, and the cache is dropped
    broken = tmp_path / "bad-layer"
    shutil.copytree(dest, broken)
    manifest = json.loads((broken / "blobs" / "sha256" / entry["digest"][7:]).read_bytes())
    for layer in manifest["layers"]:
        (broken / "blobs" / "sha256" / layer["digest"][7:]).write_bytes(b"not the layer")
    for src, words, cached in ((bad, "does not match its digest", 0), (garbage, "corrupt", 0),
                               (broken, "building the step instead", 0)):
        r = fresh("--progress=plain", "--cache-from", f"type=local,src={src}", "-t", "app", str(ctx))
        assert r.code == 0, r.err
        warn = _warnings(r.err)
        assert len(warn) == 1 and words in warn[0], (src, r.err)
        assert len(cached_steps(r.err)) == cached, r.err
        fresh("prune")


def test_refused_export_fails_the_build_unless_ignore_error(build, ctd, ctx, registry_token_auth):
    ref = f"{registry_token_auth.host}/cache/app:buildcache"  # push needs a login we do not have
    r = build("--progress=plain", "--cache-to", f"type=registry,ref={ref}", "-t", "refused", str(ctx))
    assert r.code == 1, r.err
    error, hint = r.err.strip().splitlines()[-2:]
    assert error.startswith(f"ctk-build: error: exporting the build cache to {ref}: ") and "auth" in error, r.err
    assert "ignore-error=true" in hint and "login" in hint, r.err
    assert "Traceback" not in r.err
    assert not [i for i in ctd.images.list() if i.name.endswith("/refused:latest")]  # no image named
    r = build("--progress=plain", "--cache-to", f"type=registry,ref={ref},ignore-error=true", "-t", "kept",
              str(ctx))
    assert r.code == 0, r.err
    assert "[warning] exporting the build cache" in r.err
    assert [i for i in ctd.images.list() if i.name.endswith("/kept:latest")]


@pytest.mark.parametrize("flag, value, words", [
    ("--cache-to", "type=gha", "not supported"),
    ("--cache-to", "type=registry,ref=x/y:z,mdoe=max", "unknown key 'mdoe'"),
    ("--cache-to", "type=registry,ref=x/y:z,mode=all", "min or max"),
    ("--cache-to", "type=local", "dest=DIR is required"),
    ("--cache-from", "type=floppy,src=/a", "unknown cache type"),
    ("--cache-from", "ref=x/y:z", "type= is required"),
    ("--cache-to", "type=registry,ref=x/y:z,compression=zstd", "not supported"),
])
def test_bad_cache_flags_are_usage_errors(build, ctx, flag, value, words):
    r = build(flag, value, "-t", "app", str(ctx))
    assert r.code == 2, r.err
    assert words in r.err and len(r.err.strip().splitlines()) <= 2, r.err


MULTISTAGE = """\
FROM {base} AS builder
RUN echo built > /artifact && echo only-in-builder > /other
FROM {base}
COPY --from=builder /artifact /artifact
RUN cat /artifact > /copy
"""


@pytest.mark.parametrize("mode, exported, cached", [("min", 2, 2), ("max", 3, 3)])
def test_mode_min_exports_the_image_steps_and_max_every_stage(build, fresh, bb, tmp_path, registry, mode, exported,
                                                              cached):
    ctx = write(tmp_path / "ms", {"Dockerfile": MULTISTAGE.format(base=bb)})
    ref = _cache_ref(registry)
    first = build("--progress=plain", "--cache-to", f"type=registry,ref={ref},mode={mode}", "-t", "ms", str(ctx))
    assert first.code == 0, first.err
    assert len(_steps(registry, ref)) == exported
    second = fresh("--progress=plain", "--cache-from", ref, "-t", "ms", str(ctx))
    assert second.code == 0, second.err
    assert len(cached_steps(second.err)) == cached, second.err
    assert second.out == first.out  # min: the builder stage ran again, its file is the same, so is the COPY


def test_gzip_builds_reuse_the_cached_blobs_as_they_are(build, fresh, ctx, registry):
    """A build that keeps gzip layers (--push, -o, --compression gzip) gets the cache's blobs byte for byte."""
    ref = _cache_ref(registry)
    first = build("--compression", "gzip", "--cache-to", f"type=registry,ref={ref}", "-t", "gz", str(ctx))
    assert first.code == 0, first.err
    layers = {layer["digest"] for layer in _manifest(registry, ref)["layers"]}
    second = fresh("--progress=plain", "--compression", "gzip", "--cache-from", ref, "-t", "gz", str(ctx))
    assert second.code == 0, second.err
    assert len(cached_steps(second.err)) == LAYER_STEPS, second.err
    assert second.out == first.out
    assert all(fresh.client.content.exists(d) for d in layers)


def test_a_fifo_planted_in_a_cache_directory_does_not_block_the_build(fresh, ctx, tmp_path):
    src = tmp_path / "fifo"
    src.mkdir()
    os.mkfifo(src / "index.json")
    r = fresh("--progress=plain", "--cache-from", f"type=local,src={src}", "-t", "app", str(ctx), timeout=60)
    assert r.code == 0, r.err
    warn = _warnings(r.err)
    assert len(warn) == 1 and "not a regular file" in warn[0], r.err


TWINS = """\
FROM {base} AS a
RUN echo same > /x
FROM {base} AS b
RUN echo same > /x
FROM {base}
COPY --from=a /x /a
COPY --from=b /x /b
"""


def test_stages_running_at_once_share_one_cached_step(build, fresh, bb, tmp_path, registry):
    """Stages a and b run concurrently and hit the same cached step: it is fetched once, both are CACHED."""
    ctx = write(tmp_path / "twins", {"Dockerfile": TWINS.format(base=bb)})
    ref = _cache_ref(registry)
    first = build("--cache-to", f"type=registry,ref={ref},mode=max", "-t", "twins", str(ctx))
    assert first.code == 0, first.err
    assert len(_steps(registry, ref)) == 3  # a's and b's RUN are one step (same key, same parent)
    second = fresh("--progress=plain", "--cache-from", ref, "-t", "twins", str(ctx))
    assert second.code == 0, second.err
    assert len(cached_steps(second.err)) == 4 and _warnings(second.err) == [], second.err
    assert second.out == first.out
