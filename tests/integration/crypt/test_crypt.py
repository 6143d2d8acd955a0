"""ctk-crypt encrypt / decrypt / inspect on images in a real containerd, and its failure modes."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest
from ctk_shared import images as store
from ctk_shared import oci
from ctk_shared.containerd import Image

from tests.support.rootfs import mounted_image

from .conftest import PW

pytestmark = pytest.mark.integration

ENC_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"


def _manifest(ctd, name: str) -> oci.Manifest:
    return store.load_local(ctd, name).manifest


def _encrypt(ctk, crypt, img, dst: str, *args) -> str:
    assert ctk("-q", img.ref).code == 0
    r = crypt("encrypt", *args, img.ref, dst)
    assert r.code == 0, r.err
    assert len(r.lines) == 1 and r.lines[0].startswith(f"{dst}@sha256:")
    return r.lines[0]


def test_encrypt_inspect_decrypt_round_trip(ctk, crypt, ctd, keys, test_images):
    img = test_images["multilayer"]
    dst = "example.com/enc/multilayer:1"
    out = _encrypt(ctk, crypt, img, dst, "--recipient", f"jwe:{keys.rsa_pub}")
    plain, enc = _manifest(ctd, img.ref), _manifest(ctd, dst)
    assert ctd.images.get(dst).target.digest == out.split("@")[1]
    assert enc.config.digest == plain.config.digest  # config and diff_ids are untouched
    for p, e in zip(plain.layers, enc.layers):
        assert e.media_type == ENC_GZIP and e.size == p.size and e.digest != p.digest
        assert "org.opencontainers.image.enc.keys.jwe" in e.annotations
        assert "org.opencontainers.image.enc.pubopts" in e.annotations
    (info,) = json.loads(crypt("inspect", dst).out)  # a JSON array, as every ctk inspect
    layers = info["manifests"][0]["layers"]
    assert info["encrypted"] and all(x["encrypted"] and x["schemes"] == ["jwe"] for x in layers)
    assert layers[0]["recipients"] == [{"scheme": "jwe", "alg": "RSA-OAEP", "enc": "A256GCM"}]

    r = crypt("decrypt", "--key", keys.rsa, dst, "example.com/dec/multilayer:1")
    assert r.code == 0, r.err
    dec = _manifest(ctd, "example.com/dec/multilayer:1")
    assert [x.digest for x in dec.layers] == [x.digest for x in plain.layers]
    assert all(not x.annotations and x.media_type == oci.OCI_LAYER_GZIP for x in dec.layers)
    # same diff_ids as the pulled (unpacked) image: the decrypted image shares its snapshots
    with mounted_image(ctd, "example.com/dec/multilayer:1") as root:
        assert (root / "data" / "c.txt").read_bytes() == b"c\n"


def test_pipeline_pull_encrypt_decrypt(containerd, ctd, keys, test_images):
    img = test_images["busybox"]
    g = f"--address {containerd.address} -n {ctd.namespace}"
    p = subprocess.run(["bash", "-o", "pipefail", "-c",
                        f"ctk-pull {g} -q {img.ref} | ctk-crypt {g} encrypt -q -r jwe:{keys.ec_pub} - x.io/bb:enc | "
                        f"ctk-crypt {g} decrypt -q -k {keys.ec} - x.io/bb:dec"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("x.io/bb:dec@sha256:") and p.stdout.count("\n") == 1
    assert [x.digest for x in _manifest(ctd, "x.io/bb:dec").layers] == [x.digest for x in _manifest(ctd, img.ref).layers]


def test_layer_selection_and_docker_manifest_becomes_oci(ctk, crypt, ctd, keys, test_images):
    img = test_images["docker"]
    _encrypt(ctk, crypt, img, "x.io/d:top", "-r", f"jwe:{keys.rsa_pub}", "--layer", "-1")
    target = ctd.images.get("x.io/d:top").target
    assert target.media_type == oci.OCI_MANIFEST
    m = _manifest(ctd, "x.io/d:top")
    assert m.config.media_type == oci.OCI_CONFIG
    assert [x.media_type for x in m.layers] == [oci.OCI_LAYER_GZIP, oci.OCI_LAYER_GZIP, ENC_GZIP]


def test_pkcs7_and_two_recipient_schemes(ctk, crypt, ctd, keys, test_images):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:p7", "-r", f"pkcs7:{keys.rsa_crt}", "-r", f"jwe:{keys.ec_pub_jwk}")
    layer = _manifest(ctd, "x.io/bb:p7").layers[0]
    assert {"org.opencontainers.image.enc.keys.pkcs7", "org.opencontainers.image.enc.keys.jwe"} <= set(layer.annotations)
    for key in (keys.rsa, keys.ec_priv_jwk):
        r = crypt("decrypt", "-q", "-k", key, "x.io/bb:p7", "x.io/bb:plain")
        assert r.code == 0, r.err
        assert _manifest(ctd, "x.io/bb:plain").layers[0].digest == _manifest(ctd, img.ref).layers[0].digest


def test_add_recipient_to_encrypted_image(ctk, crypt, ctd, keys, test_images):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:one", "-r", f"jwe:{keys.rsa_pub}")
    r = crypt("encrypt", "-r", f"jwe:{keys.ec_pub}", "x.io/bb:one", "x.io/bb:two")
    assert r.code == 2 and "already encrypted" in r.err and "--key" in r.err
    r = crypt("encrypt", "-q", "-r", f"jwe:{keys.ec_pub}", "-k", keys.rsa, "x.io/bb:one", "x.io/bb:two")
    assert r.code == 0, r.err
    one, two = _manifest(ctd, "x.io/bb:one").layers[0], _manifest(ctd, "x.io/bb:two").layers[0]
    assert one.digest == two.digest  # same ciphertext, one more wrapped key
    assert two.annotations["org.opencontainers.image.enc.keys.jwe"].count(",") == 1
    assert crypt("decrypt", "-q", "-k", keys.ec, "x.io/bb:two", "x.io/bb:dec").code == 0


def test_wrong_key_names_the_schemes_and_creates_nothing(ctk, crypt, ctd, keys, test_images):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:enc", "-r", f"jwe:{keys.rsa_pub}", "-r", f"pkcs7:{keys.rsa_crt}")
    r = crypt("decrypt", "-k", keys.other, "x.io/bb:enc", "x.io/bb:dec")
    assert r.code == 1 and r.out == ""
    assert "no matching key" in r.err and "jwe" in r.err and "pkcs7" in r.err and "Traceback" not in r.err
    assert "x.io/bb:dec" not in [i.name for i in ctd.images.list()]
    r = crypt("decrypt", "x.io/bb:enc", "x.io/bb:dec")
    assert r.code == 2 and "--key" in r.err


def test_password_protected_key(ctk, crypt, ctd, keys, test_images):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:enc", "-r", f"jwe:{keys.rsa_pub}")
    r = crypt("decrypt", "-k", keys.rsa_pw, "x.io/bb:enc", "x.io/bb:dec")
    assert r.code == 2 and "encrypted and no password" in r.err and ":pass=" in r.err
    r = crypt("decrypt", "-q", "-k", f"{keys.rsa_pw}:pass={PW}", "x.io/bb:enc", "x.io/bb:dec")
    assert r.code == 0, r.err


def test_decrypting_an_unencrypted_image_is_a_noop_with_a_note(ctk, crypt, ctd, test_images):
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    r = crypt("decrypt", img.ref, "x.io/bb:same")
    assert r.code == 0 and r.lines == [f"x.io/bb:same@{img.digest}"]
    assert "no encrypted layers" in r.err


def _tampered_copy(ctd, src: str, dst: str, how: str) -> None:
    """Write a copy of ``src`` whose first layer's ciphertext is damaged, as a registry might serve it."""
    m_desc = store.load_local(ctd, src).manifest_desc
    raw = json.loads(ctd.content.read_all(m_desc.digest))
    layer = raw["layers"][0]
    data = bytearray(ctd.content.read_all(layer["digest"]))
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[-100:]
    data = bytes(data)
    layer["digest"], layer["size"] = oci.sha256_digest(data), len(data)
    doc = json.dumps(raw).encode()
    with ctd.lease_scope() as leased:
        leased.content.write_blob("t-layer", data, layer["digest"])
        leased.content.write_blob("t-manifest", doc, oci.sha256_digest(doc),
                                  {"containerd.io/gc.ref.content.l.0": layer["digest"],
                                   "containerd.io/gc.ref.content.config": raw["config"]["digest"]})
        leased.images.put(Image(dst, oci.Descriptor(oci.OCI_MANIFEST, oci.sha256_digest(doc), len(doc))))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_tampered_or_truncated_ciphertext_fails_the_hmac(ctk, crypt, ctd, keys, test_images, how):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:enc", "-r", f"jwe:{keys.rsa_pub}")
    _tampered_copy(ctd, "x.io/bb:enc", "x.io/bb:bad", how)
    r = crypt("decrypt", "-k", keys.rsa, "x.io/bb:bad", "x.io/bb:dec")
    assert r.code == 5 and "HMAC check failed" in r.err, r.err  # integrity failure
    assert "x.io/bb:dec" not in [i.name for i in ctd.images.list()]
    assert not [s for s in ctd.content.statuses() if "decrypt" in s.ref]  # no half-written plaintext ingest


