"""A layer's encryption metadata: the annotations that carry its wrapped keys and public options.

ocicrypt keeps everything on the layer descriptor: ``org.opencontainers.image.enc.pubopts`` (cipher and
HMAC) and one ``org.opencontainers.image.enc.keys.<scheme>`` per wrapping scheme, a comma-separated list of
base64 items. Each item opens to the same private options (key, nonce, plaintext digest). Adding recipients
later appends an item; decrypting drops every ``org.opencontainers.image.enc.*`` annotation.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from ctk_shared import oci
from ctk_shared.errors import CtkError, InvalidArgument, UsageError

from . import jwe, pkcs7
from .cipher import PrivateOptions, PublicOptions
from .keys import Keyring, PublicKey, load_certificate, load_public_key

ANN_PREFIX = "org.opencontainers.image.enc."
ANN_PUBOPTS = "org.opencontainers.image.enc.pubopts"
ANN_KEYS = "org.opencontainers.image.enc.keys."
SCHEMES = ("jwe", "pkcs7")  # what ctk wraps and unwraps; others (pgp, pkcs11, provider.*) are only named

# plain layer type -> encrypted type; Docker types become OCI ones, as imgcrypt and containers/image do
_ENCRYPTED = {
    oci.DOCKER_LAYER_GZIP: oci.OCI_LAYER_GZIP + oci.ENCRYPTED_SUFFIX,
    "application/vnd.docker.image.rootfs.diff.tar": oci.OCI_LAYER + oci.ENCRYPTED_SUFFIX,
    oci.DOCKER_LAYER_FOREIGN: oci.OCI_LAYER_NONDIST_GZIP + oci.ENCRYPTED_SUFFIX,
}
# plain Docker layer types -> the OCI type an OCI manifest must use for an unencrypted layer
OCI_EQUIVALENT = {
    oci.DOCKER_LAYER_GZIP: oci.OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": oci.OCI_LAYER,
    oci.DOCKER_LAYER_FOREIGN: oci.OCI_LAYER_NONDIST_GZIP,
}


class NoMatchingKey(CtkError):
    """None of the given keys opens any of a layer's wrapped keys."""


def is_encrypted(desc: oci.Descriptor) -> bool:
    return desc.media_type.endswith(oci.ENCRYPTED_SUFFIX)


def encrypted_media_type(media_type: str) -> str:
    if media_type.endswith(oci.ENCRYPTED_SUFFIX):
        return media_type
    mt = _ENCRYPTED.get(media_type)
    if mt is None:
        if media_type not in oci.LAYER_TYPES:
            raise InvalidArgument(f"cannot encrypt a layer of media type {media_type!r}")
        mt = media_type + oci.ENCRYPTED_SUFFIX
    return mt


def decrypted_media_type(media_type: str) -> str:
    return media_type.removesuffix(oci.ENCRYPTED_SUFFIX)


@dataclass
class Recipients:
    """Who an encryption is for: JWE public keys and PKCS7 certificates."""

    jwe: list[PublicKey] = field(default_factory=list)
    pkcs7: list[x509.Certificate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.jwe or self.pkcs7)

    @classmethod
    def parse(cls, specs: list[str]) -> Recipients:
        """From ``jwe:PUBKEY`` / ``pkcs7:CERT`` command-line specs (the files are read here)."""
        out = cls()
        for spec in specs:
            scheme, sep, path = spec.partition(":")
            if not sep or not path:
                raise UsageError(f"recipient {spec!r}: expected jwe:PUBLIC_KEY_FILE or pkcs7:CERTIFICATE_FILE")
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise UsageError(f"cannot read recipient {path}: {e.strerror}") from None
            if scheme == "jwe":
                out.jwe.append(load_public_key(data, path))
            elif scheme == "pkcs7":
                cert = load_certificate(data)
                if cert is None:
                    raise InvalidArgument(f"pkcs7 recipient {path} is not an x509 certificate (PEM or DER)")
                out.pkcs7.append(cert)
            elif scheme in ("pgp", "pkcs11", "provider"):
                raise UsageError(f"recipient scheme {scheme!r} is not supported by ctk-crypt (jwe and pkcs7 are)")
            else:
                raise UsageError(f"recipient {spec!r}: unknown scheme {scheme!r} (use jwe: or pkcs7:)")
        return out


def wrap_annotations(private: PrivateOptions, recipients: Recipients,
                     existing: dict[str, str] | None = None) -> dict[str, str]:
    """``existing`` annotations plus one new wrapped-key item per scheme in use."""
    ann = dict(existing or {})
    data = private.to_json()
    items: dict[str, bytes] = {}
    if recipients.jwe:
        items["jwe"] = jwe.wrap(data, recipients.jwe)
    if recipients.pkcs7:
        items["pkcs7"] = pkcs7.wrap(data, recipients.pkcs7)
    for scheme, blob in items.items():
        key = ANN_KEYS + scheme
        new = base64.b64encode(blob).decode()
        ann[key] = f"{ann[key]},{new}" if ann.get(key) else new
    return ann


