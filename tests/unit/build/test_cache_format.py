"""--cache-to/--cache-from values (as buildx reads them) and the cache artifact's documents (hostile input)."""
from __future__ import annotations

import gzip
import json

import pytest
from ctk_build import cacheformat as cf
from ctk_build.cacheimport import gunzip
from ctk_build.cachespecs import CacheFrom, CacheTo, parse_cache_from, parse_cache_to
from ctk_shared import oci
from ctk_shared.errors import IntegrityError, UsageError

KEY = "a" * 64
DIFF = "sha256:" + "b" * 64
GZ = "sha256:" + "c" * 64


def test_cache_to_forms():
    assert parse_cache_to("type=registry,ref=reg:5000/app:buildcache,mode=max") == [
        CacheTo("registry", "reg:5000/app:buildcache", "max")]
    assert parse_cache_to("reg:5000/app:c") == [CacheTo("registry", "reg:5000/app:c")]
    assert parse_cache_to("TYPE=local,DEST=/tmp/a,ignore-error=1,tag=v1") == [
        CacheTo("local", "/tmp/a", ignore_error=True, tag="v1")]
    assert parse_cache_to('type=local,"dest=/tmp/a,b"')[0].target == "/tmp/a,b"  # CSV quoting
    assert parse_cache_to("type=registry,ref=r/a,compression=uncompressed,force-compression=true")[0] == \
        CacheTo("registry", "docker.io/r/a:latest", compression="uncompressed", force_compression=True)


def test_cache_from_forms():
    assert parse_cache_from("a/b:c,d/e:f") == [CacheFrom("registry", "docker.io/a/b:c"),
                                              CacheFrom("registry", "docker.io/d/e:f")]
    assert parse_cache_from(f"type=local,src=/x,digest=sha256:{'1' * 64}") == [
        CacheFrom("local", "/x", "latest", "sha256:" + "1" * 64)]


@pytest.mark.parametrize("text", [
    "type=registry", "type=registry,ref=", "ref=a/b", "type=gha,url=x", "type=inline", "type=registry,ref=a,x=1",
    "type=registry,ref=a,mode=maximal", "type=registry,ref=a,ignore-error=maybe", "type=local",
    "type=registry,ref=a,compression=zstd", "type=registry,ref=a,oci-mediatypes=false", "type=registry,ref=A B",
    "type=registry,ref=a,novalue", '"unterminated',
])
def test_bad_cache_to_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_cache_to(text)


@pytest.mark.parametrize("text", ["type=local", "type=local,src=/a,dest=/b", "type=registry,ref=a,mode=max",
                                  "type=local,src=/a,digest=sha256:xyz", "type=s3,bucket=b"])
def test_bad_cache_from_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_cache_from(text)


def _step(**kw):
    base = {"key": KEY, "parent": "", "layer": 0, "diffID": DIFF, "size": 10, "created": "2026-12-05T03:01:02Z"}
    base.update(kw)
    return base


def _docs(steps, layers=None):
    layers = layers or [{"mediaType": oci.OCI_LAYER_GZIP, "digest": GZ, "size": 5}]
    config = json.dumps({"version": 1, "steps": steps}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": cf.ARTIFACT_TYPE,
                           "config": {"mediaType": cf.CONFIG_MEDIA_TYPE, "digest": oci.sha256_digest(config),
                                      "size": len(config)}, "layers": layers}).encode()
    return manifest, config


def test_round_trip_is_stable():
    step = cf.CacheStep(KEY, "sha256:" + "d" * 64, oci.Descriptor(oci.OCI_LAYER_GZIP, GZ, 5), DIFF, 10,
                        "2026-12-05T03:01:02.5Z")
    config, manifest, layers = cf.encode([step, step])
    assert cf.encode([step]) == (config, manifest, layers)
    m = cf.parse_manifest(manifest, oci.OCI_MANIFEST)
    assert cf.parse_config(config, m) == [step]
    assert step.chain_id == oci.chain_ids(["sha256:" + "d" * 64, DIFF])[1]


@pytest.mark.parametrize("bad", [
    _step(key="../../etc/passwd"), _step(layer=1), _step(layer=-1), _step(layer=True), _step(size=-1),
    _step(diffID="sha256:zz"), _step(parent="nope"), _step(created="yesterday"), {"key": KEY}, "step",
])
def test_corrupt_steps_make_the_whole_cache_unused(bad):
    manifest, config = _docs([_step(), bad])
    with pytest.raises(cf.NotACache, match="corrupt"):
        cf.parse_config(config, cf.parse_manifest(manifest, oci.OCI_MANIFEST))


def test_other_formats_are_named():
    image = json.dumps({"schemaVersion": 2, "config": {"mediaType": oci.OCI_CONFIG, "digest": GZ, "size": 1},
                        "layers": []}).encode()
    with pytest.raises(cf.NotACache, match="container image"):
        cf.parse_manifest(image, oci.OCI_MANIFEST)
    bk = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": cf.BUILDKIT_CONFIG, "digest": GZ, "size": 1}]}).encode()
    with pytest.raises(cf.NotACache, match="BuildKit"):
        cf.parse_manifest(bk, oci.OCI_INDEX)
    with pytest.raises(cf.NotACache, match="corrupt"):
        cf.parse_manifest(b"\x00garbage", oci.OCI_MANIFEST)
    manifest, _ = _docs([])
    newer = json.dumps({"version": 2, "steps": []}).encode()
    with pytest.raises(cf.NotACache, match="version 2"):
        cf.parse_config(newer, cf.parse_manifest(manifest, oci.OCI_MANIFEST))


def test_an_uncompressed_layer_must_be_its_diff_id():
    manifest, config = _docs([_step()], [{"mediaType": oci.OCI_LAYER, "digest": GZ, "size": 10}])
    with pytest.raises(cf.NotACache):
        cf.parse_config(config, cf.parse_manifest(manifest, oci.OCI_MANIFEST))


def test_gunzip_streams_members_and_refuses_garbage():
    data = gzip.compress(b"a" * 3_000_000) + gzip.compress(b"tail")
    pieces = list(gunzip([data[i:i + 4096] for i in range(0, len(data), 4096)]))
    assert b"".join(pieces) == b"a" * 3_000_000 + b"tail"
    assert max(len(p) for p in pieces) <= 1 << 20  # bounded output per step
    with pytest.raises(IntegrityError):
        list(gunzip([b"not gzip at all"]))
    with pytest.raises(IntegrityError):
        list(gunzip([gzip.compress(b"x" * 1000)[:-12]]))