def test_corrupted_annotation_and_unsupported_cipher(ctk, crypt, ctd, keys, test_images):
    img = test_images["busybox"]
    _encrypt(ctk, crypt, img, "x.io/bb:enc", "-r", f"jwe:{keys.rsa_pub}")
    m_desc = store.load_local(ctd, "x.io/bb:enc").manifest_desc
    raw = json.loads(ctd.content.read_all(m_desc.digest))
    for name, key, value, expect in (
            ("keys", "org.opencontainers.image.enc.keys.jwe", "!!notbase64", "not valid base64"),
            ("cipher", "org.opencontainers.image.enc.pubopts",
             base64.b64encode(b'{"cipher":"AES_256_GCM","hmac":"AA==","cipheroptions":{}}').decode(),
             "unsupported layer cipher")):
        bad = json.loads(json.dumps(raw))
        bad["layers"][0]["annotations"][key] = value
        doc = json.dumps(bad).encode()
        with ctd.lease_scope() as leased:
            leased.content.write_blob(f"m-{name}", doc, oci.sha256_digest(doc),
                                      {"containerd.io/gc.ref.content.l.0": bad["layers"][0]["digest"]})
            leased.images.put(Image(f"x.io/bb:{name}", oci.Descriptor(oci.OCI_MANIFEST, oci.sha256_digest(doc),
                                                                       len(doc))))
        r = crypt("decrypt", "-k", keys.rsa, f"x.io/bb:{name}", "x.io/bb:dec")
        assert r.code == 1 and expect in r.err and "Traceback" not in r.err, r.err


def test_index_platform_selection(ctk, crypt, ctd, keys, test_images):
    """Only the host manifest of a multi-platform image is in the store: it is encrypted, the other entry is
    kept as it was (with a note), and the index becomes a new OCI index."""
    img = test_images["multiarch"]
    assert ctk("-q", img.ref).code == 0
    r = crypt("encrypt", "-r", f"jwe:{keys.rsa_pub}", img.ref, "x.io/ma:enc")
    assert r.code == 0, r.err
    assert "linux/arm64: manifest not in the store" in r.err
    target = ctd.images.get("x.io/ma:enc").target
    assert target.media_type == oci.OCI_INDEX and target.digest != img.digest
    (info,) = json.loads(crypt("inspect", "x.io/ma:enc").out)
    by_platform = {m.get("platform"): m for m in info["manifests"]}
    assert all(x["encrypted"] for x in by_platform[str(oci.host_platform())]["layers"])
    assert by_platform["linux/arm64"]["present"] is False
    r = crypt("encrypt", "-r", f"jwe:{keys.rsa_pub}", "--platform", "linux/s390x", img.ref, "x.io/ma:none")
    assert r.code == 2 and "no layer" in r.err
