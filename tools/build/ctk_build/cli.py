"""The ctk-build command line: ``ctk-build [OPTIONS] CONTEXT`` builds; ``ctk-build prune`` empties the cache.

stdout gets one line, the built image's ``name@digest`` (or a JSON record with ``--format json``); step lines,
RUN output and errors go to stderr. Heavy modules are imported inside the commands.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import ctk_shared  # noqa: F401 -- before click: importing it sets up the stdlib stand-ins (see its __init__)

# isort: split
import click
from ctk_shared import cli as shared_cli
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=shared_cli.DefaultCommandGroup, default_command="build", operand_is_path=True,
             context_settings=CONTEXT, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """Dockerfile builds executed on containerd (no BuildKit daemon).

    `ctk-build [OPTIONS] CONTEXT` is `ctk-build build [OPTIONS] CONTEXT` (its flags: `ctk-build build --help`).
    CONTEXT `-` reads the Dockerfile from stdin and builds without a context.
    """


def _client() -> Client:
    from ctk_shared import connect

    return connect.containerd(shared_cli.options())


def _epoch(value: str | None) -> int | None:
    text = value if value is not None else os.environ.get("SOURCE_DATE_EPOCH") or None
    if text is None:
        return None
    if not text.isdigit():
        raise UsageError(f"source date epoch {text!r} is not a number of seconds")
    return int(text)


@cli.command(context_settings=CONTEXT)
@click.argument("context_dir", metavar="CONTEXT")
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="name the image (repeatable)")
@click.option("-f", "--file", "dockerfile", metavar="PATH", help="the Dockerfile [default: CONTEXT/Dockerfile]; - = stdin")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY[=VALUE]", help="set a build ARG (repeatable)")
@click.option("--target", help="build up to this stage (only the stages it needs)")
@click.option("--no-cache", is_flag=True, help="do not reuse cached steps")
@click.option("-q", "--quiet", is_flag=True, help="no step lines or RUN output; stdout still gets the ref "
              "(= --progress quiet)")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "quiet", "rawjson"]), default="auto",
              show_default=True, help="stderr display: tty = BuildKit's live view, plain = CI lines with step "
              "numbers and timings, rawjson = JSON events; auto = tty on a terminal, else plain")
@click.option("--network", type=click.Choice(["default", "none", "host"]), default="default", show_default=True,
              help="network of RUN steps: default = their own on the bridge network (outbound NAT); "
                   "host needs --allow network.host")
@click.option("--allow", "allow", multiple=True, metavar="ENTITLEMENT",
              help="grant an entitlement: network.host (RUN --network=host, --network host)")
@click.option("--platform", metavar="OS/ARCH[/VARIANT][,…]", help="the target platform; several (comma-separated) "
              "build an OCI index with one image each, RUN steps of other CPUs running under QEMU (scripts/setup)")
@click.option("--source-date-epoch", metavar="SECONDS",
              help="pin every timestamp for reproducible digests [$SOURCE_DATE_EPOCH]")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="add a label to the image config (repeatable)")
@click.option("--push", is_flag=True, help="push every -t name after the build")
@click.option("-o", "--output", "outputs", multiple=True, metavar="type=oci|docker,dest=PATH",
              help="also write the image as a tar (OCI layout + docker-archive in one)")
@click.option("--compression", type=click.Choice(["auto", "gzip", "uncompressed"]), default="auto",
              show_default=True, help="of the layers; auto: uncompressed locally, gzip with --push or -o")
@click.option("--pull", is_flag=True, help="pull base images even when they are in the store")
@click.option("--digestfile", metavar="PATH", help="also write the image's manifest digest to PATH")
@click.option("--iidfile", metavar="PATH", help="also write the image ID (its config digest) to PATH")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID[,src=PATH|,env=VAR]",
              help="a secret for RUN --mount=type=secret,id=ID (repeatable); never stored in the image")
@click.option("--ssh", "ssh", multiple=True, metavar="default|ID=SOCKET",
              help="an SSH agent socket for RUN --mount=type=ssh (default: $SSH_AUTH_SOCK; repeatable)")
@click.option("--cache-to", "cache_to", multiple=True, metavar="type=registry,ref=NAME[,mode=min|max]",
              help="export the build cache to a registry (or type=local,dest=DIR, an OCI layout); repeatable")
@click.option("--cache-from", "cache_from", multiple=True, metavar="type=registry,ref=NAME",
              help="reuse steps cached in a registry (or type=local,src=DIR); layers are fetched only for the "
                   "steps used; repeatable")
@click.option("--format", "fmt", type=click.Choice(["ref", "json"]), default="ref", show_default=True,
              help="stdout: the ref@digest, or a JSON record")
@shared_cli.global_options
def build(context_dir: str, tags: tuple[str, ...], dockerfile: str | None, build_args: tuple[str, ...],
          target: str | None, no_cache: bool, quiet: bool, network: str, platform: str | None,
          source_date_epoch: str | None, labels: tuple[str, ...], push: bool, outputs: tuple[str, ...],
          compression: str, pull: bool, digestfile: str | None, fmt: str, allow: tuple[str, ...], progress: str,
          iidfile: str | None, secrets: tuple[str, ...], ssh: tuple[str, ...], cache_to: tuple[str, ...],
          cache_from: tuple[str, ...]) -> None:
    """Build an image from a Dockerfile."""
    from . import ops
    from .platforms import parse_list as parse_platforms

    req = ops.BuildRequest(
        context=context_dir, dockerfile=dockerfile, tags=tags, build_args=shared_cli.key_values(build_args, "--build-arg", bare="env"), target=target,
        no_cache=no_cache, quiet=quiet, network=network, allow=frozenset(allow),
        platforms=parse_platforms(platform) if platform else (), source_date_epoch=_epoch(source_date_epoch),
        labels=shared_cli.key_values(labels), push=push, outputs=outputs, fmt=fmt, compression=compression,
        pull=pull, digestfile=digestfile, progress=progress, iidfile=iidfile, secrets=secrets, ssh=ssh,
        cache_to=cache_to, cache_from=cache_from, stdout=sys.stdout.buffer,  # for -o dest=- (§7: handed over)
        stdin=sys.stdin.read() if context_dir == "-" and dockerfile in (None, "-") or
        context_dir != "-" and dockerfile == "-" else None)  # the `-` Dockerfile, read here (§7)
    res = ops.build(_client(), shared_cli.options(), req)
    if not res.tar_on_stdout:  # else stdout carried the tar
        from ctk_shared import output

        extra = {"Platforms": list(res.platforms)} if res.platforms else {}
        output.emit_image(fmt, res.name, res.digest, Names=list(res.names), Config=res.config, **extra)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="accepted for Docker compatibility (prune never asks)")
@shared_cli.global_options
def prune(force: bool) -> None:
    """Remove the build cache of the namespace (layers no image uses are then collected)."""
    from ctk_shared.output import human_size

    from . import ops

    pruned = ops.prune(_client(), shared_cli.options(), ops.PruneOptions(force=force))
    sys.stderr.write(f"removed {pruned.entries} cache entries ({human_size(pruned.size)} of layers released)\n")


def main() -> None:
    # the cyclic collector waits for the end of the imports: ctk_shared.collector, via shared_cli.run
    shared_cli.main(cli, "ctk-build")


