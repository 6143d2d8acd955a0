"""ocicrypt interop with skopeo 1.9.3, both ways, through the test registry.

* ctk encrypts → ``ctk-pull push`` → ``skopeo copy --decryption-key`` gives the original layer digests.
* skopeo encrypts (JWE RSA, JWE EC, RSA JWK, PKCS7, two recipients) → ctk-pull (no unpack) → ``ctk-crypt decrypt``
  gives the original layers, and containerd unpacks them through ctk-crypt-decoder.

skopeo 1.9.3 quirks (ocicrypt 1.0.3): PKCS7 decryption needs the recipient certificate as a second
``--decryption-key``; a ``key.pem:pass=PW`` spec is opened as a file name, so the test makes a symlink of
that literal name; it reads only legacy DEK-Info encrypted PEM, not encrypted PKCS#8; an EC *JWK* recipient fails in go-jose
("unknown/unsupported algorithm"), so the JWK case uses RSA.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from ctk_shared import decryption_keys as dk
from ctk_shared import images as store

from tests.integration.crypt.conftest import PW, crypt, keys  # noqa: F401 - fixtures
from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def _oci_layers(layout) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / mdigest).read_text())
    return [x["digest"] for x in manifest["layers"]]


def _registry_layers(ref: str) -> list[str]:
    p = _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    assert p.returncode == 0, p.stderr
    return [x["digest"] for x in json.loads(p.stdout)["layers"]]


@pytest.mark.parametrize("scheme", ["jwe-rsa", "jwe-ec", "pkcs7", "jwe-two", "password"])
def test_ctk_encrypts_skopeo_decrypts(ctk, crypt, registry, keys, test_images, tmp_path, scheme):  # noqa: F811
    img = test_images["multilayer"]
    recipients = {"jwe-rsa": [f"jwe:{keys.rsa_pub}"], "jwe-ec": [f"jwe:{keys.ec_pub}"],
                  "pkcs7": [f"pkcs7:{keys.rsa_crt}"], "jwe-two": [f"jwe:{keys.other_pub}", f"jwe:{keys.ec_pub}"],
                  "password": [f"jwe:{keys.rsa_pub}"]}[scheme]
    dec_keys = {"jwe-rsa": [str(keys.rsa)], "jwe-ec": [str(keys.ec)], "pkcs7": [str(keys.rsa), str(keys.rsa_crt)],
                "jwe-two": [str(keys.ec)], "password": [f"{keys.rsa_pw}:pass={PW}"]}[scheme]
    if scheme == "password":  # skopeo 1.9.3 opens the whole spec as a path: give it that path
        os.symlink(keys.rsa_pw, tmp_path / "rsa_pw.pem")
        os.symlink(keys.rsa_pw, tmp_path / f"rsa_pw.pem:pass={PW}")
        dec_keys = [f"{tmp_path / 'rsa_pw.pem'}:pass={PW}"]
    dst = f"{registry.host}/crypt/ctk-{scheme}:1"
    assert ctk("-q", img.ref).code == 0
    r = crypt("encrypt", "-q", *[a for x in recipients for a in ("-r", x)], img.ref, dst)
    assert r.code == 0, r.err
    pushed = ctk("push", "-q", dst)
    assert pushed.code == 0, pushed.err
    enc_layers = _registry_layers(dst)
    assert enc_layers != _registry_layers(img.ref)
    out = tmp_path / "out"
    p = _skopeo("copy", "--src-tls-verify=false", *[a for k in dec_keys for a in ("--decryption-key", k)],
                f"docker://{dst}", f"oci:{out}:x")
    assert p.returncode == 0, p.stderr
    assert _oci_layers(out) == _registry_layers(img.ref)


def test_skopeo_refuses_our_tampered_layer(ctk, crypt, ctd, registry, keys, test_images, tmp_path):  # noqa: F811
    """Our HMAC is the one ocicrypt checks: a flipped ciphertext byte makes skopeo fail too."""
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    dst = f"{registry.host}/crypt/tampered:1"
    assert crypt("encrypt", "-q", "-r", f"jwe:{keys.rsa_pub}", img.ref, dst).code == 0
    from tests.integration.crypt.test_crypt import _tampered_copy

    _tampered_copy(ctd, dst, f"{registry.host}/crypt/tampered:2", "flip")
    assert ctk("push", "-q", f"{registry.host}/crypt/tampered:2").code == 0
    p = _skopeo("copy", "--src-tls-verify=false", "--decryption-key", str(keys.rsa),
                f"docker://{registry.host}/crypt/tampered:2", f"oci:{tmp_path / 'o'}:x")
    assert p.returncode != 0 and "could not properly decrypt" in p.stderr


@pytest.mark.parametrize("scheme", ["jwe-rsa", "jwe-ec", "jwk", "pkcs7", "two"])
def test_skopeo_encrypts_ctk_decrypts_and_unpacks(ctk, crypt, ctd, registry, keys, test_images, scheme):  # noqa: F811
    img = test_images["multilayer"]
    enc_keys = {"jwe-rsa": [f"jwe:{keys.rsa_pub}"], "jwe-ec": [f"jwe:{keys.ec_pub}"],
                "jwk": [f"jwe:{keys.rsa_pub_jwk}"], "pkcs7": [f"pkcs7:{keys.rsa_crt}"],
                "two": [f"jwe:{keys.rsa_pub}", f"jwe:{keys.ec_pub}"]}[scheme]
    our_key = {"jwe-rsa": keys.rsa, "jwe-ec": keys.ec, "jwk": keys.rsa_priv_jwk, "pkcs7": keys.rsa,
               "two": keys.ec}[scheme]
    dst = f"{registry.host}/crypt/skopeo-{scheme}:1"
    p = _skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                *[a for k in enc_keys for a in ("--encryption-key", k)], f"docker://{img.ref}", f"docker://{dst}")
    assert p.returncode == 0, p.stderr
    assert ctk("pull", "-q", "--unpack=false", dst).code == 0
    (info,) = json.loads(crypt("inspect", dst).out)
    assert info["encrypted"]
    # ctk-crypt decrypt: the original compressed layers, byte for byte
    r = crypt("decrypt", "-q", "-k", our_key, dst, "x.io/ml:dec")
    assert r.code == 0, r.err
    assert [x.digest for x in store.load_local(ctd, "x.io/ml:dec").manifest.layers] == _registry_layers(img.ref)
    # and containerd unpacks skopeo's encrypted layers itself, through ctk-crypt-decoder
    enc = store.load_local(ctd, dst)
    sources = dk.read_key_specs([str(our_key)])
    with ctd.lease_scope() as leased:
        u = store.Unpacker(leased, "overlayfs", enc.config.diff_ids, payloads=lambda d: dk.unpack_payloads(sources, d))
        for i, layer in enumerate(enc.manifest.layers):
            u.apply(i, layer)
        u.finish(enc.manifest.config.digest)
    with mounted_image(ctd, dst) as root:
        assert (root / "data" / "c.txt").read_bytes() == b"c\n"
