"""Fixtures for ctk-crypt against the real containerd: key files of every kind, and a runner for the tool."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.cli import run_tool
from tests.unit.crypt.conftest import self_signed

PW = "s3cret"


def _b64u_int(n: int, size: int) -> str:
    import base64

    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """rsa/ec key pairs (PKCS#8 PEM + SPKI PEM), a second RSA key, an RSA cert, a password-protected key
    (legacy DEK-Info form, which skopeo 1.9.3 reads), and JWK pairs of the EC and first RSA key."""
    d: Path = tmp_path_factory.mktemp("crypt-keys")
    out = SimpleNamespace(dir=d)
    none = serialization.NoEncryption()
    pem, p8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    for name, key in (("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("other", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("ec", ec.generate_private_key(ec.SECP256R1()))):
        (d / f"{name}.pem").write_bytes(key.private_bytes(pem, p8, none))
        (d / f"{name}.pub.pem").write_bytes(key.public_key().public_bytes(pem, spki))
        setattr(out, name, d / f"{name}.pem")
        setattr(out, f"{name}_pub", d / f"{name}.pub.pem")
        setattr(out, f"{name}_key", key)
    (d / "rsa.crt").write_bytes(self_signed(out.rsa_key).public_bytes(pem))
    out.rsa_crt = d / "rsa.crt"
    enc = serialization.BestAvailableEncryption(PW.encode())
    (d / "rsa_pw.pem").write_bytes(out.rsa_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, enc))
    out.rsa_pw = d / "rsa_pw.pem"
    nums = out.ec_key.private_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64u_int(nums.public_numbers.x, 32),
           "y": _b64u_int(nums.public_numbers.y, 32)}
    (d / "ec_pub.jwk").write_text(json.dumps(jwk))
    (d / "ec_priv.jwk").write_text(json.dumps({**jwk, "d": _b64u_int(nums.private_value, 32)}))
    out.ec_pub_jwk, out.ec_priv_jwk = d / "ec_pub.jwk", d / "ec_priv.jwk"
    rn = out.rsa_key.private_numbers()
    rjwk = {"kty": "RSA", "n": _b64u_int(rn.public_numbers.n, 256), "e": "AQAB"}
    (d / "rsa_pub.jwk").write_text(json.dumps(rjwk))
    (d / "rsa_priv.jwk").write_text(json.dumps({**rjwk, "d": _b64u_int(rn.d, 256), "p": _b64u_int(rn.p, 128),
                                                "q": _b64u_int(rn.q, 128), "dp": _b64u_int(rn.dmp1, 128),
                                                "dq": _b64u_int(rn.dmq1, 128), "qi": _b64u_int(rn.iqmp, 128)}))
    out.rsa_pub_jwk, out.rsa_priv_jwk = d / "rsa_pub.jwk", d / "rsa_priv.jwk"
    return out


@pytest.fixture
def crypt(containerd, ctd):
    """Run ctk-crypt against the test's containerd and namespace."""
    def run(*args, **kw):
        return run_tool("ctk-crypt", *[str(a) for a in args], address=containerd.address, namespace=ctd.namespace,
                        **kw)
    return run
