"""JWE key wrapping as ocicrypt does it (go-jose): the layer's private options encrypted for recipients.

Written with ``cryptography`` primitives because JOSE libraries on PyPI either lack ECDH-ES+AxxxKW with the
exact serialization go-jose emits, or add a dependency for ~150 lines. What we emit is what skopeo emits:
RSA keys get ``RSA-OAEP`` (SHA-1), EC keys ``ECDH-ES+A256KW``, content ``A256GCM``; flattened JSON for one
recipient, general JSON for several. What we read is what ocicrypt reads, plus direct ``ECDH-ES``.
"""
from __future__ import annotations

import hmac as std_hmac
import json
import os
import zlib
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from ctk_shared.errors import InvalidArgument

from .keys import PrivateKey, PublicKey, b64url, ec_public_from_jwk, public_jwk, unb64url

ENC = "A256GCM"
KW_BITS = {"ECDH-ES+A128KW": 128, "ECDH-ES+A192KW": 192, "ECDH-ES+A256KW": 256}
GCM_BITS = {"A128GCM": 128, "A192GCM": 192, "A256GCM": 256}
CBC_HS = {"A128CBC-HS256": (256, hashes.SHA256), "A192CBC-HS384": (384, hashes.SHA384),
          "A256CBC-HS512": (512, hashes.SHA512)}


def _oaep(alg: str) -> apad.OAEP:
    h: hashes.HashAlgorithm = hashes.SHA1() if alg == "RSA-OAEP" else hashes.SHA256()
    return apad.OAEP(mgf=apad.MGF1(algorithm=h), algorithm=h, label=None)


