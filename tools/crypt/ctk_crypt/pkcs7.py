"""PKCS#7 (CMS EnvelopedData) key wrapping, byte-compatible with the Go pkcs7 library ocicrypt uses.

Encrypt: one KeyTransRecipientInfo per x509 certificate (RSA PKCS#1 v1.5 of a 16-byte key), content
AES-128-GCM (12-byte nonce, 16-byte tag appended, no AAD). Go writes the GCM parameters under a primitive
tag 0x10 instead of a SEQUENCE; we write the same so skopeo reads ours, and read both forms.

Decrypt: each private key is tried on each recipient entry (preferring the entry whose issuer and serial
match a given certificate); GCM's tag tells a right key from a wrong one, so unlike ocicrypt no
certificate is required.
"""
from __future__ import annotations

import os
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ctk_shared.errors import InvalidArgument

from . import der
from .keys import PrivateKey

OID_DATA = "1.2.840.113549.1.7.1"
OID_ENVELOPED = "1.2.840.113549.1.7.3"
OID_RSA = "1.2.840.113549.1.1.1"
GCM = {"2.16.840.1.101.3.4.1.6": 16, "2.16.840.1.101.3.4.1.26": 24, "2.16.840.1.101.3.4.1.46": 32}
CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
AES128_GCM = "2.16.840.1.101.3.4.1.6"


def wrap(plaintext: bytes, certificates: list[x509.Certificate]) -> bytes:
    """DER EnvelopedData (in a ContentInfo) of ``plaintext`` for each certificate's RSA key."""
    if not certificates:
        raise InvalidArgument("PKCS7: no recipients")
    key, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    infos = []
    for cert in certificates:
        pub = cert.public_key()
        if not isinstance(pub, rsa.RSAPublicKey):
            raise InvalidArgument("PKCS7 recipients need an RSA certificate (as in ocicrypt)")
        ias = der.seq(cert.issuer.public_bytes(), der.integer(cert.serial_number))
        infos.append(der.seq(der.integer(0), ias, der.seq(der.oid(OID_RSA), der.null()),
                             der.octets(pub.encrypt(key, apad.PKCS1v15()))))
    gcm_params = der.tlv(0x10, der.seq(der.tlv(0x84, nonce), der.integer(16)))
    eci = der.seq(der.oid(OID_DATA), der.seq(der.oid(AES128_GCM), gcm_params), der.tlv(0xA0, der.octets(sealed)))
    enveloped = der.seq(der.integer(0), der.set_of(*infos), eci)
    return der.seq(der.oid(OID_ENVELOPED), der.tlv(0xA0, enveloped))


def _parse(data: bytes) -> tuple[list[dict[str, Any]], str, bytes, bytes]:
    """(recipient infos, content algorithm OID, its parameters' content, ciphertext)."""
    tag, ci, _ = der.read(data)
    if tag != der.SEQUENCE:
        raise InvalidArgument("PKCS7: not a ContentInfo")
    parts = list(der.children(ci))
    if len(parts) < 2 or der.decode_oid(der.expect(der.OID, parts[0], "content type")) != OID_ENVELOPED:
        raise InvalidArgument("PKCS7: not EnvelopedData")
    _, env, _ = der.read(der.expect(0xA0, parts[1], "content"))
    items = list(der.children(env))
    if len(items) < 3:
        raise InvalidArgument("PKCS7: malformed EnvelopedData")
    rest = items[1:]
    if rest[0][0] == 0xA0:  # optional originatorInfo
        rest = rest[1:]
    recipients = []
    for _, ri, _ in der.children(der.expect(der.SET, rest[0], "recipientInfos")):
        fields = list(der.children(ri))
        if len(fields) < 4 or fields[1][0] != der.SEQUENCE:
            continue  # not a KeyTransRecipientInfo with IssuerAndSerialNumber
        ias = list(der.children(fields[1][1]))
        recipients.append({
            "issuer": ias[0][2] if ias else b"",
            "serial": der.decode_int(ias[1][1]) if len(ias) > 1 else None,
            "alg": der.decode_oid(der.expect(der.OID, next(der.children(fields[2][1]), None), "key algorithm")),
            "encrypted_key": der.expect(der.OCTET_STRING, fields[3], "encryptedKey"),
        })
    eci = list(der.children(der.expect(der.SEQUENCE, rest[1], "encryptedContentInfo")))
    alg = list(der.children(der.expect(der.SEQUENCE, eci[1] if len(eci) > 1 else None, "content algorithm")))
    alg_oid = der.decode_oid(der.expect(der.OID, alg[0] if alg else None, "content algorithm"))
    params = alg[1][1] if len(alg) > 1 else b""
    if len(eci) < 3:
        raise InvalidArgument("PKCS7: no encrypted content")
    tag, body, _ = eci[2]
    if tag == 0xA0:  # constructed: a run of OCTET STRINGs
        ciphertext = b"".join(c for t, c, _ in der.children(body) if t == der.OCTET_STRING)
    elif tag == 0x80:
        ciphertext = body
    else:
        raise InvalidArgument("PKCS7: malformed encrypted content")
    return recipients, alg_oid, params, ciphertext


