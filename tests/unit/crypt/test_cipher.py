"""The layer cipher: round trips, the exact option JSON ocicrypt writes, and HMAC failures."""
from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from ctk_crypt.cipher import CIPHER_NAME, LayerDecryptor, LayerEncryptor, PrivateOptions, PublicOptions
from ctk_shared.errors import IntegrityError, InvalidArgument


def _encrypt(data: bytes, chunk: int = 7) -> tuple[bytes, LayerEncryptor, PublicOptions]:
    enc = LayerEncryptor("sha256:" + hashlib.sha256(data).hexdigest())
    out = b"".join(enc.update(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return out, enc, enc.finalize()


def test_round_trip_in_odd_chunks_keeps_the_size():
    data = os.urandom(100_003)
    ct, enc, pub = _encrypt(data, 4099)
    assert len(ct) == len(data) and ct != data
    dec = LayerDecryptor(enc.private, pub)
    pt = b"".join(dec.update(ct[i:i + 1000]) for i in range(0, len(ct), 1000))
    dec.verify()
    assert pt == data


def test_matches_the_definition_ctr_full_block_counter_and_hmac_of_ciphertext():
    key, nonce, data = bytes(range(32)), bytes(range(16)), b"x" * 1000
    enc = LayerEncryptor("sha256:" + "0" * 64, key, nonce)
    ct = enc.update(data)
    pub = enc.finalize()
    ref = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(data)
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(ref)
    assert ct == ref and pub.hmac == mac.finalize()


def test_option_json_is_gos_encoding():
    p = PrivateOptions(b"\x01" * 32, "sha256:" + "a" * 64, b"\x02" * 16)
    assert p.to_json() == (b'{"symkey":"' + base64.b64encode(b"\x01" * 32) + b'","digest":"sha256:' + b"a" * 64 +
                           b'","cipheroptions":{"nonce":"' + base64.b64encode(b"\x02" * 16) + b'"}}')
    assert PrivateOptions.from_json(p.to_json()) == p
    pub = PublicOptions(CIPHER_NAME, b"\x03" * 32)
    assert json.loads(pub.to_json()) == {"cipher": CIPHER_NAME, "hmac": base64.b64encode(b"\x03" * 32).decode(),
                                         "cipheroptions": {}}


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_or_truncated_ciphertext_fails_the_hmac(damage):
    ct, enc, pub = _encrypt(os.urandom(5000))
    bad = bytes([ct[0] ^ 1]) + ct[1:] if damage == "flip" else ct[:-1]
    dec = LayerDecryptor(enc.private, pub)
    dec.update(bad)
    with pytest.raises(IntegrityError, match="HMAC"):
        dec.verify()


def test_unsupported_cipher_and_missing_hmac_are_refused():
    with pytest.raises(InvalidArgument, match="unsupported layer cipher"):
        PublicOptions.from_json(b'{"cipher":"AES_128_GCM","hmac":"AAAA","cipheroptions":{}}')
    with pytest.raises(InvalidArgument, match="no HMAC"):
        PublicOptions.from_json(b'{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"","cipheroptions":{}}')
