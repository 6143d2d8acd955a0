"""OCI data models: parsing hostile documents, platform matching, chain IDs."""
import hashlib
import json

import pytest
from ctk_shared import oci
from ctk_shared.errors import InvalidArgument

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _desc(mt, d, plat=None):
    x = {"mediaType": mt, "digest": d, "size": 10}
    if plat:
        x["platform"] = plat
    return x


def test_chain_ids_match_containerd_identity():
    a, b = D1, D2
    chain = oci.chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


@pytest.mark.parametrize("text,expected", [
    ("linux/amd64", "linux/amd64"), ("linux/x86_64", "linux/amd64"), ("linux/arm64/v8", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"), ("linux/arm", "linux/arm/v7"), ("arm64", "linux/arm64"),
    ("linux/arm/v6", "linux/arm/v6"),
])
def test_platform_parse(text, expected):
    assert str(oci.Platform.parse(text)) == expected


def test_platform_parse_rejects_garbage():
    with pytest.raises(InvalidArgument):
        oci.Platform.parse("a/b/c/d")


def test_select_manifest_by_platform():
    idx = oci.Index.parse(json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        _desc(oci.OCI_MANIFEST, D1, {"os": "linux", "architecture": "amd64"}),
        _desc(oci.OCI_MANIFEST, D2, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ]}).encode())
    assert oci.select_manifest(idx, oci.Platform.parse("linux/arm64")).digest == D2
    assert oci.select_manifest(idx, oci.Platform.parse("linux/amd64")).digest == D1
    with pytest.raises(InvalidArgument, match="available: linux/amd64, linux/arm64"):
        oci.select_manifest(idx, oci.Platform.parse("linux/s390x"))


def test_attestation_entries_are_not_selected():
    idx = oci.Index.parse(json.dumps({"manifests": [
        _desc(oci.OCI_MANIFEST, D2, {"os": "unknown", "architecture": "unknown"}),
        _desc(oci.OCI_MANIFEST, D1, {"os": "linux", "architecture": "amd64"}),
    ]}).encode())
    assert oci.select_manifest(idx, oci.Platform("linux", "amd64")).digest == D1


@pytest.mark.parametrize("doc,msg", [
    (b"not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "schema 1"),
    (json.dumps({"config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": []}).encode(), "invalid digest"),
    (json.dumps({"config": {"mediaType": "x", "digest": D1}, "layers": []}).encode(), "missing 'size'"),
    (json.dumps({"config": {"mediaType": "x", "digest": D1, "size": -5}, "layers": []}).encode(), "negative"),
])
def test_hostile_manifests_rejected(doc, msg):
    with pytest.raises(InvalidArgument, match=msg):
        oci.Manifest.parse(doc)


def test_layer_compression():
    assert oci.layer_compression(oci.DOCKER_LAYER_GZIP) == "gzip"
    assert oci.layer_compression(oci.OCI_LAYER_ZSTD) == "zstd"
    assert oci.layer_compression(oci.OCI_LAYER) == ""
    assert oci.layer_compression(oci.OCI_LAYER_GZIP + "+encrypted") == "gzip"
    assert oci.is_layer(oci.OCI_LAYER_GZIP + "+encrypted")
    assert not oci.is_layer("application/x-unknown")
