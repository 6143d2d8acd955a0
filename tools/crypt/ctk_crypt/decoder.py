"""``ctk-crypt-decoder``: the stream processor containerd runs to unpack an encrypted layer.

Protocol (containerd ``diff/stream_unix.go``, the same one imgcrypt's ``ctd-decoder`` speaks): stdin is the
encrypted blob, stdout must be the plaintext blob, ``STREAM_PROCESSOR_MEDIATYPE`` names the input type,
and fd 3, when open, holds a serialized ``google.protobuf.Any`` — the ``Diff.Apply`` payload for this
processor: ``io.containerd.ocicrypt.v1.Payload`` whose JSON value has the keys and the layer descriptor
(with the wrapped-key annotations: stdin alone carries none). Keys may also come from
``--decryption-keys-path DIR`` (every file in it, no passwords), as with ctd-decoder.

Integrity: the ciphertext is staged to an unlinked temporary file while its HMAC is computed, and only
after the HMAC matches is it decrypted to stdout. So containerd never reads a byte of unauthenticated
plaintext, and a tampered or truncated layer produces no output at all and a non-zero exit (stderr becomes
containerd's error). Only ciphertext touches the disk. The price is one extra sequential write and read
of the layer; holding back just the tail (as ocicrypt does) would let a malleable CTR stream feed
attacker-chosen tar entries to the extractor before the check fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from ctk_shared.decryption_keys import Payload

CHUNK = 1 << 20
PAYLOAD_FD = 3
PROG = "ctk-crypt-decoder"


class DecoderError(Exception):
    pass


def _read_payload_fd() -> bytes | None:
    try:
        os.fstat(PAYLOAD_FD)
    except OSError:
        return None
    chunks = []
    while chunk := os.read(PAYLOAD_FD, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _payload(raw: bytes | None) -> Payload:
    from ctk_shared.decryption_keys import PAYLOAD_TYPE_URL, Payload, parse_payload_value

    if not raw:
        return Payload([], None)
    from google.protobuf import any_pb2
    from google.protobuf.message import DecodeError

    msg = any_pb2.Any()
    try:
        msg.ParseFromString(raw)
    except DecodeError:
        raise DecoderError("the payload on fd 3 is not a protobuf Any") from None
    if not msg.type_url.endswith(PAYLOAD_TYPE_URL):
        raise DecoderError(f"unexpected payload type {msg.type_url!r} (want {PAYLOAD_TYPE_URL})")
    return parse_payload_value(msg.value)


def _copy(src: BinaryIO, dst: BinaryIO) -> None:
    while chunk := src.read(CHUNK):
        dst.write(chunk)


def decode(stdin: BinaryIO, stdout: BinaryIO, media_type: str, payload_raw: bytes | None,
           keys_dir: str | None, stage_dir: str | None) -> None:
    from ctk_shared.decryption_keys import keys_from_dir

    from . import envelope
    from .cipher import LayerDecryptor, decrypt_stream
    from .keys import Keyring

    if not media_type.endswith("+encrypted"):
        _copy(stdin, stdout)  # not ours to change: pass it through
        return
    payload = _payload(payload_raw)
    if payload.layer is None:
        raise DecoderError("no layer descriptor: the unpack request carried no ocicrypt payload, and the wrapped "
                           "keys travel in it (pass --decryption-key to ctk-pull/ctk-run)")
    sources = payload.keys + (keys_from_dir(keys_dir) if keys_dir else [])
    keyring = Keyring.load(sources)
    if not keyring:
        raise DecoderError(f"layer {payload.layer.digest} is encrypted and no decryption key was given "
                           f"(wrapped for: {', '.join(envelope.schemes(payload.layer)) or 'nobody'})")
    private = envelope.unwrap(payload.layer, keyring)
    public = envelope.public_options(payload.layer)
    check = LayerDecryptor(private, public)
    with tempfile.TemporaryFile(dir=stage_dir, prefix="ctk-crypt-decoder-") as staged:
        while chunk := stdin.read(CHUNK):
            check.authenticate(chunk)
            staged.write(chunk)
        check.verify(f"layer {payload.layer.digest}")
        staged.seek(0)
        ctr = decrypt_stream(private, public)
        while chunk := staged.read(CHUNK):
            stdout.write(ctr.update(chunk))
        stdout.write(ctr.finalize())
    stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description="containerd stream processor: decrypts an "
                                     "ocicrypt-encrypted layer from stdin to stdout (keys: payload on fd 3)")
    parser.add_argument("--decryption-keys-path", metavar="DIR", help="also use every key file in DIR")
    parser.add_argument("--stage-dir", metavar="DIR", help="where the ciphertext is staged until its HMAC is "
                        "verified [default: $TMPDIR]")
    args = parser.parse_args(argv)
    from ctk_shared.errors import CtkError

    try:
        decode(sys.stdin.buffer, sys.stdout.buffer, os.environ.get("STREAM_PROCESSOR_MEDIATYPE", ""),
               _read_payload_fd(), args.decryption_keys_path, args.stage_dir)
    except (CtkError, DecoderError) as e:
        hint = getattr(e, "hint", None)
        sys.stderr.write(f"{PROG}: error: {e}" + (f" (hint: {hint})" if hint else "") + "\n")
        raise SystemExit(1) from None
    except BrokenPipeError:
        raise SystemExit(1) from None
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        raise SystemExit(1) from None
