"""The ocicrypt layer cipher ``AES_256_CTR_HMAC_SHA256``: encrypt-then-MAC over the whole layer blob.

A fresh 32-byte key and 16-byte nonce per layer; the nonce is the full initial counter block (Go's
``cipher.NewCTR`` and OpenSSL's CTR both increment all 128 bits big-endian, so they agree). The MAC is
HMAC-SHA256 under the *same* key over the ciphertext only. CTR adds no padding: ciphertext size equals
the plaintext blob size. Everything streams chunk by chunk, so memory stays flat for any layer size.
"""
from __future__ import annotations

import base64
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from ctk_shared.errors import IntegrityError, InvalidArgument
from ctk_shared.oci import parse_json_document

CIPHER_NAME = "AES_256_CTR_HMAC_SHA256"
KEY_SIZE = 32
NONCE_SIZE = 16


def b64(data: bytes) -> str:
    """Go's encoding/json form of a ``[]byte``: standard base64 with padding."""
    return base64.b64encode(data).decode()


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidArgument(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class PrivateOptions:
    """What every key wrapper encrypts for its recipients: the layer key, nonce and plaintext digest."""

    symkey: bytes
    digest: str  # of the plaintext blob that was encrypted (the original layer descriptor's digest)
    nonce: bytes

    def to_json(self) -> bytes:
        # Go marshals struct fields in declaration order, compactly; match it byte for byte
        return json.dumps({"symkey": b64(self.symkey), "digest": self.digest,
                           "cipheroptions": {"nonce": b64(self.nonce)}}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PrivateOptions:
        doc = parse_json_document(data, "unwrapped layer options")
        opts = doc.get("cipheroptions") or {}
        if not isinstance(opts, dict):
            raise InvalidArgument("unwrapped layer options: cipheroptions is not an object")
        symkey = unb64(doc.get("symkey"), "layer key")
        nonce = unb64(opts.get("nonce"), "layer nonce")
        if len(symkey) != KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise InvalidArgument(f"layer key/nonce have the wrong size ({len(symkey)}/{len(nonce)} bytes)")
        return cls(symkey, str(doc.get("digest") or ""), nonce)


@dataclass(frozen=True)
class PublicOptions:
    """The plaintext half, kept in the ``org.opencontainers.image.enc.pubopts`` annotation."""

    cipher: str
    hmac: bytes
    cipheroptions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"cipher": self.cipher, "hmac": b64(self.hmac), "cipheroptions": self.cipheroptions},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PublicOptions:
        doc = parse_json_document(data, "the pubopts annotation")
        cipher = doc.get("cipher")
        if cipher != CIPHER_NAME:
            raise InvalidArgument(f"unsupported layer cipher {cipher!r} (only {CIPHER_NAME} is known)")
        mac = unb64(doc.get("hmac") or "", "the pubopts hmac")
        if not mac:
            raise InvalidArgument("the pubopts annotation carries no HMAC: refusing to decrypt unauthenticated data")
        return cls(str(cipher), mac, dict(doc.get("cipheroptions") or {}))


class LayerEncryptor:
    """Feed plaintext chunks to :meth:`update`; :meth:`finalize` returns the options once the stream ended."""

    def __init__(self, digest: str, symkey: bytes | None = None, nonce: bytes | None = None) -> None:
        self.private = PrivateOptions(symkey or os.urandom(KEY_SIZE), digest, nonce or os.urandom(NONCE_SIZE))
        self._ctr = Cipher(algorithms.AES(self.private.symkey), modes.CTR(self.private.nonce)).encryptor()
        self._mac = chmac.HMAC(self.private.symkey, hashes.SHA256())

    def update(self, chunk: bytes) -> bytes:
        out = self._ctr.update(chunk)
        self._mac.update(out)
        return out

    def finalize(self) -> PublicOptions:
        self._ctr.finalize()
        return PublicOptions(CIPHER_NAME, self._mac.finalize())


class LayerDecryptor:
    """Feed ciphertext to :meth:`update` (or only :meth:`authenticate` it); :meth:`verify` at the end raises
    IntegrityError unless the HMAC matches. Output before ``verify`` is *not* trusted yet."""

    def __init__(self, private: PrivateOptions, public: PublicOptions) -> None:
        if public.cipher != CIPHER_NAME:
            raise InvalidArgument(f"unsupported layer cipher {public.cipher!r}")
        self.private, self.public = private, public
        self._ctr = Cipher(algorithms.AES(private.symkey), modes.CTR(private.nonce)).decryptor()
        self._mac = chmac.HMAC(private.symkey, hashes.SHA256())

    def authenticate(self, chunk: bytes) -> None:
        self._mac.update(chunk)

    def update(self, chunk: bytes) -> bytes:
        self._mac.update(chunk)
        return self._ctr.update(chunk)

    def verify(self, what: str = "layer") -> None:
        got = self._mac.finalize()
        if not hmac.compare_digest(got, self.public.hmac):
            raise IntegrityError(f"{what}: HMAC check failed: the ciphertext was altered or truncated",
                                 hint="fetch the image again; if it persists, the registry copy is damaged")


def decrypt_stream(private: PrivateOptions, public: PublicOptions) -> Any:
    """A plain CTR decryptor (no MAC) for a second pass over ciphertext whose HMAC was already checked."""
    return Cipher(algorithms.AES(private.symkey), modes.CTR(private.nonce)).decryptor()
