"""Reading keys and certificates in every form ocicrypt users have: PEM or DER, PKCS#1, PKCS#8 (also
encrypted), SEC1, legacy OpenSSL ``DEK-Info`` encrypted PEM, and JWK; plus x509 certificates.

A superset of what ocicrypt 1.0.3 (skopeo here) reads: it refuses PEM SEC1 and encrypted PKCS#8, ctk does not.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, overload

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from ctk_shared.decryption_keys import KeySource
from ctk_shared.errors import InvalidArgument, UsageError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}  # cryptography's → JOSE's


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: Any, what: str = "value") -> bytes:
    if not isinstance(text, str):
        raise InvalidArgument(f"JWK/JWE: {what} is not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise InvalidArgument(f"JWK/JWE: {what} is not base64url") from None


def _int(jwk: dict[str, Any], name: str) -> int:
    return int.from_bytes(unb64url(jwk.get(name), f"JWK member {name!r}"), "big")


def _jwk(data: bytes) -> dict[str, Any] | None:
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and "kty" in doc else None


def _jwk_private(jwk: dict[str, Any]) -> PrivateKey | None:
    if "d" not in jwk:
        return None
    if jwk["kty"] == "RSA":
        n, e, d = _int(jwk, "n"), _int(jwk, "e"), _int(jwk, "d")
        if all(k in jwk for k in ("p", "q", "dp", "dq", "qi")):
            p, q = _int(jwk, "p"), _int(jwk, "q")
            dmp1, dmq1, iqmp = _int(jwk, "dp"), _int(jwk, "dq"), _int(jwk, "qi")
        else:
            p, q = rsa.rsa_recover_prime_factors(n, e, d)
            dmp1, dmq1, iqmp = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
        return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)).private_key()
    if jwk["kty"] == "EC":
        curve = _curve(jwk)
        return ec.derive_private_key(_int(jwk, "d"), curve)
    raise InvalidArgument(f"JWK key type {jwk['kty']!r} is not supported (RSA and EC are)")


def _curve(jwk: dict[str, Any]) -> ec.EllipticCurve:
    cls = CURVES.get(str(jwk.get("crv")))
    if cls is None:
        raise InvalidArgument(f"JWK curve {jwk.get('crv')!r} is not supported (P-256, P-384, P-521 are)")
    return cls()


def _jwk_public(jwk: dict[str, Any]) -> PublicKey:
    if jwk["kty"] == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n")).public_key()
    if jwk["kty"] == "EC":
        return ec.EllipticCurvePublicNumbers(_int(jwk, "x"), _int(jwk, "y"), _curve(jwk)).public_key()
    raise InvalidArgument(f"JWK key type {jwk['kty']!r} is not supported (RSA and EC are)")


@overload
def _supported(key: PrivateKeyTypes, what: str) -> PrivateKey: ...


@overload
def _supported(key: PublicKeyTypes, what: str) -> PublicKey: ...


def _supported(key: PrivateKeyTypes | PublicKeyTypes, what: str) -> PrivateKey | PublicKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPublicKey |
                      ec.EllipticCurvePublicKey):
        raise InvalidArgument(f"{what}: {type(key).__name__} keys are not supported (RSA and EC are)")
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and key.curve.name not in CURVE_NAMES:
        raise InvalidArgument(f"{what}: curve {key.curve.name} is not supported (P-256, P-384, P-521 are)")
    return key


def is_encrypted_pem(data: bytes) -> bool:
    return b"ENCRYPTED" in data and b"-----BEGIN" in data


def load_private_key(data: bytes, password: bytes | None = None, origin: str = "key") -> PrivateKey:
    """A private key from PEM/DER (PKCS#1, PKCS#8, SEC1; encrypted with ``password``) or a private JWK."""
    jwk = _jwk(data)
    if jwk is not None:
        jwk_key = _jwk_private(jwk)
        if jwk_key is None:
            raise InvalidArgument(f"{origin} is a public JWK, not a private key")
        return _supported(jwk_key, origin)
    pem = b"-----BEGIN" in data
    key: PrivateKeyTypes
    try:
        if pem:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except TypeError as e:  # password missing, or given for a key that is not encrypted
        if password is None:
            raise UsageError(f"private key {origin} is encrypted and no password was given",
                             hint=f"append the password: {origin}:pass=PASSWORD (or :file=PATH, :fd=N)") from e
        key = serialization.load_pem_private_key(data, None) if pem else \
            serialization.load_der_private_key(data, None)
    except ValueError as e:
        if password is not None and is_encrypted_pem(data):
            raise UsageError(f"private key {origin}: wrong password") from e
        raise InvalidArgument(f"{origin} is not a private key (PEM, DER or JWK)") from e
    except Exception as e:  # noqa: BLE001 - cryptography raises UnsupportedAlgorithm for odd keys
        raise InvalidArgument(f"{origin}: cannot read the private key: {e}") from e
    return _supported(key, origin)


def load_certificate(data: bytes) -> x509.Certificate | None:
    """An x509 certificate from PEM or DER, or None if ``data`` is not one."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        if data[:1] == b"\x30":
            return x509.load_der_x509_certificate(data)
    except ValueError:
        return None
    return None


def load_public_key(data: bytes, origin: str = "key") -> PublicKey:
    """A public key from PEM/DER SPKI (or PKCS#1 RSA), a JWK, or the key of an x509 certificate."""
    jwk = _jwk(data)
    if jwk is not None:
        return _supported(_jwk_public(jwk), origin)
    cert = load_certificate(data)
    if cert is not None:
        return _supported(cert.public_key(), origin)
    try:
        key = serialization.load_pem_public_key(data) if b"-----BEGIN" in data else \
            serialization.load_der_public_key(data)
    except ValueError:
        try:  # a private key given as a recipient: its public half will do
            return _supported(load_private_key(data, None, origin).public_key(), origin)
        except (InvalidArgument, UsageError):
            raise InvalidArgument(f"{origin} is not a public key (PEM, DER, JWK or certificate)") from None
    return _supported(key, origin)


@dataclass
class Keyring:
    """Everything a decryption may use: private keys, and certificates (PKCS7 recipients' identities)."""

    private_keys: list[PrivateKey] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.private_keys)

    @classmethod
    def load(cls, sources: list[KeySource]) -> Keyring:
        ring = cls()
        for src in sources:
            cert = load_certificate(src.data) if not _jwk(src.data) else None
            if cert is not None:
                ring.certificates.append(cert)
                continue
            ring.private_keys.append(load_private_key(src.data, src.password, src.origin or "key"))
            ring.origins.append(src.origin)
        return ring


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members of an EC public key (used for a JWE ephemeral key)."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidArgument("only EC public keys are written as JWK here")
    nums = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {"kty": "EC", "crv": CURVE_NAMES[key.curve.name], "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big"))}


def ec_public_from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey:
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC":
        raise InvalidArgument("JWE: epk is not an EC JWK")
    key = _jwk_public(jwk)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key
