"""The ctk-net command line: CNI networks (ls, inspect, create, rm, prune) and the OCI hook runc runs.

Results go to stdout (a table on a terminal, JSON lines otherwise; ``inspect`` prints a JSON array like
``docker network inspect``); warnings and errors go to stderr. pyroute2 and grpc are imported only by the
commands that need them.
"""
from __future__ import annotations

import sys
from typing import Any

import click
from ctk_shared import cli as shared_cli
from ctk_shared import output
from ctk_shared.errors import CtkError, raise_failures

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
LS_COLUMNS = [("NETWORK ID", "ShortID"), ("NAME", "Name"), ("FILE", "File")]
LS_FIELDS = ("ID", "ShortID", "Name", "File", "Driver", "Subnets", "Labels", "Managed")  # the keys of ls' records


@click.group(cls=shared_cli.CtkGroup, context_settings=CONTEXT, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """CNI networks for containerd containers.

    Networks are CNI conflists in --cni-netconfpath (NETCONFPATH, default /etc/cni/net.d); ctk writes
    ctk-NAME.conflist. The default network `bridge` is written on first use.
    """


def _store():  # type: ignore[no-untyped-def]
    from .store import NetworkStore

    return NetworkStore(shared_cli.options())


def _fail_each(names: tuple[str, ...], fn) -> None:  # type: ignore[no-untyped-def]
    """Run ``fn`` per name like ``docker network rm``: go on after a failure; all are reported at the end."""
    failures: list[CtkError] = []
    for name in names:
        try:
            fn(name)
        except CtkError as e:
            failures.append(e)
    raise_failures(failures)


@cli.command("ls", context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="only network IDs")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Name}}'")
@click.option("--no-trunc", is_flag=True, help="full network IDs")
@shared_cli.global_options
def ls(quiet: bool, fmt: str | None, no_trunc: bool) -> None:
    """List networks (ctk's and every other conflist in the directory)."""
    output.parse_format(fmt, LS_FIELDS)  # a bad template is a usage error before any work
    nets = _store().list()
    records: list[dict[str, Any]] = []
    for n in sorted(nets, key=lambda n: (n.name, n.file)):
        records.append({"ID": n.id, "ShortID": n.id if no_trunc else n.id[:12], "Name": n.name, "File": n.file,
                        "Driver": n.driver, "Subnets": n.subnets, "Labels": n.labels, "Managed": n.managed})
    if not quiet:
        # like nerdctl: the two networks that need no configuration are listed too, without ID or file
        records += [{"ID": "", "ShortID": "", "Name": name, "File": "", "Driver": name if name == "host" else "null",
                     "Subnets": [], "Labels": {}, "Managed": False} for name in ("host", "none")]
    output.emit_records(records, LS_COLUMNS, fmt, quiet_field="ShortID", quiet=quiet, fields=LS_FIELDS)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="NAME|ID...")
@click.option("--mode", type=click.Choice(["dockercompat", "native"]), default="dockercompat", show_default=True,
              help="Docker's shape, or the raw conflist with ctk's fields")
@click.option("-f", "--format", "fmt", help="json (the default: a JSON array), or a template like '{{.Name}}'")
@shared_cli.global_options
def inspect(refs: tuple[str, ...], mode: str, fmt: str | None) -> None:
    """Show networks as a JSON array (Docker-compatible by default)."""
    from . import netconf

    output.parse_format(fmt)  # a syntax error before any work
    store = _store()
    docs: list[dict[str, Any]] = []
    missing: list[CtkError] = []
    for ref in refs:
        try:
            net = store.ensure(ref) if ref == netconf.DEFAULT_NETWORK else store.get(ref)
        except CtkError as e:
            missing.append(e)
            continue
        if mode == "native":
            docs.append(netconf.native(net))
        else:
            docs.append(netconf.dockercompat(net, _attached(net)))
    if docs:
        output.emit_inspect(docs, fmt)
    raise_failures(missing)


def _attached(net) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Running containers attached to ``net``, from the hook's endpoint registry (best effort)."""
    try:
        from .endpoints import Endpoints

        records = Endpoints(shared_cli.options().data_root).all()
    except Exception:  # noqa: BLE001 - the registry is an optional extra for inspect
        return {}
    out: dict[str, Any] = {}
    for ep in records:
        att = (ep.get("networks") or {}).get(net.name)
        if not isinstance(att, dict):
            continue
        out[str(ep.get("id", ""))] = {"Name": ep.get("name", ""), "MacAddress": att.get("mac", ""),
                                      "IPv4Address": att.get("address", ""), "IPv6Address": ""}
    return out


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
def create(name: str, driver: str, opts: tuple[str, ...], subnet: str | None, gateway: str | None,
           ip_range: str | None, labels: tuple[str, ...], internal: bool, ipam_driver: str) -> None:
    """Create a network and print its ID."""
    net = _store().create(name, driver=driver, subnet=subnet, gateway=gateway, ip_range=ip_range,
                          labels=shared_cli.key_values(labels), internal=internal,
                          options=shared_cli.key_values(opts, "-o"))
    output.emit_line(net.id)


@cli.command(context_settings=CONTEXT)
@click.argument("refs", nargs=-1, required=True, metavar="NAME|ID...")
@shared_cli.global_options
def rm(refs: tuple[str, ...]) -> None:
    """Remove networks no container uses (pre-defined and other tools' networks are refused)."""
    store = _store()

    def one(ref: str) -> None:
        output.emit_line(store.remove(ref).name)

    _fail_each(refs, one)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@shared_cli.global_options
def prune(force: bool) -> None:
    """Remove every ctk network no container uses (the default network stays)."""
    from . import netconf

    if not shared_cli.confirm_prune("This will remove all ctk networks not used by at least one container.", force):
        return
    store = _store()
    candidates = [n for n in store.list()
                  if n.managed and n.name not in netconf.PREDEFINED and not n.is_default]
    if not candidates:
        return
    users = store.users([n.name for n in candidates])
    failures: list[CtkError] = []
    for net in candidates:
        if users.get(net.name):
            continue
        try:
            store.remove(net.name, users=users)
        except CtkError as e:
            failures.append(e)
            continue
        output.emit_line(net.name)
    raise_failures(failures)


@cli.command(hidden=True, context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@shared_cli.global_options
def ensure(names: tuple[str, ...]) -> int:
    """For ctk-run and ctk-build: resolve networks (writing `bridge` on first use), one JSON line each.

    The callers read stdout as data, failures included: a failure is one line ``{"Error": {"kind",
    "message", "hint"}}`` (:mod:`ctk_shared.error_records`), so the caller keeps the error's class without
    reading this tool's stderr."""
    from ctk_shared.error_records import ERROR_KEY, to_record

    try:
        store = _store()
        for name in names:
            net = store.ensure(name)
            output.emit_json({"Name": net.name, "ID": net.id, "File": net.file, "Subnets": net.subnets,
                              "Gateway": net.gateway})
    except CtkError as e:
        output.emit_json({ERROR_KEY: to_record(e)})
        return int(e.exit_code)
    return 0


@cli.command(hidden=True, context_settings=CONTEXT)
@click.argument("phase")
@shared_cli.global_options
def hook(phase: str) -> None:
    """The OCI hook (createRuntime / postStop); runc passes the container state on stdin."""
    from .hook import main as hook_main

    sys.exit(hook_main(shared_cli.options(), phase))


def main() -> None:
    sys.exit(shared_cli.run(cli, "ctk-net"))
