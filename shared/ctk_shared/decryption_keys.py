"""Decryption keys named on a command line, and the payload that carries them to containerd's decoder.

Shared because three tools need it without needing any cryptography: ctk-crypt reads keys itself, while
ctk-run and ctk-pull only pass them through ``Diff.Apply`` payloads to the stream processor containerd runs
(``ctk-crypt-decoder``, or imgcrypt's ``ctd-decoder``: the payload format is imgcrypt's), and ctk-run sends
them on a pipe to ``ctk-crypt check-key`` (the :func:`check_request` document) to learn whether they may
run an encrypted image.

Key specs follow ocicrypt: ``FILE``, ``FILE:pass=PASSWORD``, ``FILE:file=PASSWORD_FILE``, ``FILE:fd=N``, or
``FILE:PASSWORD``. Unlike ocicrypt, a FILE whose name contains ``:`` works when the file exists.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, UsageError
from .oci import ENCRYPTED_SUFFIX, Descriptor, parse_json_document

# the Any type URL imgcrypt registers for its payload (a JSON value, not protobuf)
PAYLOAD_TYPE_URL = "io.containerd.ocicrypt.v1.Payload"
# stream processor ids the payload is sent under: imgcrypt's, which containerd's default config also uses
PROCESSOR_IDS = (
    "io.containerd.ocicrypt.decoder.v1.tar",
    "io.containerd.ocicrypt.decoder.v1.tar.gzip",
    "io.containerd.ocicrypt.decoder.v1.tar.zstd",
)


@dataclass(frozen=True)
class KeySource:
    """The bytes of one key or certificate file, with its password (None: not given)."""

    data: bytes
    password: bytes | None = None
    origin: str = ""  # where it came from, for messages

    @property
    def looks_like_certificate(self) -> bool:
        return b"-----BEGIN CERTIFICATE-----" in self.data


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None


def _password(kind: str, value: str, spec: str) -> bytes:
    if kind == "pass":
        return value.encode()
    if kind == "file":
        return _read(value, "password file").rstrip(b"\r\n")
    if kind == "fd":
        try:
            fd = int(value)
        except ValueError:
            raise UsageError(f"{spec}: fd= needs a file descriptor number") from None
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks).rstrip(b"\r\n")
    raise UsageError(f"{spec}: unknown password form {kind!r}")


def parse_key_spec(spec: str) -> tuple[str, bytes | None]:
    """Split ``FILE[:pass=…|:file=…|:fd=N|:PASSWORD]`` into the path and the password."""
    if not spec:
        raise UsageError("empty key name")
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    # the longest existing file prefix wins, so a path with ':' still works; else split at the first ':'
    cut = next((i for i in range(len(spec) - 1, 0, -1) if spec[i] == ":" and os.path.exists(spec[:i])),
               spec.index(":"))
    path, rest = spec[:cut], spec[cut + 1:]
    kind, sep, value = rest.partition("=")
    if sep and kind in ("pass", "file", "fd"):
        return path, _password(kind, value, spec)
    return path, rest.encode()


def read_key_specs(specs: Iterable[str]) -> list[KeySource]:
    out = []
    for spec in specs:
        path, password = parse_key_spec(spec)
        out.append(KeySource(_read(path, "key"), password, path))
    return out


def keys_from_dir(directory: str) -> list[KeySource]:
    """Every regular file of a key directory (ctd-decoder's ``--decryption-keys-path``); no passwords."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for name in names:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            out.append(KeySource(_read(p, "key"), None, p))
    return out


# --- the stream processor payload ------------------------------------------------------------------
def payload_value(keys: Iterable[KeySource], layer: Descriptor) -> bytes:
    """imgcrypt's Payload as Go marshals it: ``{"DecryptConfig":{"Parameters":{...}},"Descriptor":{...}}``."""
    privkeys: list[str] = []
    passwords: list[str] = []
    certs: list[str] = []
    for k in keys:
        if k.looks_like_certificate:
            certs.append(base64.b64encode(k.data).decode())
        else:
            privkeys.append(base64.b64encode(k.data).decode())
            passwords.append(base64.b64encode(k.password or b"").decode())
    params: dict[str, list[str]] = {"privkeys": privkeys, "privkeys-passwords": passwords}
    if certs:
        params["x509s"] = certs
    return json.dumps({"DecryptConfig": {"Parameters": params}, "Descriptor": layer.to_json()},
                      separators=(",", ":")).encode()


def unpack_payloads(keys: Iterable[KeySource], layer: Descriptor) -> dict[str, tuple[str, bytes]]:
    """What ``DiffService.apply(payloads=…)`` takes for one layer: the same payload under every decoder id."""
    value = payload_value(list(keys), layer)
    return {pid: (PAYLOAD_TYPE_URL, value) for pid in PROCESSOR_IDS}


@dataclass(frozen=True)
class Payload:
    """What containerd hands the decoder for one layer: the keys, and the layer's descriptor (None: not sent)."""

    keys: list[KeySource]
    layer: Descriptor | None


def parse_payload_value(value: bytes) -> Payload:
    """The reverse of :func:`payload_value` (also reads what imgcrypt's Go clients send)."""
    doc = parse_json_document(value, "decoder payload")
    params: Mapping[str, Any] = ((doc.get("DecryptConfig") or {}).get("Parameters") or {})

    def blobs(name: str) -> list[bytes]:
        return [base64.b64decode(v) if isinstance(v, str) else b"" for v in (params.get(name) or [])]

    pws = blobs("privkeys-passwords")
    keys = [KeySource(k, (pws[i] or None) if i < len(pws) else None, f"payload key {i}")
            for i, k in enumerate(blobs("privkeys"))]
    keys += [KeySource(c, None, f"payload certificate {i}") for i, c in enumerate(blobs("x509s"))]
    desc = doc.get("Descriptor")
    layer = Descriptor.from_json(desc) if isinstance(desc, dict) and desc.get("digest") else None
    return Payload(keys, layer)


def encrypted_layers(layers: Iterable[Descriptor]) -> list[Descriptor]:
    """The layers ocicrypt encrypted: only the media type is looked at, so plain images pay nothing."""
    return [d for d in layers if d.media_type.endswith(ENCRYPTED_SUFFIX)]


def require_keys(layers: Iterable[Descriptor], keys: Iterable[KeySource]) -> None:
    """Refuse, before any work, to unpack encrypted layers without a key (containerd's decoder would fail
    late, with a message about a missing payload)."""

    encrypted = encrypted_layers(layers)
    if encrypted and not list(keys):
        raise UsageError(f"the image has {len(encrypted)} encrypted layer(s) and no decryption key was given",
                         hint="pass --decryption-key KEY.pem[:pass=…], or pull with --unpack=false")


def layer_payloads(keys: Iterable[KeySource]) -> Callable[[Descriptor], dict[str, tuple[str, bytes]]] | None:
    """The Unpacker's ``payloads`` callback for these keys (None without keys: plain layers need none)."""
    keys = list(keys)
    if not keys:
        return None
    return lambda layer: unpack_payloads(keys, layer) if layer.media_type.endswith("+encrypted") else {}


# --- the key check request (ctk-run -> ctk-crypt check-key) -----------------------------------------
def check_request(keys: Iterable[KeySource], layers: Iterable[Descriptor]) -> bytes:
    """``{"keys":[{"key","password","origin"}],"layers":[descriptor…]}``: what ``ctk-crypt check-key
    --request -`` reads. The keys travel on a pipe, never on a command line (``ps`` shows arguments), and
    already read: a ``:fd=N`` password can be read only once. ``origin`` keeps the file name for messages."""
    doc = {"keys": [{"key": base64.b64encode(k.data).decode(),
                     "password": None if k.password is None else base64.b64encode(k.password).decode(),
                     "origin": k.origin} for k in keys],
           "layers": [d.to_json() for d in layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_check_request(data: bytes) -> tuple[list[KeySource], list[Descriptor]]:
    """The reverse of :func:`check_request`; a malformed document is an InvalidArgument."""
    doc = parse_json_document(data, "key check request")
    raw_keys, raw_layers = doc.get("keys", []), doc.get("layers", [])
    if not isinstance(raw_keys, list) or not isinstance(raw_layers, list):
        raise InvalidArgument("key check request: keys and layers must be lists")
    keys = []
    for i, k in enumerate(raw_keys):
        if not isinstance(k, dict) or not isinstance(k.get("key"), str):
            raise InvalidArgument(f"key check request: key {i} has no base64 'key'")
        pw = k.get("password")
        try:
            keys.append(KeySource(base64.b64decode(k["key"], validate=True),
                                  None if pw is None else base64.b64decode(str(pw), validate=True),
                                  str(k.get("origin") or f"key {i}")))
        except ValueError:
            raise InvalidArgument(f"key check request: key {i} is not valid base64") from None
    return keys, [Descriptor.from_json(d) for d in raw_layers]
