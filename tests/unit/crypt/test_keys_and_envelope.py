"""Key files in every accepted form, key specs with passwords, the decoder payload, and layer annotations."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ctk_crypt import envelope
from ctk_crypt.cipher import LayerEncryptor
from ctk_crypt.keys import Keyring, b64url, load_private_key, load_public_key
from ctk_shared import decryption_keys as dk
from ctk_shared.errors import InvalidArgument, UsageError
from ctk_shared.oci import Descriptor

from .conftest import pem_private, pem_public

PKCS8, TRAD = serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL


def _n(key) -> int:
    return key.private_numbers().public_numbers.n if isinstance(key, rsa.RSAPrivateKey) else \
        key.private_numbers().private_value


@pytest.mark.parametrize("form", ["pkcs8-pem", "pkcs1-pem", "pkcs8-der", "pkcs1-der", "p8-encrypted",
                                  "legacy-dek-info", "jwk"])
def test_rsa_private_key_forms(rsa_key, form):
    pw = None
    if form == "pkcs8-pem":
        data = pem_private(rsa_key)
    elif form == "pkcs1-pem":
        data = pem_private(rsa_key, TRAD)
    elif form.endswith("-der"):
        fmt = PKCS8 if form.startswith("pkcs8") else TRAD
        data = rsa_key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    elif form == "p8-encrypted":
        data, pw = pem_private(rsa_key, PKCS8, b"secret"), b"secret"
    elif form == "legacy-dek-info":
        data, pw = pem_private(rsa_key, TRAD, b"secret"), b"secret"
        assert b"DEK-Info" in data
    else:
        nums = rsa_key.private_numbers()
        data = json.dumps({"kty": "RSA", "n": b64url(nums.public_numbers.n.to_bytes(256, "big")),
                           "e": "AQAB", "d": b64url(nums.d.to_bytes(256, "big"))}).encode()
    assert _n(load_private_key(data, pw)) == _n(rsa_key)


def test_ec_sec1_pem_and_der_are_read(ec_key):
    for enc in (serialization.Encoding.PEM, serialization.Encoding.DER):
        data = ec_key.private_bytes(enc, TRAD, serialization.NoEncryption())
        assert _n(load_private_key(data)) == _n(ec_key)


def test_encrypted_key_without_password_and_with_a_wrong_one(rsa_key):
    data = pem_private(rsa_key, PKCS8, b"secret")
    with pytest.raises(UsageError, match="encrypted and no password") as e:
        load_private_key(data, None, "k.pem")
    assert "k.pem:pass=" in (e.value.hint or "")
    with pytest.raises(UsageError, match="wrong password"):
        load_private_key(data, b"nope", "k.pem")


def test_public_keys_from_pem_jwk_and_certificate(rsa_key, ec_key, rsa_cert):
    assert load_public_key(pem_public(ec_key)).public_numbers() == ec_key.public_key().public_numbers()
    cert_pem = rsa_cert.public_bytes(serialization.Encoding.PEM)
    assert load_public_key(cert_pem).public_numbers() == rsa_key.public_key().public_numbers()
    nums = ec_key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
    assert load_public_key(json.dumps(jwk).encode()).public_numbers() == nums
    with pytest.raises(InvalidArgument):
        load_public_key(b"not a key")


def test_key_specs(tmp_path, monkeypatch):
    key = tmp_path / "k.pem"
    key.write_bytes(b"K")
    (tmp_path / "pw").write_text("from-file\n")
    assert dk.parse_key_spec(str(key)) == (str(key), None)
    assert dk.parse_key_spec(f"{key}:pass=a:b") == (str(key), b"a:b")
    assert dk.parse_key_spec(f"{key}:file={tmp_path / 'pw'}") == (str(key), b"from-file")
    assert dk.parse_key_spec(f"{key}:plain") == (str(key), b"plain")
    colon = tmp_path / "odd:name.pem"
    colon.write_bytes(b"K")
    assert dk.parse_key_spec(str(colon)) == (str(colon), None)
    with pytest.raises(UsageError, match="cannot read key"):
        dk.read_key_specs([str(tmp_path / "missing.pem")])


def test_payload_round_trip_matches_imgcrypts_shape(rsa_key, rsa_cert):
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "sha256:" + "1" * 64, 10,
                       {envelope.ANN_PUBOPTS: "eA=="})
    cert = rsa_cert.public_bytes(serialization.Encoding.PEM)
    keys = [dk.KeySource(pem_private(rsa_key), b"pw"), dk.KeySource(cert)]
    payloads = dk.unpack_payloads(keys, layer)
    assert set(payloads) == set(dk.PROCESSOR_IDS)
    type_url, value = payloads[dk.PROCESSOR_IDS[1]]
    doc = json.loads(value)
    assert type_url == "io.containerd.ocicrypt.v1.Payload"
    assert base64.b64decode(doc["DecryptConfig"]["Parameters"]["privkeys-passwords"][0]) == b"pw"
    assert doc["Descriptor"]["annotations"] == {envelope.ANN_PUBOPTS: "eA=="}
    back = dk.parse_payload_value(value)
    assert back.layer == layer and back.keys[0].password == b"pw" and back.keys[1].looks_like_certificate


def _encrypted_layer(recipients: envelope.Recipients) -> tuple[Descriptor, LayerEncryptor]:
    digest = "sha256:" + hashlib.sha256(b"layer").hexdigest()
    enc = LayerEncryptor(digest)
    enc.update(b"layer")
    pub = enc.finalize()
    ann = envelope.wrap_annotations(enc.private, recipients,
                                    {envelope.ANN_PUBOPTS: base64.b64encode(pub.to_json()).decode()})
    return Descriptor(envelope.encrypted_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                      "sha256:" + "2" * 64, 5, ann), enc


def test_annotations_unwrap_add_recipient_and_no_matching_key(rsa_key, rsa_key2, ec_key, rsa_cert):
    desc, enc = _encrypted_layer(envelope.Recipients(jwe=[rsa_key.public_key()], pkcs7=[rsa_cert]))
    assert desc.media_type == "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    assert envelope.schemes(desc) == ["jwe", "pkcs7"]
    assert envelope.unwrap(desc, Keyring([rsa_key])) == enc.private
    with pytest.raises(envelope.NoMatchingKey, match=r"no matching key.*jwe \(1 item\), pkcs7 \(1 item\)"):
        envelope.unwrap(desc, Keyring([rsa_key2]))
    # a second JWE item for another recipient is appended with a comma
    ann = envelope.wrap_annotations(enc.private, envelope.Recipients(jwe=[ec_key.public_key()]), desc.annotations)
    assert ann[envelope.ANN_KEYS + "jwe"].count(",") == 1
    desc2 = Descriptor(desc.media_type, desc.digest, desc.size, ann)
    assert envelope.unwrap(desc2, Keyring([ec_key])) == enc.private
    info = envelope.describe(desc2)
    assert [r["scheme"] for r in info["recipients"]] == ["jwe", "jwe", "pkcs7"]
    assert envelope.strip_annotations({**ann, "keep": "me"}) == {"keep": "me"}


def test_corrupted_annotations_are_named(rsa_key):
    desc, _ = _encrypted_layer(envelope.Recipients(jwe=[rsa_key.public_key()]))
    bad = dict(desc.annotations)
    bad[envelope.ANN_KEYS + "jwe"] = "%%%not-base64"
    with pytest.raises(InvalidArgument, match="keys.jwe is not valid base64"):
        envelope.unwrap(Descriptor(desc.media_type, desc.digest, desc.size, bad), Keyring([rsa_key]))
    bad = dict(desc.annotations)
    bad[envelope.ANN_KEYS + "jwe"] = base64.b64encode(b"{garbage").decode()
    with pytest.raises(InvalidArgument, match="jwe wrapped key is corrupted"):
        envelope.unwrap(Descriptor(desc.media_type, desc.digest, desc.size, bad), Keyring([rsa_key]))
    bad = dict(desc.annotations)
    bad[envelope.ANN_PUBOPTS] = base64.b64encode(b'{"cipher":"AES_128_CBC","hmac":"AA=="}').decode()
    with pytest.raises(InvalidArgument, match="unsupported layer cipher"):
        envelope.public_options(Descriptor(desc.media_type, desc.digest, desc.size, bad))