def public_options(desc: oci.Descriptor) -> PublicOptions:
    raw = desc.annotations.get(ANN_PUBOPTS)
    if not raw:
        raise InvalidArgument(f"layer {desc.digest} is encrypted but has no {ANN_PUBOPTS} annotation")
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise InvalidArgument(f"layer {desc.digest}: the pubopts annotation is not base64") from None
    try:
        return PublicOptions.from_json(data)
    except InvalidArgument as e:
        raise InvalidArgument(f"layer {desc.digest}: {e}") from None


def _items(desc: oci.Descriptor) -> dict[str, list[bytes]]:
    """scheme -> decoded wrapped-key items; a corrupted item is an error naming the annotation."""
    out: dict[str, list[bytes]] = {}
    for key, value in desc.annotations.items():
        if not key.startswith(ANN_KEYS):
            continue
        scheme = key[len(ANN_KEYS):]
        try:
            out[scheme] = [base64.b64decode(v, validate=True) for v in value.split(",") if v]
        except binascii.Error:
            raise InvalidArgument(f"layer {desc.digest}: annotation {key} is not valid base64") from None
    return out


def schemes(desc: oci.Descriptor) -> list[str]:
    return sorted(_items(desc))


def unwrap(desc: oci.Descriptor, keyring: Keyring) -> PrivateOptions:
    """Open the layer's private options with any key of ``keyring``; NoMatchingKey names what was tried."""
    items = _items(desc)
    if not items:
        raise InvalidArgument(f"layer {desc.digest} is encrypted but carries no wrapped keys "
                              f"({ANN_KEYS}* annotations)")
    for scheme, blobs in items.items():
        for blob in blobs:
            try:
                if scheme == "jwe":
                    data = jwe.unwrap(blob, keyring.private_keys)
                elif scheme == "pkcs7":
                    data = pkcs7.unwrap(blob, keyring.private_keys, keyring.certificates)
                else:
                    continue
            except InvalidArgument as e:
                raise InvalidArgument(f"layer {desc.digest}: the {scheme} wrapped key is corrupted: {e}") from None
            if data is not None:
                opts = PrivateOptions.from_json(data)
                if opts.digest:
                    oci.validate_digest(opts.digest)
                return opts
    have = ", ".join(f"{s} ({len(b)} item{'s' if len(b) != 1 else ''})" for s, b in sorted(items.items()))
    unsupported = sorted(set(items) - set(SCHEMES))
    hint = "give the private key of one of the recipients with --key"
    if unsupported:
        hint += f"; ctk-crypt cannot open {', '.join(unsupported)}"
    raise NoMatchingKey(f"layer {desc.digest}: no matching key: none of the {len(keyring.private_keys)} given "
                        f"key(s) opens its wrapped keys: {have}", hint=hint)


def authorize(layers: list[oci.Descriptor], keyring: Keyring) -> int:
    """imgcrypt's authorization check: every encrypted layer's wrapped key opens with ``keyring``.

    Only the small wrapped-key annotation is opened, never the layer: it is what proves the caller holds a
    recipient's key even when the layers were unpacked long ago by someone else. Returns how many layers were
    checked; NoMatchingKey (or InvalidArgument) names the first that fails."""
    encrypted = [d for d in layers if is_encrypted(d)]
    if encrypted and not keyring:
        raise NoMatchingKey(f"{len(encrypted)} encrypted layer(s) and no private key was given",
                            hint="give the private key of one of the recipients with --key")
    for desc in encrypted:
        unwrap(desc, keyring)
    return len(encrypted)


def describe(desc: oci.Descriptor) -> dict[str, Any]:
    """What inspect shows for one layer: scheme(s) and, where the format says, the recipients."""
    info: dict[str, Any] = {"encrypted": is_encrypted(desc)}
    if not info["encrypted"]:
        return info
    try:
        info["cipher"] = public_options(desc).cipher
    except InvalidArgument as e:
        info["cipher_error"] = str(e)
    recips: list[dict[str, Any]] = []
    try:
        items = _items(desc)
    except InvalidArgument as e:
        info["error"] = str(e)
        return info
    info["schemes"] = sorted(items)
    for scheme, blobs in sorted(items.items()):
        for blob in blobs:
            try:
                if scheme == "jwe":
                    recips += [{"scheme": "jwe", **r} for r in jwe.describe(blob)]
                elif scheme == "pkcs7":
                    recips += [{"scheme": "pkcs7", **r} for r in pkcs7.describe(blob)]
                else:
                    recips.append({"scheme": scheme})
            except InvalidArgument as e:
                recips.append({"scheme": scheme, "error": str(e)})
    info["recipients"] = recips
    return info


def strip_annotations(annotations: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if not k.startswith(ANN_PREFIX)}
