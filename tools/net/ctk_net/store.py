"""The conflist directory (``--cni-netconfpath``) as a store of networks.

Reads take every ``.conf``/``.conflist``/``.json`` file, other tools' included; a file that cannot be read
is skipped with a warning on stderr, never fatal. Writes (create, the default network's first use,
remove) happen under an flock on ``.ctk-net.lock`` in the same directory, so concurrent ``ctk-net`` and
hook processes never allocate one subnet twice or write the default network twice; a conflist is written
to a temporary name and renamed into place, so readers never see half a file.
"""
from __future__ import annotations

import builtins
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as L
from ctk_shared.errors import AlreadyExists, Conflict, CtkError, InvalidArgument, NotFound, UsageError
from ctk_shared.outputs import open_owned, write_owned

from . import netconf, subnets
from .netconf import DEFAULT_NETWORK, PREDEFINED, Network, NetworkSpec

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

LOCK_FILE = ".ctk-net.lock"
RESERVED_LABEL_PREFIX = "ctk/"


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"ctk-net: warning: {message}\n")


class NetworkStore:
    def __init__(self, gopts: GlobalOptions, warn: Callable[[str], None] | None = None) -> None:
        self.gopts = gopts
        self.dir = Path(gopts.cni_netconfpath)
        self.warn = warn or _stderr_warning
        self._warned: set[str] = set()

    # ---------------------------------------------------------------------------------------- reading

    def _files(self) -> builtins.list[Path]:
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CtkError(f"cannot read the CNI config directory {self.dir}: {e.strerror}",
                           hint="point --cni-netconfpath (NETCONFPATH) at a readable directory") from None
        return [self.dir / n for n in names if n.endswith(netconf.EXTENSIONS) and not n.startswith(".")]

    def list(self) -> builtins.list[Network]:
        """Every network in the directory, in file-name order (the order CNI runtimes use)."""
        out = []
        for path in self._files():
            try:
                out.append(Network.load(path))
            except InvalidArgument as e:
                if str(path) not in self._warned:  # one warning per file and command, however often we list
                    self._warned.add(str(path))
                    self.warn(f"skipping {e}")
        return out

    def _managed(self, name: str) -> Network | None:
        """The fast path: ctk's own file for ``name``, read directly (the hook calls this per start)."""
        path = netconf.file_for(str(self.dir), name)
        try:
            net = Network.load(path)
        except InvalidArgument:
            return None
        return net if net.name == name else None

    def get(self, ref: str) -> Network:
        """By name, full ID or unique ID prefix (as ``docker network inspect`` resolves it)."""
        if ref and "/" not in ref:
            found = self._managed(ref)
            if found is not None:
                return found
        nets = self.list() if ref else []
        for net in nets:
            if net.name == ref:
                return net
        by_id = {n.id: n for n in nets if n.id == ref}
        if not by_id and len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            by_id = {}
            for n in nets:
                if n.id.startswith(ref):
                    by_id.setdefault(n.id, n)
        if len(by_id) == 1:
            return next(iter(by_id.values()))
        if len(by_id) > 1:
            names = ", ".join(sorted(n.name for n in by_id.values()))
            raise UsageError(f"network ID prefix {ref!r} is ambiguous: {names}", hint="give more of the ID")
        if ref in ("host", "none"):
            raise NotFound(f"{ref!r} is not a CNI network (it needs no configuration)",
                           hint=f"ctk-run --network {ref} works without one")
        raise NotFound(f"no such network: {ref!r}",
                       hint="ctk-net ls lists the networks; ctk-net create NAME makes one")

    # ---------------------------------------------------------------------------------------- writing

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = open_owned(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CtkError(f"cannot write to the CNI config directory {self.dir}: {e.strerror}",
                           hint="run as root, or point --cni-netconfpath (NETCONFPATH) elsewhere") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, conflist: dict[str, Any]) -> Network:
        path = netconf.file_for(str(self.dir), conflist["name"])
        try:  # whole or not at all, and never through a link planted in the directory
            write_owned(path, (json.dumps(conflist, indent=2) + "\n").encode(), mode=0o644, fsync=True)
        except OSError as e:
            raise CtkError(f"writing {path}: {e.strerror}") from None
        return Network.from_dict(conflist, str(path))

    def ensure(self, name: str) -> Network:
        """:meth:`get`, except that the default network ``bridge`` is written on first use."""
        if name != DEFAULT_NETWORK:
            return self.get(name)
        found = self._managed(name)
        if found is not None:
            return found
        with self.locked():
            found = self._managed(name)
            if found is not None:
                return found
            for net in self.list():  # another tool's file may define `bridge`: use it as it is
                if net.name == name:
                    return net
            return self._create_default()

    def _create_default(self) -> Network:
        subnet, gateway = self.default_subnet()
        spec = NetworkSpec(name=DEFAULT_NETWORK, driver="bridge", subnet=subnet, gateway=gateway,
                           labels={netconf.DEFAULT_LABEL_KEY: netconf.DEFAULT_LABEL_VALUE})
        conflist = netconf.generate(spec, data_root=self.gopts.data_root, bridge_name=self.gopts.bridge_name)
        netconf.check_plugins(conflist, self.gopts.cni_path)
        return self._write(conflist)

    def default_subnet(self) -> tuple[IPv4Network, IPv4Address]:
        """The default network's subnet and gateway from ``bridge_subnet``; like nerdctl's ``--bridge-ip``,
        ``10.4.0.1/24`` means subnet 10.4.0.0/24 with gateway 10.4.0.1."""
        text = self.gopts.bridge_subnet
        try:
            iface = ipaddress.ip_interface(text.strip())
        except ValueError:
            raise UsageError(f"invalid bridge subnet {text!r} (CTK_BRIDGE_SUBNET)",
                             hint="give a CIDR like 10.4.0.0/24") from None
        net, ip = iface.network, iface.ip
        if not isinstance(net, IPv4Network) or not isinstance(ip, IPv4Address) or net.prefixlen > 30:
            raise UsageError(f"invalid bridge subnet {text!r} (CTK_BRIDGE_SUBNET): an IPv4 /30 or larger is needed")
        gateway = ip if ip != net.network_address else subnets.default_gateway(net)
        subnets.check_gateway(net, gateway)
        return net, gateway

    def used_subnets(self, nets: builtins.list[Network], *, host: bool = True,
                     skip_device: str = "") -> builtins.list[subnets.Used]:
        """What a new subnet must not overlap: other conflists, the default subnet, the host (except the
        device the new network will own, which may be left over from a crash)."""
        used = [subnets.Used(n4, f"network {n.name} ({n.file})") for n in nets for n4 in n.ipv4_networks()]
        if not any(n.name == DEFAULT_NETWORK for n in nets):
            used.append(subnets.Used(self.default_subnet()[0],
                                     "the default network bridge (reserved; set by CTK_BRIDGE_SUBNET)"))
        if host:
            used += [u for u in subnets.host_networks() if not (skip_device and u.device == skip_device)]
        return used

    def create(self, name: str, *, driver: str = "bridge", subnet: str | None = None, gateway: str | None = None,
               ip_range: str | None = None, labels: dict[str, str] | None = None, internal: bool = False,
               options: dict[str, str] | None = None) -> Network:
        """Write ``ctk-<name>.conflist``; the subnet is allocated when not given."""
        netconf.check_name(name)
        if name in PREDEFINED:
            raise Conflict(f"{name!r} is a pre-defined network and cannot be created",
                           hint="choose another name")
        if driver not in netconf.DRIVERS:
            raise UsageError(f"unknown network driver {driver!r}", hint="one of " + ", ".join(netconf.DRIVERS))
        for key in labels or {}:
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise UsageError(f"label {key!r}: the {RESERVED_LABEL_PREFIX} prefix is reserved for ctk")
        opts = netconf.normalize_options(driver, dict(options or {}))
        want = subnets.parse_subnet(subnet) if subnet else None
        gw = subnets.parse_address(gateway, "--gateway") if gateway else None
        rng = subnets.parse_subnet(ip_range, "--ip-range") if ip_range else None
        if want is None and (gw is not None or rng is not None):
            raise UsageError("--gateway and --ip-range need --subnet")
        device = netconf.bridge_device(name, self.gopts.bridge_name, opts) if driver == "bridge" else ""
        parent = "" if driver == "bridge" or opts.get("parent") else default_route_interface()
        parent_if = opts.get("parent", "")
        if parent_if and ("/" in parent_if or not os.path.exists(f"/sys/class/net/{parent_if}")):
            # Docker's wording; refused here, or the network exists and every container on it fails to start
            raise UsageError(f"-o parent interface was not found on the host: {opts['parent']}",
                             hint="ip link lists the host's interfaces")
        with self.locked():
            nets = self.list()
            if any(n.name == name for n in nets) or netconf.file_for(str(self.dir), name).exists():
                raise AlreadyExists(f"network with name {name} already exists",
                                    hint=f"ctk-net inspect {name} shows it; ctk-net rm {name} removes it")
            if want is not None:
                # a macvlan/ipvlan network normally shares the parent's LAN: only other conflists are in the way
                subnets.check_free(want, self.used_subnets(nets, host=driver == "bridge", skip_device=device))
            else:
                want = subnets.allocate(self.used_subnets(nets, skip_device=device),
                                        subnets.auto_start(self.default_subnet()[0]))
            gw = gw or subnets.default_gateway(want)
            subnets.check_gateway(want, gw)
            if rng is not None:
                subnets.check_ip_range(want, rng)
            spec = NetworkSpec(name=name, driver=driver, subnet=want, gateway=gw, ip_range=rng,
                               labels=dict(labels or {}), internal=internal, options=opts)
            conflist = netconf.generate(spec, data_root=self.gopts.data_root, bridge_name=device, parent=parent)
            netconf.check_plugins(conflist, self.gopts.cni_path)
            return self._write(conflist)

    # --------------------------------------------------------------------------------------- removing

    def users(self, names: builtins.list[str]) -> dict[str, builtins.list[str]]:
        """Containers (``namespace/name-or-id``) in any containerd namespace whose ``ctk/networks`` label
        lists one of ``names``."""
        from ctk_shared import connect

        wanted: set[str] = set(names)
        out: dict[str, builtins.list[str]] = {n: [] for n in names}
        client = connect.containerd(self.gopts)
        try:
            for ns in client.namespaces.list():
                for c in client.with_namespace(ns).containers.list():
                    raw = c.labels.get(L.NETWORKS)
                    if not raw:
                        continue
                    try:
                        joined = json.loads(raw)
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(joined, list):
                        continue
                    who = c.labels.get("ctk/name") or c.id[:12]
                    for n in wanted.intersection(x for x in joined if isinstance(x, str)):
                        out[n].append(f"{ns}/{who}")
        finally:
            client.close()
        return out

    def check_removable(self, net: Network) -> None:
        if net.name in PREDEFINED:
            raise Conflict(f"{net.name!r} is a pre-defined network and cannot be removed")
        if not net.managed:
            raise Conflict(f"network {net.name} was not created by ctk ({net.file})",
                           hint="it belongs to another tool: remove its file yourself if you are sure")

    def remove(self, ref: str, *, users: dict[str, builtins.list[str]] | None = None) -> Network:
        """Remove a ctk network nobody uses: its conflist, its bridge device, its IPAM state. ``users`` is a
        precomputed :meth:`users` answer (prune asks containerd once for all networks)."""
        net = self.get(ref)
        self.check_removable(net)
        with self.locked():
            using = (users if users is not None and net.name in users else self.users([net.name]))[net.name]
            if using:
                shown = ", ".join(using[:5]) + (f" and {len(using) - 5} more" if len(using) > 5 else "")
                raise Conflict(f"network {net.name} is in use by container(s) {shown}",
                               hint="remove those containers first (ctk-run rm -f …)")
            try:
                os.unlink(net.file)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise CtkError(f"removing {net.file}: {e.strerror}") from None
            rest = self.list()
            self._cleanup(net, rest)
        return net

    def _cleanup(self, net: Network, rest: builtins.list[Network]) -> None:
        dev = net.bridge
        if dev and not any(n.bridge == dev for n in rest):
            try:
                if delete_bridge(dev) is not None:
                    delete_isolation_rules(dev)
            except CtkError as e:
                self.warn(str(e))
        data_dir = net.ipam.get("dataDir") or str(Path(self.gopts.data_root) / "cni" / "ipam")
        if net.ipam.get("type") == "host-local" and not any(n.name == net.name for n in rest):
            shutil.rmtree(Path(str(data_dir)) / net.name, ignore_errors=True)


