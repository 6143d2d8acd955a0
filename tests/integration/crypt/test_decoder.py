"""containerd unpacks encrypted layers through ctk-crypt-decoder (the test daemon's [stream_processors]),
with the keys in the Diff.Apply payload, exactly as ctk-pull/ctk-run will send them."""
from __future__ import annotations

import json

import pytest
from ctk_shared import decryption_keys as dk
from ctk_shared import images as store
from ctk_shared import oci
from ctk_shared.containerd import Image
from ctk_shared.errors import CtkError

from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration


def _encrypted(ctk, crypt, img, dst: str, *recipients: str) -> store.LocalImage:
    assert ctk("pull", "-q", "--unpack=false", img.ref).code == 0  # no plaintext snapshots to reuse
    args = [a for r in recipients for a in ("-r", r)]
    r = crypt("encrypt", "-q", *args, img.ref, dst)
    assert r.code == 0, r.err
    return r


def _unpack(ctd, name: str, key_specs: list[str] | None) -> None:
    img = store.load_local(ctd, name)
    keys = dk.read_key_specs(key_specs) if key_specs is not None else None
    with ctd.lease_scope() as leased:
        u = store.Unpacker(leased, "overlayfs", img.config.diff_ids,
                           payloads=(lambda d: dk.unpack_payloads(keys, d)) if keys is not None else None)
        for i, layer in enumerate(img.manifest.layers):
            u.apply(i, layer)
        u.finish(img.manifest.config.digest)


def test_encrypted_image_unpacks_with_keys_in_the_payload(ctk, crypt, ctd, keys, test_images):
    img = test_images["multilayer"]
    _encrypted(ctk, crypt, img, "x.io/ml:enc", f"jwe:{keys.rsa_pub}")
    _unpack(ctd, "x.io/ml:enc", [str(keys.rsa)])
    with mounted_image(ctd, "x.io/ml:enc") as root:
        assert (root / "data" / "c.txt").read_bytes() == b"c\n"
        assert not (root / "data" / "b.txt").exists()


def test_password_protected_key_travels_in_the_payload(ctk, crypt, ctd, keys, test_images):
    from .conftest import PW

    _encrypted(ctk, crypt, test_images["busybox"], "x.io/bb:enc", f"jwe:{keys.rsa_pub}")
    _unpack(ctd, "x.io/bb:enc", [f"{keys.rsa_pw}:pass={PW}"])
    assert store.is_unpacked(ctd, store.load_local(ctd, "x.io/bb:enc").config, "overlayfs")


@pytest.mark.parametrize("case", ["no-payload", "wrong-key"])
def test_unpack_without_a_usable_key_fails_clearly(ctk, crypt, ctd, keys, test_images, case):
    _encrypted(ctk, crypt, test_images["busybox"], "x.io/bb:enc", f"jwe:{keys.rsa_pub}")
    with pytest.raises(CtkError) as e:
        _unpack(ctd, "x.io/bb:enc", None if case == "no-payload" else [str(keys.other)])
    assert ("no ocicrypt payload" if case == "no-payload" else "no matching key") in str(e.value)
    assert not ctd.snapshots("overlayfs").list()  # nothing committed, the extract snapshot removed


def test_tampered_layer_is_never_handed_to_containerd(ctk, crypt, ctd, keys, test_images):
    _encrypted(ctk, crypt, test_images["busybox"], "x.io/bb:enc", f"jwe:{keys.rsa_pub}")
    m_desc = store.load_local(ctd, "x.io/bb:enc").manifest_desc
    raw = json.loads(ctd.content.read_all(m_desc.digest))
    layer = raw["layers"][0]
    data = bytearray(ctd.content.read_all(layer["digest"]))
    data[-5] ^= 0x40  # inside the gzip trailer region: only the HMAC can tell
    layer["digest"] = oci.sha256_digest(bytes(data))
    doc = json.dumps(raw).encode()
    with ctd.lease_scope() as leased:
        leased.content.write_blob("t-layer", bytes(data), layer["digest"])
        leased.content.write_blob("t-manifest", doc, oci.sha256_digest(doc),
                                  {"containerd.io/gc.ref.content.l.0": layer["digest"],
                                   "containerd.io/gc.ref.content.config": raw["config"]["digest"]})
        leased.images.put(Image("x.io/bb:bad", oci.Descriptor(oci.OCI_MANIFEST, oci.sha256_digest(doc), len(doc))))
    with pytest.raises(CtkError, match="HMAC check failed"):
        _unpack(ctd, "x.io/bb:bad", [str(keys.rsa)])
    assert not ctd.snapshots("overlayfs").list()
