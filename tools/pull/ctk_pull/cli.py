"""The ctk-pull command line: flags in, one call into the library, results out through ctk_shared.output.

Heavy modules (grpc, requests, rich) are imported inside the commands that need them, so ``--help`` and
listing an empty store stay fast.
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

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=shared_cli.DefaultCommandGroup, default_command="pull", context_settings=CONTEXT,
             invoke_without_command=False, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """Images and registries on containerd.

    `ctk-pull REF` pulls REF (same as `ctk-pull pull REF`; its flags: `ctk-pull pull --help`). Results go to
    stdout (a ref@digest per produced image, or a table / JSON lines for listings); progress and errors go to
    stderr. The flags of any command: `ctk-pull COMMAND --help`.
    """


def _client() -> Client:
    from ctk_shared import connect

    return connect.containerd(shared_cli.options())


def _platform(value: str | None, unpack: bool = False) -> Platform | None:
    """``--platform``; one to unpack must be a Linux one (the snapshotter holds Linux layers only)."""
    from ctk_shared.errors import UsageError
    from ctk_shared.oci import Platform

    p = Platform.parse(value) if value else None
    if p is not None and unpack and p.os != "linux":
        raise UsageError(f'unsupported platform "{value}": image operating system "{p.os}" cannot be used on '
                         "this platform", hint="--unpack=false fetches it without unpacking")
    return p


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--platform", help="pull this platform of a multi-platform image (os/arch[/variant])")
@click.option("--all-platforms", is_flag=True, help="fetch every platform (unpack only the selected one)")
@click.option("--unpack", type=click.Choice(["auto", "true", "false"]), default="auto", show_default=True,
              help="unpack layers into the snapshotter")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@click.option("--format", "fmt", type=click.Choice(["ref", "json"]), default="ref", show_default=True,
              help="stdout: the pulled ref@digest, or a JSON record")
@click.option("--max-concurrent-downloads", type=click.IntRange(1, 32), default=3, show_default=True,
              help="layers fetched at once; they start in layer order so unpacking overlaps the download")
@click.option("--decryption-key", "decryption_keys", multiple=True, metavar="KEY[:pass=…]",
              help="private key (or cert) to unpack encrypted layers with (repeatable)")
@shared_cli.global_options
def pull(refs: tuple[str, ...], platform: str | None, all_platforms: bool, unpack: str, quiet: bool, fmt: str,
         max_concurrent_downloads: int, decryption_keys: tuple[str, ...]) -> None:
    """Pull images from a registry into containerd (REF may be `-`: refs from stdin)."""
    from ctk_shared import output

    from . import ops
    from .options import PullOptions

    opts = PullOptions(refs=tuple(refs_from_args(refs)), platform=_platform(platform, unpack != "false"),
                       all_platforms=all_platforms, unpack=unpack != "false", quiet=quiet,
                       max_concurrent_downloads=max_concurrent_downloads, decryption_keys=decryption_keys)
    for r in ops.pull(_client(), shared_cli.options(), opts):
        output.emit_image(fmt, r.name, r.digest, MediaType=r.media_type, Platforms=list(r.platforms),
                          FetchedBytes=r.fetched_bytes, RemoteLayers=r.remote_layers, Sources=r.sources)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--platform", help="push only this platform's manifest")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@click.option("--format", "fmt", type=click.Choice(["ref", "json"]), default="ref", show_default=True,
              help="stdout: the pushed ref@digest, or a JSON record")
@shared_cli.global_options
def push(refs: tuple[str, ...], platform: str | None, quiet: bool, fmt: str) -> None:
    """Push images to their registry (cross-repository mount when the registry already has a layer)."""
    from ctk_shared import output

    from . import ops
    from .options import PushOptions

    opts = PushOptions(refs=tuple(refs_from_args(refs)), platform=_platform(platform), quiet=quiet)
    for r in ops.push(_client(), shared_cli.options(), opts):
        output.emit_image(fmt, r.name, r.digest)


@cli.command(context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="only image IDs")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Repository}}:{{.Tag}}'")
@click.option("--digests", is_flag=True, help="show the DIGEST column")
@click.option("--no-trunc", is_flag=True, help="full image IDs")
@click.argument("repository", required=False)
@shared_cli.global_options
def images(quiet: bool, fmt: str | None, digests: bool, no_trunc: bool, repository: str | None) -> None:
    """List images (a table on a terminal, JSON lines otherwise)."""
    from ctk_shared import output

    from . import listing
    from .options import ImagesOptions

    opts = ImagesOptions(quiet=quiet, fmt=fmt, digests=digests, no_trunc=no_trunc, repository=repository)
    found = listing.images(_client(), shared_cli.options(), opts)
    output.emit_records(found.records, found.columns, fmt, quiet_field="ID", quiet=quiet, fields=listing.FIELDS)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--platform", help="which platform's manifest and config to show")
@click.option("--raw", is_flag=True, help="the stored target document, byte for byte")
@click.option("-f", "--format", "fmt", help="json (the default: a JSON array), or a template like '{{.Id}}'")
@shared_cli.global_options
def inspect(refs: tuple[str, ...], platform: str | None, raw: bool, fmt: str | None) -> None:
    """Show images' manifest and config as a JSON array (Docker's field names where Docker has them)."""
    from ctk_shared import output

    from . import listing
    from .options import InspectOptions

    opts = InspectOptions(refs=tuple(refs_from_args(refs)), platform=_platform(platform), raw=raw, fmt=fmt)
    found = listing.inspect(_client(), shared_cli.options(), opts)
    for doc in found.raw:  # --raw prints each document before a later ref fails; the array is all or nothing
        output.emit_line(doc)
    if found.error is not None:
        raise found.error
    if not raw:
        output.emit_inspect(found.docs, fmt)


@cli.command(context_settings=CONTEXT)
@click.argument("source")
@click.argument("target")
@shared_cli.global_options
def tag(source: str, target: str) -> None:
    """Give an image another name (SOURCE may be `-`)."""
    from ctk_shared import output

    from . import ops
    from .options import TagOptions

    src = next(refs_from_args([source]), None)
    if src is None:
        raise UsageError("no source ref on stdin")
    tagged = ops.tag(_client(), shared_cli.options(), TagOptions(source=src, target=target))
    output.emit_line(f"{tagged.name}@{tagged.digest}")


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("-f", "--force", is_flag=True, help="remove even if a container uses it")
@shared_cli.global_options
def rm(refs: tuple[str, ...], force: bool) -> None:
    """Remove images (refuses images used by containers unless -f)."""
    from ctk_shared import output
    from ctk_shared.errors import raise_failures

    from . import ops
    from .options import RmOptions

    result = ops.remove(_client(), shared_cli.options(), RmOptions(refs=tuple(refs_from_args(refs)), force=force))
    for name in result.names:
        output.emit_line(f"Untagged: {name}")
    raise_failures(result.failures)


@cli.command(context_settings=CONTEXT)
@click.argument("server", required=False)
@click.option("-u", "--username", help="user name (asked for on a terminal when missing)")
@click.option("-p", "--password", help="prefer --password-stdin: argv is visible to other users")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@shared_cli.global_options
def login(server: str | None, username: str | None, password: str | None, password_stdin: bool) -> None:
    """Check credentials against a registry and store them in ~/.docker/config.json."""
    from . import ops
    from .options import LoginOptions

    if password_stdin:
        if password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("a username is required (-u)")
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    ops.login(None, shared_cli.options(), LoginOptions(server=server, username=username, password=password))


@cli.command(context_settings=CONTEXT)
@click.argument("server", required=False)
@shared_cli.global_options
def logout(server: str | None) -> None:
    """Remove stored credentials for a registry."""
    from . import ops
    from .options import LogoutOptions

    ops.logout(None, shared_cli.options(), LogoutOptions(server=server))


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("-o", "--output", required=True, help="tar file to write (`-` for stdout)")
@click.option("--platform", help="save only this platform")
@click.option("--all-platforms", is_flag=True, help="save every platform present in the store")
@shared_cli.global_options
def save(refs: tuple[str, ...], output: str, platform: str | None, all_platforms: bool) -> None:
    """Write images to a tar that is both a docker-archive and an OCI layout."""
    from . import archive_cmds
    from .options import SaveOptions

    opts = SaveOptions(tuple(refs_from_args(refs)), output, _platform(platform), all_platforms,
                       stdout=sys.stdout.buffer if output == "-" else None)
    archive_cmds.save(_client(), shared_cli.options(), opts)


@cli.command(context_settings=CONTEXT)
@click.option("-i", "--input", "input_", default="-", show_default=True, help="tar file to read (`-`: stdin)")
@click.option("--platform", help="unpack this platform")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@shared_cli.global_options
def load(input_: str, platform: str | None, quiet: bool) -> None:
    """Import images from a docker-archive or OCI layout tar; prints each loaded ref@digest."""
    from ctk_shared import archive
    from ctk_shared import output as out

    from . import archive_cmds
    from .options import LoadOptions

    plat = _platform(platform)
    client = _client()
    with archive.open_input(input_) as f:  # `-`: stdin spooled to a file (the tar is read twice)
        loaded = archive_cmds.load(client, shared_cli.options(), LoadOptions(f, plat, quiet))
    for line in loaded.refs:
        out.emit_line(line)


@cli.command(context_settings=CONTEXT)
@click.argument("source", metavar="SRC")
@click.argument("target", metavar="DST")
@click.option("--estargz", "fmt_estargz", is_flag=True, help="eStargz layers (lazy pulling), still plain tar+gzip")
@click.option("--zstd", "fmt_zstd", is_flag=True, help="recompress layers with zstd (needs an OCI manifest)")
@click.option("--uncompressed", "fmt_uncompressed", is_flag=True, help="store layers as plain tars")
@click.option("--estargz-record-in", type=click.Path(dir_okay=False), metavar="FILE",
              help="files to prioritise (ctr-remote's record JSON, or a JSON list of paths)")
@click.option("--chunk-size", "--estargz-chunk-size", type=click.IntRange(0), default=0, show_default=True,
              help="eStargz chunk size in bytes (0: 4 MiB)")
@click.option("--compression-level", "--estargz-compression-level", "level", type=click.IntRange(0, 22),
              help="gzip 0-9 (eStargz default 9) or zstd 1-22 (default 3)")
@click.option("--oci", is_flag=True, help="write OCI media types for a Docker image")
@click.option("--platform", help="convert these platforms (os/arch[/variant], comma-separated; default: host)")
@click.option("--all-platforms", is_flag=True, help="convert every platform (all must be in the store)")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@click.option("--format", "fmt", type=click.Choice(["ref", "json"]), default="ref", show_default=True,
              help="stdout: DST@DIGEST, or a JSON record")
@shared_cli.global_options
def convert(source: str, target: str, fmt_estargz: bool, fmt_zstd: bool, fmt_uncompressed: bool,
            estargz_record_in: str | None, chunk_size: int, level: int | None, oci: bool, platform: str | None,
            all_platforms: bool, quiet: bool, fmt: str) -> None:
    """Convert an image in the store into DST: eStargz, zstd or uncompressed layers (SRC may be `-`)."""
    from ctk_shared import output
    from ctk_shared.oci import Platform

    from . import convert_cmds
    from .options import ConvertOptions

    src = next(refs_from_args([source]), None)
    if src is None:
        raise UsageError("no source ref on stdin")
    platforms = tuple(Platform.parse(p.strip()) for p in platform.split(",") if p.strip()) if platform else ()
    opts = ConvertOptions(source=src, target=target, estargz=fmt_estargz, zstd=fmt_zstd,
                          uncompressed=fmt_uncompressed, estargz_record_in=estargz_record_in, chunk_size=chunk_size,
                          level=level, oci=oci, platforms=platforms, all_platforms=all_platforms, quiet=quiet)
    r = convert_cmds.convert(_client(), shared_cli.options(), opts)
    output.emit_image(fmt, r.name, r.digest, MediaType=r.media_type, Platforms=r.platforms, Source=r.source)


@cli.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_images", is_flag=True, help="remove every image no container uses, not just "
                                                              "dangling ones (and partial downloads of dead pulls)")
@click.option("-f", "--force", is_flag=True, help="do not prompt for confirmation (needed when stdin is not a TTY)")
@click.option("--filter", "filters", multiple=True, metavar="FILTER",
              help="until=TIME (timestamp, date or duration like 24h), label=KEY[=VALUE], label!=KEY[=VALUE]")
@shared_cli.global_options
def prune(all_images: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove dangling images (-a: all images no container uses) and what killed pulls left behind."""
    from ctk_shared import output
    from ctk_shared.prune import parse_filters, reclaimed_line

    from . import prune as pruning
    from .options import PruneOptions

    flt = parse_filters(filters)  # a bad filter is refused before the prompt
    if not shared_cli.confirm_prune(pruning.warning(all_images), force):
        return
    done = pruning.prune(_client(), shared_cli.options(), PruneOptions(all_images, flt))
    if done.images:
        output.emit_line("Deleted Images:")
        for line in done.images:
            output.emit_line(line)
        output.emit_line("")
    if done.snapshots or done.leases:
        output.emit_line("Deleted Pull Leftovers:")
        for key in done.snapshots:
            output.emit_line(f"snapshot: {key}")
        for lease in done.leases:
            output.emit_line(f"lease: {lease}")
        output.emit_line("")
    output.emit_line(reclaimed_line(done.reclaimed))


@cli.command("lazy-serve", context_settings=CONTEXT)
@click.option("--root", required=True, type=click.Path(file_okay=False), help="directory holding the snapshots")
@click.option("--socket", "socket_path", required=True, type=click.Path(dir_okay=False),
              help="unix socket to serve containerd's Snapshots API on")
@shared_cli.global_options
def lazy_serve(root: str, socket_path: str) -> None:
    """Run ctk's snapshotter daemon (containerd proxy plugin) until SIGTERM.

    Register it in containerd's config.toml, then use it with `--snapshotter ctk-lazy`:

    \b
      [proxy_plugins.ctk-lazy]
        type = "snapshot"
        address = "SOCKET"
    """
    from .options import LazyServeOptions
    from .snapshotter import daemon

    daemon.lazy_serve(None, shared_cli.options(), LazyServeOptions(root, socket_path))


def main() -> None:
    shared_cli.main(cli, "ctk-pull")
