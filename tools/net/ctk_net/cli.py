"""The ctk-net command line: CNI networks (ls, inspect, create, rm, prune) and the OCI hook runc runs.

Each command reads its flags into its options (``options.py``), calls its function in ``ops`` and prints the
result (docs/CONVENTIONS.md §7).

Results go to stdout (a table on a terminal, JSON lines otherwise; ``inspect`` prints a JSON array like
``docker network inspect``); warnings and errors go to stderr. pyroute2 and grpc are imported only by the
commands that need them.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import ctk_shared  # noqa: F401 -- before click: importing it sets up the stdlib stand-ins (see its __init__)

# isort: split
import click
from ctk_shared import cli as shared_cli
from ctk_shared import output
from ctk_shared.errors import CtkError, raise_failures

if TYPE_CHECKING:
    from .store import NetworkStore

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=shared_cli.CtkGroup, context_settings=CONTEXT, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """CNI networks for containerd containers.

    Networks are CNI conflists in --cni-netconfpath (NETCONFPATH, default /etc/cni/net.d); ctk writes
    ctk-NAME.conflist. The default network `bridge` is written on first use.
    """


def _store() -> NetworkStore:
    from .store import NetworkStore

    return NetworkStore(shared_cli.options())


@cli.command("ls", context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="only network IDs")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Name}}'")
@click.option("--no-trunc", is_flag=True, help="full network IDs")
@shared_cli.global_options
def ls(quiet: bool, fmt: str | None, no_trunc: bool) -> None:
    """List networks (ctk's and every other conflist in the directory)."""
    from . import ops
    from .options import LsOptions

    opts = LsOptions(quiet=quiet, fmt=fmt, no_trunc=no_trunc)
    result = ops.ls(_store(), shared_cli.options(), opts)
    output.emit_records(result.records, ops.LS_COLUMNS, fmt, quiet_field="ShortID", quiet=quiet,
                        fields=ops.LS_FIELDS)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="NAME|ID...")
@click.option("--mode", type=click.Choice(["dockercompat", "native"]), default="dockercompat", show_default=True,
              help="Docker's shape, or the raw conflist with ctk's fields")
@click.option("-f", "--format", "fmt", help="json (the default: a JSON array), or a template like '{{.Name}}'")
@shared_cli.global_options
def inspect(refs: tuple[str, ...], mode: str, fmt: str | None) -> None:
    """Show networks as a JSON array (Docker-compatible by default)."""
    from . import ops
    from .options import InspectOptions

    result = ops.inspect(_store(), shared_cli.options(), InspectOptions(refs=refs, mode=mode, fmt=fmt))
    if result.docs:
        output.emit_inspect(result.docs, fmt)
    raise_failures(result.failures)


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("-d", "--driver", type=click.Choice(["bridge", "macvlan", "ipvlan"]), default="bridge",
              show_default=True, help="CNI main plugin of the network")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="driver options: mtu, ip-masq (bridge); parent, mode (macvlan, ipvlan)")
@click.option("--subnet", help="CIDR, e.g. 10.5.0.0/24 (default: the next free /24 from 10.4.1.0/24)")
@click.option("--gateway", help="default: the subnet's first address")
@click.option("--ip-range", help="allocate container IPs from this sub-range of the subnet")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="metadata on the network (repeatable)")
@click.option("--internal", is_flag=True, help="no gateway, no masquerading, no published ports")
@click.option("--ipam-driver", type=click.Choice(["default", "host-local"]), default="default", hidden=True)
@shared_cli.global_options
def create(**kw: Any) -> None:
    """Create a network and print its ID."""
    from . import ops
    from .options import CreateOptions

    output.emit_line(ops.create(_store(), shared_cli.options(), CreateOptions(**kw)).network_id)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="NAME|ID...")
@shared_cli.global_options
def rm(refs: tuple[str, ...]) -> None:
    """Remove networks no container uses (pre-defined and other tools' networks are refused)."""
    from . import ops
    from .options import RmOptions

    result = ops.rm(_store(), shared_cli.options(), RmOptions(refs=refs))
    for name in result.names:
        output.emit_line(name)
    raise_failures(result.failures)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@shared_cli.global_options
def prune(force: bool) -> None:
    """Remove every ctk network no container uses (the default network stays)."""
    from . import ops
    from .options import PruneOptions

    if not shared_cli.confirm_prune("This will remove all ctk networks not used by at least one container.", force):
        return
    result = ops.prune(_store(), shared_cli.options(), PruneOptions(force=force))
    for name in result.names:
        output.emit_line(name)
    raise_failures(result.failures)


@cli.command(hidden=True, context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@shared_cli.global_options
def ensure(names: tuple[str, ...]) -> int:
    """For ctk-run and ctk-build: resolve networks (writing `bridge` on first use), one JSON line each.

    The callers read stdout as data, failures included: a failure is one line ``{"Error": {"kind",
    "message", "hint"}}`` (:mod:`ctk_shared.error_records`), so the caller keeps the error's class without
    reading this tool's stderr."""
    from ctk_shared.error_records import ERROR_KEY, to_record

    from . import ops
    from .options import EnsureOptions

    try:
        result = ops.ensure(_store(), shared_cli.options(), EnsureOptions(names=names))
    except CtkError as e:  # the options or the store could not be read
        result = ops.Ensured([], e)
    for record in result.records:
        output.emit_json(record)
    if result.error is not None:
        output.emit_json({ERROR_KEY: to_record(result.error)})
        return int(result.error.exit_code)
    return 0


@cli.command(hidden=True, context_settings=CONTEXT)
@click.argument("phase")
@shared_cli.global_options
def hook(phase: str) -> None:
    """The OCI hook (createRuntime / postStop); runc passes the container state on stdin."""
    from .hook import main as hook_main
    from .options import HookOptions

    opts = HookOptions(phase=phase)
    sys.exit(hook_main(shared_cli.options(), opts.phase))


def main() -> None:
    shared_cli.main(cli, "ctk-net")