def default_route_interface() -> str:
    """The interface of the host's IPv4 default route ('' when there is none)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for r in ipr.get_default_routes(family=2):
            oif = r.get_attr("RTA_OIF")
            if oif is not None:
                links = ipr.get_links(oif)
                if links:
                    return str(links[0].get_attr("IFLA_IFNAME"))
    return ""


def delete_bridge(dev: str) -> bool | None:
    """Delete the bridge device ``dev`` if it is a bridge with no ports left: True when deleted, False when
    there was no such device, None when ``dev`` is something else (not ours to touch)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=dev)
        if not idx:
            return False
        link = ipr.get_links(idx[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind != "bridge":
            return None
        if any(lk.get_attr("IFLA_MASTER") == idx[0] for lk in ipr.get_links()):
            raise CtkError(f"bridge {dev} still has interfaces attached; left in place")
        try:
            ipr.link("del", index=idx[0])
        except NetlinkError as e:
            if e.code != 19:  # ENODEV: someone else deleted it
                raise CtkError(f"deleting bridge {dev}: {e}") from None
    return True


ISOLATION_CHAINS = {"CNI-ISOLATION-STAGE-1": "-i", "CNI-ISOLATION-STAGE-2": "-o"}


def isolation_rules(save_output: str, dev: str) -> list[list[str]]:
    """The rules the firewall plugin's ``ingressPolicy: same-bridge`` added for bridge ``dev``, as
    ``iptables -D`` argument lists, found in ``iptables-save -t filter`` output. The plugin adds them on the
    first ADD on a bridge and never removes them (DEL leaves them for the bridge's other containers)."""
    out = []
    for line in save_output.splitlines():
        if not line.startswith("-A CNI-ISOLATION-STAGE-"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        flag = ISOLATION_CHAINS.get(words[1])
        if flag is None:
            continue
        if any(w == flag and i + 1 < len(words) and words[i + 1] == dev and (i == 0 or words[i - 1] != "!")
               for i, w in enumerate(words)):
            out.append(["-D", *words[1:]])
    return out


def delete_isolation_rules(dev: str) -> int:
    """Remove the firewall plugin's isolation rules for a bridge that is gone; returns how many."""
    removed = 0
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if shutil.which(save) is None or shutil.which(tool) is None:
            continue
        p = subprocess.run([save, "-t", "filter"], capture_output=True, text=True, check=False)
        if p.returncode != 0:
            continue
        for rule in isolation_rules(p.stdout, dev):
            d = subprocess.run([tool, "-w", "5", "-t", "filter", *rule], capture_output=True, text=True, check=False)
            if d.returncode == 0:
                removed += 1
    return removed
