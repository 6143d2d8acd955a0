"""The ``test_images`` fixture really put every standard image in the registry, byte for byte (seen by skopeo)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.support import images as im

pytestmark = pytest.mark.integration


def skopeo_inspect(*args: str) -> bytes:
    p = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", "--no-creds", *args],
                       check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def test_catalogue_is_complete(test_images, registry):
    assert set(test_images) == set(im.STANDARD_REPOS)
    for name, img in test_images.items():
        assert img.ref == f"{registry.host}/{im.STANDARD_REPOS[name]}"
        assert img.host == registry.host and img.ref == f"{img.repository}:{img.tag}"


@pytest.mark.parametrize("name", sorted(im.STANDARD_REPOS))
def test_each_ref_is_served_as_built(test_images, name):
    img = test_images[name]
    raw = skopeo_inspect("--raw", f"docker://{img.ref}")
    assert im.sha256_digest(raw) == img.digest
    assert raw == im.read_blob(img.layout, img.digest)
    doc = json.loads(raw)
    assert doc["mediaType"] == img.media_type
    if img.is_index:
        assert {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in doc["manifests"]} == set(img.platforms)
        for plat, info in img.platforms.items():
            sub = skopeo_inspect("--raw", f"docker://{img.repository}@{info.manifest_digest}")
            assert im.sha256_digest(sub) == info.manifest_digest, plat
            assert json.loads(sub)["mediaType"] == info.media_type
    else:
        assert [x["digest"] for x in doc["layers"]] == img.image.layer_digests
    # skopeo resolves the host platform and reads the config through the registry
    config = json.loads(skopeo_inspect("--config", f"docker://{img.ref}"))
    assert config["rootfs"]["diff_ids"] == img.image.diff_ids
    assert config["config"]["Cmd"] == ["sh"]


def test_push_single_platform_of_an_index(test_images, registry):
    img = test_images["multiarch"]
    dest = f"{registry.host}/test/hostonly:v1"
    digest = im.push_layout(img.layout, img.layout_ref, dest, all_platforms=False)
    assert digest == img.image.manifest_digest  # skopeo copies just the host's manifest, unchanged
    assert im.sha256_digest(skopeo_inspect("--raw", f"docker://{dest}")) == digest


def test_push_refuses_unknown_ref(test_images, registry):
    with pytest.raises(im.PushError, match="not tagged"):
        im.push_layout(test_images["busybox"].layout, "nope", f"{registry.host}/x/y:z")


def test_push_to_tls_registry_with_credentials(test_image_layouts, registry_tls_auth):
    from tests.support.registry_fixtures import REGISTRY_PASSWORD, REGISTRY_USER

    kw = test_image_layouts["multilayer"]
    reg = registry_tls_auth
    assert reg.certs_dir is not None
    dest = f"{reg.host}/test/secure:v1"
    opts = {"tls_verify": True, "creds": (REGISTRY_USER, REGISTRY_PASSWORD), "cert_dir": reg.certs_dir / reg.host}
    assert im.push_layout(kw["layout"], kw["layout_ref"], dest, **opts) == kw["digest"]
    assert im.sha256_digest(im.remote_manifest(dest, **opts)) == kw["digest"]
    with pytest.raises(im.PushError):  # no credentials: refused
        im.push_layout(kw["layout"], kw["layout_ref"], dest, tls_verify=True, cert_dir=reg.certs_dir / reg.host)
