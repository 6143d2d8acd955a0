"""ctk-run's side of networking: which networks a container joins, with which aliases, and its --add-host
entries.

ctk-run never imports ctk-net: it runs the ``ctk-net`` executable (``ensure`` at create, ``hook`` through runc
at every task start and stop) and reads the state file the hook leaves in the container's directory
(``ctk_shared.labels.NETWORK_STATE_FILE``). How a task is attached (the hooks, their annotations, the /etc
files) is shared with ctk-build's RUN steps and lives in :mod:`ctk_shared.nethooks`.

``--network container:NAME|ID`` joins another container's network namespace, as Docker does: the joined
container gets no interface, address, port, hosts or resolv.conf of its own, but the target's.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctk_shared import labels as SL
from ctk_shared.errors import UsageError

NO_NETWORK = ("none", "host")
DEFAULT_NETWORK = "bridge"
CONTAINER_PREFIX = "container:"

# Docker's own words for the flags a shared network namespace cannot take (moby runconfig/errors.go)
CONFLICT_DNS = "conflicting options: dns and the network mode"
CONFLICT_HOSTNAME = "conflicting options: hostname and the network mode"
CONFLICT_HOSTS = "conflicting options: custom host-to-IP mapping and the network mode"
CONFLICT_PUBLISH = "conflicting options: port publishing and the container type network mode"
CONFLICT_SHARED = "container sharing network namespace with another container or host cannot be connected to " \
    "any other network"
ALIAS_NOT_USER_DEFINED = "network-scoped alias is supported only for containers in user defined networks"
IP_NOT_USER_DEFINED = "user specified IP address is supported on user defined networks only"


@dataclass(frozen=True)
class NetOptions:
    """The network flags of ``run``: ``networks`` is ("none",), ("host",), ("container:REF",) or network
    names; ``aliases`` and ``ips`` are per network name (``--network-alias`` goes to the first network)."""

    networks: tuple[str, ...] = (DEFAULT_NETWORK,)
    publish: tuple[dict[str, Any], ...] = ()  # parsed -p mappings
    publish_all: bool = False
    ip: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    add_hosts: tuple[str, ...] = ()
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """"none", "host", "container" or "cni"."""
        first = self.networks[0]
        if first.startswith(CONTAINER_PREFIX):
            return "container"
        return first if first in NO_NETWORK else "cni"

    @property
    def container(self) -> str:
        """The NAME|ID of ``--network container:…`` ('' in every other mode)."""
        return self.networks[0][len(CONTAINER_PREFIX):] if self.mode == "container" else ""

    def endpoints(self, resolved: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """What the hook needs per network beyond its name (``ctk_shared.labels.ANN_ENDPOINTS``), keyed by
        the ``resolved`` names (ctk-net's answer, in the same order: the user may have given an ID)."""
        out: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(self.networks):
            ep: dict[str, Any] = {}
            if self.aliases.get(name):
                ep["Aliases"] = list(self.aliases[name])
            if self.ips.get(name):
                ep["IPAddress"] = self.ips[name]
            if ep:
                out[resolved[i] if resolved and i < len(resolved) else name] = ep
        return out


# --------------------------------------------------------------------------------------------- parsing

_LONG_KEYS = ("name", "alias", "ip", "ip6", "driver-opt", "mac-address", "link-local-ip", "gw-priority")


def _check_alias(alias: str) -> str:
    if not alias or len(alias) > 253 or any(c.isspace() or c in "#/\\" for c in alias):
        raise UsageError(f"invalid network alias {alias!r}", hint="an alias is a host name such as db or cache.local")
    return alias


def _check_ip(ip: str, what: str) -> str:
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise UsageError(f"invalid {what} {ip!r}: not an IPv4 address") from None
    return ip


def parse_network_flag(item: str) -> tuple[list[str], tuple[str, ...], str]:
    """One ``--network`` value: the network names it names, and (long form only) its aliases and ip.

    ``NAME``, ``A,B`` (several networks, ctk's short form), ``host``, ``none``, ``container:REF``, or
    Docker's long form ``name=NAME,alias=A,alias=B,ip=IP`` (the ``name=`` may be left out of the first
    field: ``NAME,alias=A``)."""
    if item in NO_NETWORK or item.startswith(CONTAINER_PREFIX):
        if item.startswith(CONTAINER_PREFIX) and not item[len(CONTAINER_PREFIX):]:
            raise UsageError(f"invalid --network {item!r}: container: needs a container name or ID")
        return [item], (), ""
    fields = [f.strip() for f in item.split(",")]
    if not any("=" in f for f in fields):
        return [f for f in fields if f], (), ""
    name, aliases, ip = "", [], ""
    for i, f in enumerate(fields):
        key, sep, value = f.partition("=")
        if not sep and i == 0:
            key, value = "name", f
        elif not sep:
            raise UsageError(f"invalid --network {item!r}: {f!r} is not KEY=VALUE",
                             hint="use name=NET,alias=ALIAS,ip=IP")
        key = key.strip().lower()
        if key not in _LONG_KEYS:
            raise UsageError(f"invalid --network {item!r}: unknown key {key!r}",
                             hint="supported: name, alias, ip")
        if key == "name":
            name = value
        elif key == "alias":
            aliases.append(_check_alias(value))
        elif key == "ip":
            ip = _check_ip(value, f"ip in --network {item!r}")
        else:
            raise UsageError(f"--network {item!r}: {key}= is not supported by ctk", hint="supported: name, alias, ip")
    if not name:
        raise UsageError(f"invalid --network {item!r}: no network name", hint="use name=NET,alias=ALIAS")
    if name in NO_NETWORK or name.startswith(CONTAINER_PREFIX):
        if aliases:
            raise UsageError(ALIAS_NOT_USER_DEFINED)
        if ip:
            raise UsageError(IP_NOT_USER_DEFINED)
    return [name], tuple(aliases), ip


def build_net_options(*, networks: Iterable[str] = (), network_aliases: Iterable[str] = (),
                      publish: tuple[dict[str, Any], ...] = (), publish_all: bool = False, ip: str | None = None,
                      hostname: str | None = None, dns: Iterable[str] = (), dns_search: Iterable[str] = (),
                      dns_options: Iterable[str] = (), add_hosts: Iterable[str] = ()) -> NetOptions:
    """Every network flag of ``run``/``create`` checked together, with Docker's rules and messages."""
    names: list[str] = []
    aliases: dict[str, list[str]] = {}
    ips: dict[str, str] = {}
    for item in networks or (DEFAULT_NETWORK,):
        found, al, one_ip = parse_network_flag(item)
        for n in found:
            if n not in names:
                names.append(n)
        if al:
            aliases.setdefault(found[0], []).extend(a for a in al if a not in aliases.get(found[0], []))
        if one_ip:
            ips[found[0]] = one_ip
    names = names or [DEFAULT_NETWORK]
    special = [n for n in names if n in NO_NETWORK or n.startswith(CONTAINER_PREFIX)]
    if len(names) > 1 and special:
        if any(n.startswith(CONTAINER_PREFIX) or n == "host" for n in special):
            raise UsageError(CONFLICT_SHARED)
        raise UsageError("container cannot be connected to multiple networks with one of the networks in "
                         "private (none) mode")
    first = names[0]
    extra_aliases = [_check_alias(a) for a in network_aliases]
    if extra_aliases:
        aliases.setdefault(first, []).extend(a for a in extra_aliases if a not in aliases.get(first, []))
    if ip:
        ips.setdefault(first, _check_ip(ip, "--ip"))
    on_cni = first not in NO_NETWORK and not first.startswith(CONTAINER_PREFIX)
    if any(aliases.get(n) for n in names if n == DEFAULT_NETWORK or not on_cni):
        raise UsageError(ALIAS_NOT_USER_DEFINED)
    if ips and not on_cni:
        raise UsageError(IP_NOT_USER_DEFINED)
    dns, dns_search, dns_options, add_hosts = tuple(dns), tuple(dns_search), tuple(dns_options), tuple(add_hosts)
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise UsageError(f'invalid argument "{server}" for "--dns" flag: IP address is not correctly '
                             f"formatted: {server}") from None
    if first.startswith(CONTAINER_PREFIX):
        if hostname:
            raise UsageError(CONFLICT_HOSTNAME)
        if dns or dns_search or dns_options:
            raise UsageError(CONFLICT_DNS)
        if add_hosts:
            raise UsageError(CONFLICT_HOSTS)
        if publish or publish_all:
            raise UsageError(CONFLICT_PUBLISH)
    if on_cni:
        from .ports import check_host_support

        check_host_support(publish)  # sctp or IPv6 where the host has none: refused before anything is made
    return NetOptions(networks=tuple(names), publish=publish, publish_all=publish_all,
                      ip=ips.get(first), dns=dns, dns_search=dns_search, dns_options=dns_options,
                      add_hosts=tuple(parse_add_host(h) for h in add_hosts),
                      aliases={k: tuple(v) for k, v in aliases.items() if v}, ips=ips)


# ---------------------------------------------------------------------------------------------- /etc files


def parse_add_host(entry: str) -> str:
    host, sep, ip = entry.partition(":")
    if not sep or not host or not ip:
        raise UsageError(f"invalid --add-host {entry!r}", hint="use HOST:IP or HOST:host-gateway")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"invalid IP address {ip!r} in --add-host {entry!r}") from None
    return entry


