"""JWE and PKCS7 wrapping: round trips, the serializations skopeo emits, and what it may send us."""
from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ctk_crypt import der, jwe, pkcs7
from ctk_crypt.keys import b64url, unb64url

from .conftest import self_signed

SECRET = b'{"symkey":"...","digest":"sha256:x","cipheroptions":{}}'


def test_jwe_one_rsa_recipient_is_flattened_rsa_oaep_a256gcm(rsa_key, rsa_key2):
    doc = json.loads(jwe.wrap(SECRET, [rsa_key.public_key()]))
    assert "recipients" not in doc and {"protected", "encrypted_key", "iv", "ciphertext", "tag"} <= set(doc)
    assert json.loads(unb64url(doc["protected"])) == {"alg": "RSA-OAEP", "enc": "A256GCM"}
    blob = json.dumps(doc).encode()
    assert jwe.unwrap(blob, [rsa_key]) == SECRET
    assert jwe.unwrap(blob, [rsa_key2]) is None


def test_jwe_two_recipients_rsa_and_ec_is_general_json(rsa_key, ec_key):
    blob = jwe.wrap(SECRET, [rsa_key.public_key(), ec_key.public_key()])
    doc = json.loads(blob)
    assert json.loads(unb64url(doc["protected"])) == {"enc": "A256GCM"}
    algs = [r["header"]["alg"] for r in doc["recipients"]]
    assert algs == ["RSA-OAEP", "ECDH-ES+A256KW"]
    assert doc["recipients"][1]["header"]["epk"]["crv"] == "P-256"
    assert jwe.unwrap(blob, [ec_key]) == SECRET
    assert jwe.unwrap(blob, [rsa_key]) == SECRET
    assert [d["alg"] for d in jwe.describe(blob)] == algs


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_jwe_ec_curves(curve):
    key = ec.generate_private_key(curve)
    assert jwe.unwrap(jwe.wrap(SECRET, [key.public_key()]), [key]) == SECRET


def test_jwe_rsa_oaep_256_is_accepted(rsa_key):
    """Made by hand the way a JWK with alg RSA-OAEP-256 makes newer ocicrypt write it."""
    cek, iv = os.urandom(32), os.urandom(12)
    protected = b64url(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"}).encode())
    ek = rsa_key.public_key().encrypt(cek, apad.OAEP(apad.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    sealed = AESGCM(cek).encrypt(iv, SECRET, protected.encode())
    blob = json.dumps({"protected": protected, "encrypted_key": b64url(ek), "iv": b64url(iv),
                       "ciphertext": b64url(sealed[:-16]), "tag": b64url(sealed[-16:])}).encode()
    assert jwe.unwrap(blob, [rsa_key]) == SECRET


def test_jwe_tampered_ciphertext_opens_to_nothing(rsa_key):
    doc = json.loads(jwe.wrap(SECRET, [rsa_key.public_key()]))
    ct = bytearray(unb64url(doc["ciphertext"]))
    ct[0] ^= 1
    doc["ciphertext"] = b64url(bytes(ct))
    assert jwe.unwrap(json.dumps(doc).encode(), [rsa_key]) is None


def test_pkcs7_round_trip_and_gos_gcm_parameter_bytes(rsa_key, rsa_key2, rsa_cert):
    blob = pkcs7.wrap(SECRET, [rsa_cert, self_signed(rsa_key2, "other")])
    # Go's pkcs7: the GCM parameters sit under a primitive tag 0x10 wrapping SEQUENCE{[4] nonce, INTEGER 16}
    i = blob.index(der.oid(pkcs7.AES128_GCM))
    params = blob[i + len(der.oid(pkcs7.AES128_GCM)):][:21]
    assert params[:4] == b"\x10\x13\x30\x11" and params[4:6] == b"\x84\x0c" and params[18:21] == b"\x02\x01\x10"
    assert pkcs7.unwrap(blob, [rsa_key], [rsa_cert]) == SECRET
    assert pkcs7.unwrap(blob, [rsa_key2], []) == SECRET  # no certificate needed
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert pkcs7.unwrap(blob, [stranger], []) is None
    described = pkcs7.describe(blob)
    assert [d["issuer"] for d in described] == ["CN=ctk test", "CN=other"]
    assert described[0]["serial"] == str(rsa_cert.serial_number)


def test_pkcs7_reads_both_gcm_parameter_forms():
    nonce = bytes(range(12))
    gos = der.tlv(0x10, der.seq(der.tlv(0x84, nonce), der.integer(16)))
    rfc5084 = der.seq(der.octets(nonce), der.integer(16))
    for params in (gos, rfc5084):
        _, content, _ = der.read(params)
        assert pkcs7._gcm_nonce(content if params[0] == 0x10 else params) == (nonce, 16)