def _concat_kdf(z: bytes, alg_id: str, bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    def lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    other = lp(alg_id.encode()) + lp(apu) + lp(apv) + bits.to_bytes(4, "big")
    return ConcatKDFHash(algorithm=hashes.SHA256(), length=bits // 8, otherinfo=other).derive(z)


def _wrap_for(key: PublicKey, cek: bytes) -> tuple[dict[str, Any], bytes]:
    """(per-recipient header, encrypted_key) for one public key."""
    if isinstance(key, rsa.RSAPublicKey):
        return {"alg": "RSA-OAEP"}, key.encrypt(cek, _oaep("RSA-OAEP"))
    eph = ec.generate_private_key(key.curve)
    kek = _concat_kdf(eph.exchange(ec.ECDH(), key), "ECDH-ES+A256KW", 256)
    return {"alg": "ECDH-ES+A256KW", "epk": public_jwk(eph.public_key())}, aes_key_wrap(kek, cek)


def wrap(plaintext: bytes, recipients: list[PublicKey]) -> bytes:
    """A JWE JSON serialization of ``plaintext`` readable by each recipient's private key."""
    if not recipients:
        raise InvalidArgument("JWE: no recipients")
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = [_wrap_for(k, cek) for k in recipients]
    # go-jose folds the only recipient's header into the protected header
    protected = {**wrapped[0][0], "enc": ENC} if len(wrapped) == 1 else {"enc": ENC}
    protected_b64 = b64url(json.dumps(protected, separators=(",", ":")).encode())
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected_b64.encode())
    body: dict[str, Any] = {"ciphertext": b64url(sealed[:-16]), "iv": b64url(iv), "protected": protected_b64, "tag": b64url(sealed[-16:])}
    if len(wrapped) == 1:
        doc = {**body, "encrypted_key": b64url(wrapped[0][1])}
    else:
        doc = {**body, "recipients": [{"header": h, "encrypted_key": b64url(ek)} for h, ek in wrapped]}
    return json.dumps(doc, separators=(",", ":")).encode()


def _parse(data: bytes) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(the document, its protected header, per-recipient entries) of a flattened or general JWE."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        if data.count(b".") == 4:  # compact serialization
            parts = data.decode().strip().split(".")
            doc = {"protected": parts[0], "encrypted_key": parts[1], "iv": parts[2], "ciphertext": parts[3],
                   "tag": parts[4]}
        else:
            raise InvalidArgument("JWE: not a JSON or compact serialization") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("JWE: not a JSON object")
    try:
        protected = json.loads(unb64url(doc.get("protected", ""), "protected")) if doc.get("protected") else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidArgument("JWE: the protected header is not JSON") from None
    if "recipients" in doc:
        recips = doc["recipients"]
        if not isinstance(recips, list):
            raise InvalidArgument("JWE: recipients is not a list")
    else:
        recips = [{"header": doc.get("header") or {}, "encrypted_key": doc.get("encrypted_key", "")}]
    return doc, protected, recips


def _headers(doc: dict[str, Any], protected: dict[str, Any], recipient: dict[str, Any]) -> dict[str, Any]:
    return {**(doc.get("unprotected") or {}), **(recipient.get("header") or {}), **protected}


def _unwrap_cek(h: dict[str, Any], encrypted_key: bytes, key: PrivateKey) -> bytes | None:
    alg = h.get("alg")
    try:
        if alg in ("RSA-OAEP", "RSA-OAEP-256") and isinstance(key, rsa.RSAPrivateKey):
            return key.decrypt(encrypted_key, _oaep(str(alg)))
        if isinstance(key, ec.EllipticCurvePrivateKey) and (alg in KW_BITS or alg == "ECDH-ES"):
            epk = ec_public_from_jwk(h.get("epk"))
            if epk.curve.name != key.curve.name:
                return None
            z = key.exchange(ec.ECDH(), epk)
            apu, apv = unb64url(h.get("apu", ""), "apu"), unb64url(h.get("apv", ""), "apv")
            if alg == "ECDH-ES":
                enc = str(h.get("enc"))
                bits = GCM_BITS.get(enc) or CBC_HS.get(enc, (0, None))[0]
                return _concat_kdf(z, enc, bits, apu, apv) if bits else None
            kek = _concat_kdf(z, str(alg), KW_BITS[str(alg)], apu, apv)
            return aes_key_unwrap(kek, encrypted_key)
    except (ValueError, InvalidUnwrap):
        return None
    return None


def _decrypt_content(h: dict[str, Any], cek: bytes, doc: dict[str, Any]) -> bytes | None:
    enc = h.get("enc")
    aad = str(doc.get("protected", "")).encode()
    if doc.get("aad"):
        aad += b"." + str(doc["aad"]).encode()
    iv, ct, tag = (unb64url(doc.get(k), k) for k in ("iv", "ciphertext", "tag"))
    try:
        if enc in GCM_BITS:
            if len(cek) * 8 != GCM_BITS[str(enc)]:
                return None
            out = AESGCM(cek).decrypt(iv, ct + tag, aad)
        elif enc in CBC_HS:
            bits, hcls = CBC_HS[str(enc)]
            if len(cek) * 8 != bits:
                return None
            mac_key, enc_key = cek[:len(cek) // 2], cek[len(cek) // 2:]
            m = hmac.HMAC(mac_key, hcls())
            m.update(aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"))
            if not _eq(m.finalize()[:len(mac_key)], tag):
                return None
            d = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            out = unpadder.update(d.update(ct) + d.finalize()) + unpadder.finalize()
        else:
            raise InvalidArgument(f"JWE: content encryption {enc!r} is not supported")
    except (InvalidTag, ValueError):
        return None
    if h.get("zip") == "DEF":
        out = zlib.decompress(out, -15)
    return out


def _eq(a: bytes, b: bytes) -> bool:
    return std_hmac.compare_digest(a, b)


def unwrap(data: bytes, keys: list[PrivateKey]) -> bytes | None:
    """The plaintext, if any of ``keys`` opens any recipient entry; None when none does."""
    doc, protected, recips = _parse(data)
    for r in recips:
        if not isinstance(r, dict):
            continue
        h = _headers(doc, protected, r)
        ek = unb64url(r.get("encrypted_key", ""), "encrypted_key")
        for key in keys:
            cek = _unwrap_cek(h, ek, key)
            if cek is None:
                continue
            out = _decrypt_content(h, cek, doc)
            if out is not None:
                return out
    return None


def describe(data: bytes) -> list[dict[str, Any]]:
    """Per recipient: the key-wrap algorithm, and the key id / curve when the header says."""
    doc, protected, recips = _parse(data)
    out = []
    for r in recips:
        if not isinstance(r, dict):
            continue
        h = _headers(doc, protected, r)
        item: dict[str, Any] = {"alg": h.get("alg"), "enc": h.get("enc")}
        if h.get("kid"):
            item["kid"] = h["kid"]
        if isinstance(h.get("epk"), dict):
            item["curve"] = h["epk"].get("crv")
        out.append(item)
    return out
