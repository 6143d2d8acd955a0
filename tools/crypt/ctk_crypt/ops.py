"""What ctk-crypt's commands do, between parsed flags and the library: one image in, one image out. One
function per command, ``(client, gopts, opts) -> Result`` (docs/CONVENTIONS.md §7); ``cli.py`` prints."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared import reference as refs
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Image
    from ctk_shared.oci import Descriptor, Platform

    from .options import CheckKeyOptions, DecryptOptions, EncryptOptions, InspectOptions, KeygenOptions


@dataclass(frozen=True)
class Written:
    """The image ``encrypt``/``decrypt`` wrote: the cli prints ``NAME@DIGEST`` (or the JSON record)."""

    name: str
    digest: str
    layers: int  # layers changed


@dataclass(frozen=True)
class Documents:
    """``inspect``: one document per image, printed as one JSON array (or a template per document)."""

    docs: list[dict[str, Any]]


@dataclass(frozen=True)
class KeyCheck:
    """``check-key``: the keys open every encrypted layer (else an exception); ``layers`` of them."""

    name: str
    layers: int


@dataclass(frozen=True)
class Keypair:
    """Result of ``keygen``: the files written, which the cli prints one per line."""

    paths: list[str]  # the files written


def _dst_name(text: str) -> str:
    ref = refs.parse(text)
    if ref.digest:
        raise UsageError(f"destination {text!r} names a digest; give a name[:tag]")
    return str(ref)


def _keyring(specs: Sequence[str]) -> Any:
    from ctk_shared.decryption_keys import read_key_specs

    from .keys import Keyring

    return Keyring.load(read_key_specs(specs))


def _put(client: Client, name: str, target: Descriptor, src: Image) -> None:
    from ctk_shared.containerd import Image
    from ctk_shared.cri import put_image

    put_image(client, Image(name=name, target=target, labels={k: v for k, v in src.labels.items()
                                                              if not k.startswith("ctk/")}))


def encrypt(client: Client, gopts: GlobalOptions, opts: EncryptOptions) -> Written:
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    from . import blobs, envelope, imagewalk

    if not opts.recipients:
        raise UsageError("encrypt needs at least one --recipient (jwe:PUBLIC_KEY or pkcs7:CERTIFICATE)")
    recipients = envelope.Recipients.parse(list(opts.recipients))
    keyring = _keyring(opts.keys) if opts.keys else None
    dst = _dst_name(opts.dst)
    src = find_image(client, opts.src)
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

            result = imagewalk.rewrite(leased, src.target, layer, _selection(opts.platforms, opts.layers))
            if result.changed_layers == 0:
                raise UsageError(f"no layer of {src.name} matches the --layer/--platform selection")
            for plat in result.skipped_manifests:
                progress.note(f"{plat}: manifest not in the store, left as it is")
            _put(leased, dst, result.target, src)
    finally:
        progress.close()
    return Written(dst, result.target.digest, result.changed_layers)


def _selection(platforms: tuple[Platform, ...], layers: tuple[int, ...]) -> Any:
    from . import imagewalk

    return imagewalk.Selection(list(platforms), list(layers))


def decrypt(client: Client, gopts: GlobalOptions, opts: DecryptOptions) -> Written:
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress

    from . import blobs, envelope, imagewalk

    dst = _dst_name(opts.dst)
    src = find_image(client, opts.src)
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

            result = imagewalk.rewrite(leased, src.target, layer, _selection(opts.platforms, opts.layers))
            if result.changed_layers == 0:
                progress.note(f"{src.name} has no encrypted layers (in the selection): {dst} names the same image")
            _put(leased, dst, result.target, src)
    finally:
        progress.close()
    return Written(dst, result.target.digest, result.changed_layers)


def inspect(client: Client, gopts: GlobalOptions, opts: InspectOptions) -> Documents:
    """One document per image."""
    output.parse_format(opts.fmt)  # a syntax error before any work
    return Documents([_inspect_doc(client, text) for text in opts.refs])


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


def check_key(client: Client, gopts: GlobalOptions, opts: CheckKeyOptions) -> KeyCheck:
    """The keys open every encrypted layer's wrapped key (else an exception; nothing is decrypted or written).

    Either an image in the store with ``--key`` specs, or a request document (``ctk_shared.decryption_keys.
    check_request``) that ctk-run sends on stdin, so keys and passwords never appear on a command line."""
    from ctk_shared.decryption_keys import parse_check_request, read_key_specs

    from . import envelope
    from .keys import Keyring

    if opts.request is not None:
        if opts.ref is not None or opts.keys:
            raise UsageError("--request carries the keys and layers: give no REF and no --key with it")
        sources, layers = parse_check_request(opts.request)
        name = "the image"
    else:
        if opts.ref is None:
            raise UsageError("check-key needs an image REF (or --request)")
        from ctk_shared.images import find_image

        from . import imagewalk

        image = find_image(client, opts.ref)
        layers = []
        for mdesc, manifest in imagewalk.manifests(client, image.target):
            chosen = not opts.platforms or mdesc.platform is None or \
                any(p.matches(mdesc.platform) for p in opts.platforms)
            if manifest is not None and chosen:
                layers += manifest.layers
        sources, name = read_key_specs(list(opts.keys)), image.name
    return KeyCheck(name, envelope.authorize(layers, Keyring.load(sources)))


def keygen(client: Client | None, gopts: GlobalOptions, opts: KeygenOptions) -> Keypair:
    """A key pair in files (no containerd: ``client`` is None)."""
    from .keygen import write_keypair

    return Keypair(list(write_keypair(opts.kind, opts.out, opts.bits, opts.curve, opts.password, opts.cert_days)))