# ------------------------------------------------------------------------------------------------- state


def read_state(state_dir: Path) -> dict[str, Any]:
    """What the hook recorded for the running task (empty when not attached)."""
    try:
        doc = json.loads((state_dir / SL.NETWORK_STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------------------ --network container:REF


@dataclass(frozen=True)
class JoinTarget:
    """The container whose network namespace a ``--network container:`` container joins."""

    id: str
    name: str
    mode: str  # the target's own mode: "cni" (joined through ctk-net's pinned namespace) or "host"
    hostname: str
    etc_dir: Path | None  # the target's directory with its hosts, resolv.conf and hostname (None: host mode)

    @property
    def network_label(self) -> str:
        """``HostConfig.NetworkMode`` as Docker shows it: ``container:<full id>``."""
        return CONTAINER_PREFIX + self.id


def _mode_of(c: Any) -> str:
    """A container's network mode from its ``ctk/network`` label ("cni" for named networks)."""
    from . import labels as L

    value = str(c.labels.get(L.NETWORK, ""))
    if value.startswith(CONTAINER_PREFIX):
        return "container"
    if value in NO_NETWORK:
        return value
    return "cni" if SL.NETWORKS in c.labels else "none"


def join_target(client: Any, data_root: str, ref: str, self_id: str = "") -> JoinTarget:
    """The container ``ref`` names, followed through its own ``container:`` mode (as Docker: a chain joins
    the namespace at its end). NotFound for no such container; a ``--network none`` target is refused (its
    namespace is not pinned by ctk-net, so nothing could join it across restarts)."""
    from ctk_shared.errors import Conflict

    from . import labels as L
    from . import state
    from .lookup import display_name, find_container

    c = find_container(client, ref)
    for _ in range(10):
        if c.id == self_id:
            raise Conflict("cannot join own network")
        if _mode_of(c) != "container":
            break
        c = find_container(client, c.labels[L.NETWORK][len(CONTAINER_PREFIX):])
    mode = _mode_of(c)
    if mode == "container":
        raise Conflict(f"--network container:{ref}: too many containers joined in a chain")
    if mode == "none":
        raise Conflict(f"cannot join the network of container {display_name(c)}: it has no network of ctk's "
                       "(--network none, or made by another tool)",
                       hint="join a container that runs on a bridge or user network, or --network host")
    etc = state.container_dir(data_root, client.namespace, c.id) if mode == "cni" else None
    return JoinTarget(id=c.id, name=display_name(c), mode=mode, hostname=c.labels.get(L.HOSTNAME, ""),
                      etc_dir=etc)


def joined_target_id(c: Any) -> str:
    """The ID of the container whose network ``c`` joins ('' unless ``c`` runs with ``container:``)."""
    from . import labels as L

    value = c.labels.get(L.NETWORK, "")
    return value[len(CONTAINER_PREFIX):] if value.startswith(CONTAINER_PREFIX) else ""


def check_joinable(client: Any, gopts: Any, c: Any) -> None:
    """Before a ``container:`` container starts: its target must exist and be running (Docker's Conflict);
    runc would otherwise fail on a namespace path that is gone, with a message naming no container."""
    from ctk_shared.errors import Conflict, NotFound
    from ctk_shared.nethooks import pinned_netns

    target_id = joined_target_id(c)
    if not target_id:
        return
    try:
        target = client.containers.get(target_id)
    except NotFound:
        raise NotFound(f"cannot join network of container {target_id[:12]}: it no longer exists",
                       hint="remove this container and run it again with another --network") from None
    from .lookup import display_name

    try:
        task = client.tasks.get(target_id)
    except NotFound:
        task = None
    running = task is not None and task.status in ("running", "paused", "pausing")
    if running and _mode_of(target) == "cni":
        running = pinned_netns(gopts.data_root, client.namespace, target_id).exists()
    if not running:
        raise Conflict(f"cannot join network of a non running container: {display_name(target)}",
                       hint=f"start it first (ctk-run start {display_name(target)})")


def joined_by(client: Any, c: Any) -> list[Any]:
    """The containers that join ``c``'s network namespace (``--network container:`` it)."""
    from . import labels as L

    found: list[Any] = client.containers.list([f'labels."{L.NETWORK}"=="{CONTAINER_PREFIX}{c.id}"'])
    return found


def check_removable(client: Any, c: Any, force: bool) -> None:
    """``rm`` of a container whose network namespace a running container shares is refused without ``-f``
    (its network would vanish under the other one); with ``-f`` it goes, as in Docker, and the joined
    container keeps only its loopback."""
    if force:
        return
    from ctk_shared.errors import Conflict

    from .lookup import display_name

    users = []
    for other in joined_by(client, c):
        try:
            task = client.tasks.get(other.id)
        except Exception:  # noqa: BLE001 - no task (NotFound) or an unreadable one: not running
            continue
        if task.status in ("running", "paused", "pausing"):
            users.append(display_name(other))
    if users:
        raise Conflict(f"cannot remove container {display_name(c)}: its network namespace is shared by running "
                       f"container(s) {', '.join(users[:5])}",
                       hint="stop or remove those first, or force the removal with -f")


# ------------------------------------------------------------------------------------------------ inspect


def _json(text: str | None, kind: type) -> Any:
    try:
        value = json.loads(text or "null")
    except json.JSONDecodeError:
        return kind()
    return value if isinstance(value, kind) else kind()


def inspect_networks(c: Any, spec: dict[str, Any], attached: dict[str, Any]) -> dict[str, Any]:
    """``NetworkSettings.Networks``: every network the container is configured for (also while stopped, as
    Docker shows them), with its ``Aliases`` and ``DNSNames``, and the address the hook recorded while the
    container is attached (``attached``: the state file's ``Networks``)."""
    from . import labels as L

    names = [n for n in _json(c.labels.get(SL.NETWORKS), list) if isinstance(n, str)]
    endpoints = _json((spec.get("annotations") or {}).get(SL.ANN_ENDPOINTS), dict)
    out: dict[str, Any] = {}
    for name in names + [n for n in attached if n not in names]:
        found_ep, found_live = endpoints.get(name), attached.get(name)
        ep: dict[str, Any] = found_ep if isinstance(found_ep, dict) else {}
        live: dict[str, Any] = found_live if isinstance(found_live, dict) else {}
        aliases = [a for a in (live.get("Aliases") or ep.get("Aliases") or []) if isinstance(a, str)]
        dns = [n for n in (c.labels.get(SL.ANN_NAME, ""), *aliases, c.labels.get(L.HOSTNAME, "")) if n]
        rec: dict[str, Any] = {"Aliases": aliases or None, "NetworkID": "", "IPAddress": "", "IPPrefixLen": 0,
                               "Gateway": "", "MacAddress": "", "DNSNames": list(dict.fromkeys(dns)) or None}
        if ep.get("IPAddress"):
            rec["IPAMConfig"] = {"IPv4Address": ep["IPAddress"]}
        rec.update({k: v for k, v in live.items() if k not in ("Interface", "Aliases")})
        out[name] = rec
    return out
