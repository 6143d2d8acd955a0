"""``ctk-crypt keygen``: a key pair in the forms skopeo reads too (PKCS#8 PEM private key, SPKI PEM public
key), and optionally a self-signed certificate to use as a pkcs7 recipient."""
from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from ctk_shared.errors import AlreadyExists, UsageError
from ctk_shared.outputs import write_output

from .keys import CURVES


def _write(path: Path, data: bytes, mode: int) -> None:
    """A new file with exactly ``mode``, or into a device or FIFO named there; an existing key is never
    overwritten (``exclusive``), and nothing is ever renamed over a device (``ctk_shared.outputs``)."""
    write_output(str(path), data, mode=mode, exclusive=True, allow_stdout=False)


def write_keypair(kind: str, out: str, bits: int = 4096, curve: str = "P-256", password: str | None = None,
                  cert_days: int = 0) -> list[str]:
    """Write OUT.pem (0600) and OUT.pub.pem (and OUT.crt with ``cert_days``); returns the paths written."""
    base = Path(out.removesuffix(".pem"))
    private_path, public_path = base.with_name(base.name + ".pem"), base.with_name(base.name + ".pub.pem")
    paths = [private_path, public_path]
    cert_path = base.with_name(base.name + ".crt")
    if cert_days:
        paths.append(cert_path)
    for p in paths:
        if p.is_file():  # a device or FIFO (a key piped elsewhere) is written into, not refused
            raise AlreadyExists(f"{p} exists", hint="choose another -o name or remove the old files")
        if p.is_dir():
            raise UsageError(f"{p} is a directory", hint="-o takes a file name prefix")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ec":
        if curve not in CURVES:
            raise UsageError(f"unknown curve {curve!r} (P-256, P-384, P-521)")
        key = ec.generate_private_key(CURVES[curve]())
    else:
        raise UsageError(f"unknown key type {kind!r} (rsa, ec)")
    if cert_days and kind != "rsa":
        raise UsageError("pkcs7 recipients need RSA keys: use --type rsa with --cert-days")
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    _write(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc), 0o600)
    _write(public_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    if cert_days:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, base.name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=cert_days)).sign(key, hashes.SHA256()))
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return [str(p) for p in paths]
