"""The stream processor's contract, run in-process and as the installed executable: payload on fd 3,
plaintext on stdout only after the HMAC checked out, errors on stderr with a non-zero exit."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ctk_crypt import decoder, envelope
from ctk_crypt.cipher import LayerEncryptor
from ctk_shared import decryption_keys as dk
from ctk_shared.oci import Descriptor
from google.protobuf import any_pb2

from .conftest import pem_private

MT = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"


def _layer(rsa_key, plain: bytes) -> tuple[Descriptor, bytes]:
    enc = LayerEncryptor("sha256:" + hashlib.sha256(plain).hexdigest())
    ct = enc.update(plain)
    pub = enc.finalize()
    ann = envelope.wrap_annotations(enc.private, envelope.Recipients(jwe=[rsa_key.public_key()]),
                                    {envelope.ANN_PUBOPTS: base64.b64encode(pub.to_json()).decode()})
    return Descriptor(MT, "sha256:" + hashlib.sha256(ct).hexdigest(), len(ct), ann), ct


def _any(keys: list[dk.KeySource], desc: Descriptor) -> bytes:
    type_url, value = dk.unpack_payloads(keys, desc)[dk.PROCESSOR_IDS[1]]
    return any_pb2.Any(type_url=type_url, value=value).SerializeToString()


def test_decode_in_process(rsa_key, rsa_key2):
    plain = os.urandom(3 << 20)
    desc, ct = _layer(rsa_key, plain)
    out = io.BytesIO()
    decoder.decode(io.BytesIO(ct), out, MT, _any([dk.KeySource(pem_private(rsa_key))], desc), None, None)
    assert out.getvalue() == plain
    with pytest.raises(envelope.NoMatchingKey):
        decoder.decode(io.BytesIO(ct), io.BytesIO(), MT, _any([dk.KeySource(pem_private(rsa_key2))], desc), None,
                       None)


def test_tampered_stream_writes_nothing(rsa_key):
    desc, ct = _layer(rsa_key, os.urandom(100_000))
    out = io.BytesIO()
    with pytest.raises(Exception, match="HMAC check failed"):
        decoder.decode(io.BytesIO(ct[:-1] + bytes([ct[-1] ^ 1])), out, MT,
                       _any([dk.KeySource(pem_private(rsa_key))], desc), None, None)
    assert out.getvalue() == b""


def test_keys_from_a_directory(rsa_key, tmp_path):
    plain = b"hello"
    desc, ct = _layer(rsa_key, plain)
    (tmp_path / "k.pem").write_bytes(pem_private(rsa_key))
    out = io.BytesIO()
    decoder.decode(io.BytesIO(ct), out, MT, _any([], desc), str(tmp_path), None)
    assert out.getvalue() == plain


def test_executable_reads_the_payload_from_fd_3(rsa_key, tmp_path):
    plain = os.urandom(50_000)
    desc, ct = _layer(rsa_key, plain)
    exe = Path(sys.executable).parent / "ctk-crypt-decoder"
    payload = tmp_path / "payload"
    payload.write_bytes(_any([dk.KeySource(pem_private(rsa_key))], desc))
    env = {**os.environ, "STREAM_PROCESSOR_MEDIATYPE": MT}
    p = subprocess.run(["bash", "-c", f'exec "{exe}" 3<"{payload}"'], input=ct, capture_output=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == plain
    p = subprocess.run([str(exe)], input=ct, capture_output=True, env=env)
    assert p.returncode == 1 and b"no ocicrypt payload" in p.stderr and p.stdout == b""