def _gcm_nonce(params: bytes) -> tuple[bytes, int]:
    """Nonce and tag length from GCMParameters, in Go's odd form (tag 0x10 around a SEQUENCE) or RFC 5084's."""
    body = params
    if body[:1] == b"\x30":
        body = der.read(body)[1]
    fields = list(der.children(body))
    if not fields or fields[0][0] not in (der.OCTET_STRING, 0x84):
        raise InvalidArgument("PKCS7: malformed GCM parameters")
    icv = der.decode_int(fields[1][1]) if len(fields) > 1 and fields[1][0] == der.INTEGER else 12
    return fields[0][1], icv


def _decrypt(alg: str, params: bytes, key: bytes, ciphertext: bytes) -> bytes | None:
    try:
        if alg in GCM:
            if len(key) != GCM[alg]:
                return None
            nonce, icv = _gcm_nonce(params)
            if icv != 16:
                raise InvalidArgument(f"PKCS7: GCM tag length {icv} is not supported")
            return AESGCM(key).decrypt(nonce, ciphertext, None)
        if alg in CBC:
            if len(key) != CBC[alg]:
                return None
            iv = der.read(params)[1] if params[:1] == b"\x04" else params
            d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(d.update(ciphertext) + d.finalize()) + unpadder.finalize()
    except (InvalidTag, ValueError):
        return None
    raise InvalidArgument(f"PKCS7: content encryption {alg} is not supported (AES-GCM and AES-CBC are)")


def unwrap(data: bytes, keys: list[PrivateKey], certificates: list[x509.Certificate]) -> bytes | None:
    recipients, alg, params, ciphertext = _parse(data)
    known = {(c.issuer.public_bytes(), c.serial_number) for c in certificates}
    # entries naming a given certificate first; then the rest, since the content's MAC settles it
    recipients.sort(key=lambda r: (r["issuer"], r["serial"]) not in known)
    for r in recipients:
        if r["alg"] != OID_RSA:
            continue
        for key in keys:
            if not isinstance(key, rsa.RSAPrivateKey):
                continue
            try:
                cek = key.decrypt(r["encrypted_key"], apad.PKCS1v15())
            except ValueError:
                continue
            out = _decrypt(alg, params, cek, ciphertext)
            if out is not None:
                return out
    return None


def describe(data: bytes) -> list[dict[str, Any]]:
    recipients, alg, _, _ = _parse(data)
    out = []
    for r in recipients:
        try:
            issuer = _name(r["issuer"]).rfc4514_string()
        except (ValueError, IndexError, InvalidArgument):
            issuer = r["issuer"].hex()
        out.append({"issuer": issuer, "serial": str(r["serial"]),
                    "key_alg": "rsaEncryption" if r["alg"] == OID_RSA else r["alg"], "content_alg": alg})
    return out


def _name(raw: bytes) -> x509.Name:
    """A DER Name read by hand (cryptography parses Names only inside certificates and CSRs)."""
    rdns = []
    for _, rdn, _ in der.children(der.read(raw)[1]):
        attrs = []
        for _, atv, _ in der.children(rdn):
            fields = list(der.children(atv))
            oid = x509.ObjectIdentifier(der.decode_oid(fields[0][1]))
            attrs.append(x509.NameAttribute(oid, fields[1][1].decode("utf-8", "replace")))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)
