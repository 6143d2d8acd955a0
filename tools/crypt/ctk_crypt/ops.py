"""What ctk-crypt's commands do, between parsed flags and the library: one image in, one image out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared import reference as refs
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Image
    from ctk_shared.oci import Descriptor, Platform


@dataclass(frozen=True)
class CryptOptions:
    recipients: list[str] = field(default_factory=list)  # jwe:FILE / pkcs7:FILE
    keys: list[str] = field(default_factory=list)  # FILE[:pass=…]
    platforms: list[Platform] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)
    quiet: bool = False
    fmt: str = "ref"


def _dst_name(text: str) -> str:
    ref = refs.parse(text)
    if ref.digest:
        raise UsageError(f"destination {text!r} names a digest; give a name[:tag]")
    return str(ref)


def _keyring(specs: list[str]) -> Any:
    from ctk_shared.decryption_keys import read_key_specs

    from .keys import Keyring

    return Keyring.load(read_key_specs(specs))


def _put(client: Client, name: str, target: Descriptor, src: Image) -> None:
    from ctk_shared.containerd import Image
    from ctk_shared.cri import put_image

    put_image(client, Image(name=name, target=target, labels={k: v for k, v in src.labels.items()
                                                              if not k.startswith("ctk/")}))


def encrypt(gopts: GlobalOptions, src_text: str, dst_text: str, opts: CryptOptions) -> None:
    from ctk_shared import connect
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    from . import blobs, envelope, imagewalk

    if not opts.recipients:
        raise UsageError("encrypt needs at least one --recipient (jwe:PUBLIC_KEY or pkcs7:CERTIFICATE)")
    recipients = envelope.Recipients.parse(opts.recipients)
    keyring = _keyring(opts.keys) if opts.keys else None
    dst = _dst_name(dst_text)
    client = connect.containerd(gopts)
    src = find_image(client, src_text)
    progress = make_progress(opts.quiet)
    try:
        with client.lease_scope() as leased:

            def layer(i: int, n: int, desc: Descriptor) -> Descriptor:
                if envelope.is_encrypted(desc):
                    if keyring is None:
                        raise UsageError(f"layer {desc.digest} is already encrypted",
                                         hint="to add recipients, also give a decryption key with --key")
                    return blobs.add_recipients(desc, keyring, recipients)
                return blobs.encrypt_layer(leased, desc, recipients, progress)

            result = imagewalk.rewrite(leased, src.target, layer, imagewalk.Selection(opts.platforms, opts.layers))
            if result.changed_layers == 0:
                raise UsageError(f"no layer of {src.name} matches the --layer/--platform selection")
            for plat in result.skipped_manifests:
                progress.note(f"{plat}: manifest not in the store, left as it is")
            _put(leased, dst, result.target, src)
    finally:
        progress.close()
    output.emit_image(opts.fmt, dst, result.target.digest, Layers=result.changed_layers)


def decrypt(gopts: GlobalOptions, src_text: str, dst_text: str, opts: CryptOptions) -> None:
    from ctk_shared import connect
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    from . import blobs, envelope, imagewalk

    dst = _dst_name(dst_text)
    client = connect.containerd(gopts)
    src = find_image(client, src_text)
    progress = make_progress(opts.quiet)
    keyring = None
    try:
        with client.lease_scope() as leased:

            def layer(i: int, n: int, desc: Descriptor) -> Descriptor:
                nonlocal keyring
                if not envelope.is_encrypted(desc):
                    return desc
                if keyring is None:
                    if not opts.keys:
                        raise UsageError(f"{src.name} has encrypted layers: give a private key with --key",
                                         hint=f"see its recipients with `ctk-crypt inspect {src.name}`")
                    keyring = _keyring(opts.keys)
                return blobs.decrypt_layer(leased, desc, keyring, progress)

            result = imagewalk.rewrite(leased, src.target, layer, imagewalk.Selection(opts.platforms, opts.layers))
            if result.changed_layers == 0:
                progress.note(f"{src.name} has no encrypted layers (in the selection): {dst} names the same image")
            _put(leased, dst, result.target, src)
    finally:
        progress.close()
    output.emit_image(opts.fmt, dst, result.target.digest, Layers=result.changed_layers)


def inspect(gopts: GlobalOptions, texts: list[str], fmt: str | None = None) -> None:
    """One document per image, written as one JSON array (or a ``--format`` template per image)."""
    from ctk_shared import connect

    output.parse_format(fmt)  # a syntax error before any work
    client = connect.containerd(gopts)
    output.emit_inspect([_inspect_doc(client, text) for text in texts], fmt)


def _inspect_doc(client: Client, text: str) -> dict[str, Any]:
    from ctk_shared.images import find_image

    from . import envelope, imagewalk

    image = find_image(client, text)
    docs = []
    for mdesc, manifest in imagewalk.manifests(client, image.target):
        entry: dict[str, Any] = {"digest": mdesc.digest, "mediaType": mdesc.media_type}
        if mdesc.platform:
            entry["platform"] = str(mdesc.platform)
        if manifest is None:
            entry["present"] = False
        else:
            entry["layers"] = [{"digest": x.digest, "mediaType": x.media_type, "size": x.size,
                                **envelope.describe(x)} for x in manifest.layers]
        docs.append(entry)
    encrypted = any(layer.get("encrypted") for m in docs for layer in m.get("layers", []))
    return {"name": image.name, "digest": image.target.digest, "mediaType": image.target.media_type,
            "encrypted": encrypted, "manifests": docs}


def check_key(gopts: GlobalOptions, text: str | None, key_specs: list[str], request: str | None,
              platforms: list[Platform]) -> None:
    """Exit 0 when the keys open every encrypted layer's wrapped key (nothing is decrypted or written).

    Either an image in the store with ``--key`` specs, or a request document (``ctk_shared.decryption_keys.
    check_request``) that ctk-run sends on stdin, so keys and passwords never appear on a command line."""
    import sys

    from ctk_shared.decryption_keys import parse_check_request, read_key_specs

    from . import envelope
    from .keys import Keyring

    if request is not None:
        if text is not None or key_specs:
            raise UsageError("--request carries the keys and layers: give no REF and no --key with it")
        try:
            data = sys.stdin.buffer.read() if request == "-" else open(request, "rb").read()
        except OSError as e:
            raise UsageError(f"cannot read {request}: {e.strerror}") from None
        sources, layers = parse_check_request(data)
        name = "the image"
    else:
        if text is None:
            raise UsageError("check-key needs an image REF (or --request)")
        from ctk_shared import connect
        from ctk_shared.images import find_image

        from . import imagewalk

        client = connect.containerd(gopts)
        image = find_image(client, text)
        layers = []
        for mdesc, manifest in imagewalk.manifests(client, image.target):
            chosen = not platforms or mdesc.platform is None or any(p.matches(mdesc.platform) for p in platforms)
            if manifest is not None and chosen:
                layers += manifest.layers
        sources, name = read_key_specs(key_specs), image.name
    n = envelope.authorize(layers, Keyring.load(sources))
    output.emit_line(f"{name}: {n} encrypted layer(s), every one opened by the key(s)" if n else
                     f"{name}: no encrypted layers")


def keygen(kind: str, out: str, bits: int, curve: str, password: str | None, cert_days: int) -> None:
    from .keygen import write_keypair

    for path in write_keypair(kind, out, bits, curve, password, cert_days):
        output.emit_line(path)
