"""What ctk-net's commands do, between parsed flags and the CNI conflists: one function per command,
``(store, gopts, opts) -> Result``. Nothing here prints or exits: ``cli.py`` prints the result, and a failure
is an exception (several targets: the result's ``failures``, which the cli raises after printing the rest)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared.errors import CtkError
from ctk_shared.keyvalues import key_values

from . import netconf

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

    from .netconf import Network
    from .options import CreateOptions, EnsureOptions, InspectOptions, LsOptions, PruneOptions, RmOptions
    from .store import NetworkStore

LS_COLUMNS = [("NETWORK ID", "ShortID"), ("NAME", "Name"), ("FILE", "File")]
LS_FIELDS = ("ID", "ShortID", "Name", "File", "Driver", "Subnets", "Labels", "Managed")  # the keys of ls' records


@dataclass(frozen=True)
class Records:
    """Result of ``ls``: one record per network, in the order to print."""

    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Documents:
    """Result of ``inspect``: the documents found, and a failure per ref that was not."""

    docs: list[dict[str, Any]]
    failures: list[CtkError] = field(default_factory=list)


@dataclass(frozen=True)
class Created:
    """Result of ``create``: the new network's ID, which the cli prints."""

    network_id: str


@dataclass(frozen=True)
class Removed:
    """Result of ``rm`` and ``prune``: the names removed, and a failure per network that was not."""

    names: list[str]
    failures: list[CtkError] = field(default_factory=list)


@dataclass(frozen=True)
class Ensured:
    """Result of ``ensure``: a record per network resolved, up to the first failure (then ``error``)."""

    records: list[dict[str, Any]]
    error: CtkError | None = None


def ls(store: NetworkStore, gopts: GlobalOptions, opts: LsOptions) -> Records:
    """ctk's networks and every other conflist of the directory, plus host and none (as nerdctl lists them)."""
    output.parse_format(opts.fmt, LS_FIELDS)  # a bad template is a usage error before any work
    records: list[dict[str, Any]] = []
    for n in sorted(store.list(), key=lambda n: (n.name, n.file)):
        records.append({"ID": n.id, "ShortID": n.id if opts.no_trunc else n.id[:12], "Name": n.name,
                        "File": n.file, "Driver": n.driver, "Subnets": n.subnets, "Labels": n.labels,
                        "Managed": n.managed})
    if not opts.quiet:
        # like nerdctl: the two networks that need no configuration are listed too, without ID or file
        records += [{"ID": "", "ShortID": "", "Name": name, "File": "", "Driver": name if name == "host" else "null",
                     "Subnets": [], "Labels": {}, "Managed": False} for name in ("host", "none")]
    return Records(records)


def inspect(store: NetworkStore, gopts: GlobalOptions, opts: InspectOptions) -> Documents:
    output.parse_format(opts.fmt)  # a syntax error before any work
    docs: list[dict[str, Any]] = []
    missing: list[CtkError] = []
    for ref in opts.refs:
        try:
            net = store.ensure(ref) if ref == netconf.DEFAULT_NETWORK else store.get(ref)
        except CtkError as e:
            missing.append(e)
            continue
        if opts.mode == "native":
            docs.append(netconf.native(net))
        else:
            docs.append(netconf.dockercompat(net, _attached(gopts, net)))
    return Documents(docs, missing)


def _attached(gopts: GlobalOptions, net: Network) -> dict[str, Any]:
    """Running containers attached to ``net``, from the hook's endpoint registry (best effort)."""
    try:
        from .endpoints import Endpoints

        records = Endpoints(gopts.data_root).all()
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


def create(store: NetworkStore, gopts: GlobalOptions, opts: CreateOptions) -> Created:
    net = store.create(opts.name, driver=opts.driver, subnet=opts.subnet, gateway=opts.gateway,
                       ip_range=opts.ip_range, labels=key_values(opts.labels),
                       internal=opts.internal, options=key_values(opts.opts, "-o"))
    return Created(net.id)


def rm(store: NetworkStore, gopts: GlobalOptions, opts: RmOptions) -> Removed:
    """Like ``docker network rm``: go on after a failure; every failure is in the result."""
    removed: list[str] = []
    failures: list[CtkError] = []
    for ref in opts.refs:
        try:
            removed.append(store.remove(ref).name)
        except CtkError as e:
            failures.append(e)
    return Removed(removed, failures)


def prune(store: NetworkStore, gopts: GlobalOptions, opts: PruneOptions) -> Removed:
    """Every ctk network no container uses, but the pre-defined ones and the default."""
    candidates = [n for n in store.list() if n.managed and n.name not in netconf.PREDEFINED and not n.is_default]
    if not candidates:
        return Removed([])
    users = store.users([n.name for n in candidates])
    removed: list[str] = []
    failures: list[CtkError] = []
    for net in candidates:
        if users.get(net.name):
            continue
        try:
            store.remove(net.name, users=users)
        except CtkError as e:
            failures.append(e)
            continue
        removed.append(net.name)
    return Removed(removed, failures)


def ensure(store: NetworkStore, gopts: GlobalOptions, opts: EnsureOptions) -> Ensured:
    """For ctk-run and ctk-build: each network resolved (``bridge`` written on first use)."""
    records: list[dict[str, Any]] = []
    for name in opts.names:
        try:
            net = store.ensure(name)
        except CtkError as e:
            return Ensured(records, e)
        records.append({"Name": net.name, "ID": net.id, "File": net.file, "Subnets": net.subnets,
                        "Gateway": net.gateway})
    return Ensured(records)
