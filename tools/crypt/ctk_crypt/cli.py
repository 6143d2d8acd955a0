"""The ctk-crypt command line: flags in, one call into ``ops``, the produced ``NAME@DIGEST`` out.

cryptography and grpc are imported inside the commands, so ``--help`` stays fast.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import ctk_shared  # noqa: F401 -- before click: importing it sets up the stdlib stand-ins (see its __init__)

# isort: split
import click
from ctk_shared import cli as shared_cli
from ctk_shared.errors import UsageError
from ctk_shared.output import refs_from_args

if TYPE_CHECKING:
    from ctk_shared.containerd import Client
    from ctk_shared.oci import Platform

    from .ops import Written

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=shared_cli.CtkGroup, context_settings=CONTEXT, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """OCI layer encryption for images in containerd, compatible with ocicrypt (skopeo, nerdctl, imgcrypt).

    SRC and DST are image names in the containerd store; SRC may be `-` (a ref, or a JSON record, on stdin).
    The produced image's NAME@DIGEST goes to stdout; progress and errors go to stderr.
    """


def _one_ref(text: str) -> str:
    ref = next(refs_from_args([text]), None)
    if ref is None:
        raise UsageError("no source ref on stdin")
    return ref


def _platforms(values: tuple[str, ...]) -> tuple[Platform, ...]:
    from ctk_shared.oci import Platform

    return tuple(Platform.parse(p) for v in values for p in v.split(",") if p)


def _client() -> Client:
    from ctk_shared import connect

    return connect.containerd(shared_cli.options())


def _emit_written(fmt: str, written: Written) -> None:
    from ctk_shared import output

    output.emit_image(fmt, written.name, written.digest, Layers=written.layers)


_platform_opt = click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
                             help="only these platforms of a multi-platform image (repeatable; default: all in "
                                  "the store)")
_layer_opt = click.option("--layer", "layers", multiple=True, type=int, metavar="N",
                          help="only layer N (0-based; negative counts from the top; repeatable; default: all)")
_quiet_opt = click.option("-q", "--quiet", is_flag=True, help="no progress output")
_format_opt = click.option("--format", "fmt", type=click.Choice(["ref", "json"]), default="ref", show_default=True,
                           help="stdout: NAME@DIGEST, or a JSON record")


@cli.command(context_settings=CONTEXT)
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recipient", "recipients", multiple=True, metavar="jwe:PUBKEY|pkcs7:CERT",
              help="who can decrypt: a public key (RSA/EC; PEM, DER or JWK) or an x509 certificate (repeatable)")
@click.option("-k", "--key", "keys", multiple=True, metavar="FILE[:pass=PW]",
              help="a private key of the layers' recipients, to add recipients to an encrypted image")
@_layer_opt
@_platform_opt
@_quiet_opt
@_format_opt
@shared_cli.global_options
def encrypt(src: str, dst: str, recipients: tuple[str, ...], keys: tuple[str, ...], layers: tuple[int, ...],
            platforms: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """Write DST: SRC with its layers encrypted for the recipients (or more recipients added)."""
    from . import ops
    from .options import EncryptOptions

    opts = EncryptOptions(src=_one_ref(src), dst=dst, recipients=recipients, keys=keys, platforms=_platforms(platforms),
                          layers=layers, quiet=quiet)
    _emit_written(fmt, ops.encrypt(_client(), shared_cli.options(), opts))


@cli.command(context_settings=CONTEXT)
@click.argument("src")
@click.argument("dst")
@click.option("-k", "--key", "keys", multiple=True, metavar="FILE[:pass=PW]",
              help="private key (PEM, DER, JWK; PKCS#1/#8/SEC1; FILE:pass=PW, FILE:file=PWFILE, FILE:fd=N for "
                   "encrypted keys); certificates are accepted too (repeatable)")
@_layer_opt
@_platform_opt
@_quiet_opt
@_format_opt
@shared_cli.global_options
def decrypt(src: str, dst: str, keys: tuple[str, ...], layers: tuple[int, ...], platforms: tuple[str, ...],
            quiet: bool, fmt: str) -> None:
    """Write DST: SRC with its encrypted layers decrypted (HMAC-checked; nothing is kept if a check fails)."""
    from . import ops
    from .options import DecryptOptions

    opts = DecryptOptions(src=_one_ref(src), dst=dst, keys=keys, platforms=_platforms(platforms), layers=layers,
                          quiet=quiet)
    _emit_written(fmt, ops.decrypt(_client(), shared_cli.options(), opts))


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("-f", "--format", "fmt", help="json (the default: a JSON array), or a template like '{{.encrypted}}'")
@shared_cli.global_options
def inspect(refs: tuple[str, ...], fmt: str | None) -> None:
    """Per image, manifest and layer: encrypted?, cipher, key-wrap schemes and what the wrapping tells of
    recipients, as a JSON array like every ctk inspect (REF may be `-`)."""
    from ctk_shared import output

    from . import ops
    from .options import InspectOptions

    opts = InspectOptions(refs=tuple(refs_from_args(refs)), fmt=fmt)
    output.emit_inspect(ops.inspect(_client(), shared_cli.options(), opts).docs, fmt)


@cli.command(name="check-key", context_settings=CONTEXT)
@click.argument("ref", required=False)
@click.option("-k", "--key", "keys", multiple=True, metavar="FILE[:pass=PW]",
              help="private key (or certificate) to check, as for decrypt (repeatable)")
@click.option("--request", metavar="FILE|-", help="read the keys and layers from a JSON document instead of "
              "REF and --key (what ctk-run sends on stdin, so no key or password is on a command line)")
@_platform_opt
@shared_cli.global_options
def check_key(ref: str | None, keys: tuple[str, ...], request: str | None, platforms: tuple[str, ...]) -> None:
    """Exit 0 if the keys open the wrapped key of every encrypted layer of REF (imgcrypt's check).

    Nothing is decrypted: this is the authorization ctk-run asks for before it runs an encrypted image, whose
    layers may have been unpacked by someone else.
    """
    from ctk_shared import output

    from . import ops
    from .options import CheckKeyOptions

    data = None
    if request is not None:
        try:
            data = sys.stdin.buffer.read() if request == "-" else open(request, "rb").read()
        except OSError as e:
            raise UsageError(f"cannot read {request}: {e.strerror}") from None
    opts = CheckKeyOptions(ref=_one_ref(ref) if ref else None, keys=keys, request=data,
                           platforms=_platforms(platforms))
    checked = ops.check_key(_client(), shared_cli.options(), opts)
    output.emit_line(f"{checked.name}: {checked.layers} encrypted layer(s), every one opened by the key(s)"
                     if checked.layers else f"{checked.name}: no encrypted layers")


@cli.command(context_settings=CONTEXT)
@click.option("-t", "--type", "kind", type=click.Choice(["rsa", "ec"]), default="rsa", show_default=True,
              help="key algorithm")
@click.option("-o", "--output", "out", required=True, metavar="NAME",
              help="writes NAME.pem (private, mode 0600) and NAME.pub.pem; prints the paths")
@click.option("--bits", type=click.IntRange(2048, 8192), default=4096, show_default=True, help="RSA key size")
@click.option("--curve", type=click.Choice(["P-256", "P-384", "P-521"]), default="P-256", show_default=True,
              help="EC curve (with --type ec)")
@click.option("--password", help="encrypt the private key (PKCS#8) with this password")
@click.option("--cert-days", type=click.IntRange(0, 36500), default=0,
              help="also write NAME.crt, a self-signed certificate valid this many days (a pkcs7 recipient)")
@shared_cli.global_options
def keygen(kind: str, out: str, bits: int, curve: str, password: str | None, cert_days: int) -> None:
    """Make a key pair for --recipient jwe:NAME.pub.pem / --key NAME.pem."""
    from ctk_shared import output

    from . import ops
    from .options import KeygenOptions

    opts = KeygenOptions(out=out, kind=kind, bits=bits, curve=curve, password=password, cert_days=cert_days)
    for path in ops.keygen(None, shared_cli.options(), opts).paths:
        output.emit_line(path)


def main() -> None:
    shared_cli.main(cli, "ctk-crypt")
