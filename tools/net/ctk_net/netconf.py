"""Networks as CNI config files: the model read from any conflist, and the conflists ctk writes.

ctk writes ``ctk-<name>.conflist`` with nerdctl's layout: ``cniVersion``, ``name``, ``ctkID`` (the SHA-256
of the name), ``ctkLabels`` and the plugin chain bridge → portmap → firewall → tuning (one macvlan/ipvlan
plugin for those drivers), IPAM by host-local. Files other CNI users wrote (``.conf`` with a single plugin,
``.conflist``, ``.json``) are read with the same model, so ``ls`` and ``inspect`` show them too.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from ctk_shared.errors import InvalidArgument, NotFound, UsageError
from ctk_shared.labels import conflist_name

from . import subnets

CNI_VERSION = "1.0.0"
EXTENSIONS = (".conf", ".conflist", ".json")
DEFAULT_NETWORK = "bridge"
DEFAULT_LABEL = "ctk/default-network=true"
DEFAULT_LABEL_KEY, DEFAULT_LABEL_VALUE = DEFAULT_LABEL.split("=")
PREDEFINED = ("bridge", "host", "none")  # Docker's networks that cannot be removed
DRIVERS = ("bridge", "macvlan", "ipvlan")
ID_KEY, LABELS_KEY = "ctkID", "ctkLabels"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_INSTALL_HINT = "apt-get install containernetworking-plugins, or point --cni-path (CNI_PATH) at the plugins"


def network_id(name: str) -> str:
    """The network ID: SHA-256 hex of the name (stable across hosts, like nerdctl's)."""
    import hashlib  # here: OpenSSL's load costs each hook ~3 ms, and a hook reads the ID from the conflist

    return hashlib.sha256(name.encode()).hexdigest()


def check_name(name: str) -> None:
    if not _NAME.match(name) or len(name) > 200:
        raise UsageError(f"invalid network name {name!r}",
                         hint="use letters, digits, '_', '.' and '-', starting with a letter or digit")


def file_for(netconfpath: str, name: str) -> Path:
    return Path(netconfpath) / conflist_name(name)


@dataclass(frozen=True)
class Network:
    """One CNI network as found on disk; ``conflist`` is the parsed file, unchanged."""

    name: str
    id: str
    file: str
    conflist: dict[str, Any] = field(compare=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    managed: bool = False

    @classmethod
    def from_dict(cls, doc: Any, file: str) -> Network:
        """The model of a parsed config file; InvalidArgument when it is no CNI config at all."""
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{file}: not a JSON object")
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{file}: no network name")
        if "plugins" in doc and not isinstance(doc["plugins"], list):
            raise InvalidArgument(f"{file}: 'plugins' is not a list")
        if "plugins" not in doc and not isinstance(doc.get("type"), str):
            raise InvalidArgument(f"{file}: neither a plugin list nor a plugin type")
        raw_id = doc.get(ID_KEY, doc.get("nerdctlID"))  # nerdctl's files carry the same two fields
        raw_labels = doc.get(LABELS_KEY, doc.get("nerdctlLabels"))
        labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, dict) else {}
        managed = ID_KEY in doc and os.path.basename(file) == conflist_name(name)
        return cls(name=name, id=raw_id if isinstance(raw_id, str) and raw_id else network_id(name),
                   file=str(file), conflist=doc, labels=labels, managed=managed)

    @classmethod
    def load(cls, path: str | Path) -> Network:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InvalidArgument(f"{path}: {e.strerror or e}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        return cls.from_dict(doc, str(path))

    # ---------------------------------------------------------------------------------- convenience

    @property
    def plugins(self) -> list[dict[str, Any]]:
        """The plugin configs (a single-plugin ``.conf`` is its own one plugin)."""
        if "plugins" in self.conflist:
            return [p for p in self.conflist["plugins"] if isinstance(p, dict)]
        return [self.conflist]

    @property
    def plugin_types(self) -> list[str]:
        return [str(p.get("type", "")) for p in self.plugins]

    @property
    def main_plugin(self) -> dict[str, Any]:
        """The interface-creating plugin (the first of the chain)."""
        return self.plugins[0] if self.plugins else {}

    @property
    def driver(self) -> str:
        return str(self.main_plugin.get("type", ""))

    @property
    def ipam(self) -> dict[str, Any]:
        ipam = self.main_plugin.get("ipam")
        return ipam if isinstance(ipam, dict) else {}

    @property
    def ranges(self) -> list[dict[str, Any]]:
        """host-local ranges, flattened; the old single-range form (``ipam.subnet``) as one range."""
        ipam = self.ipam
        out: list[dict[str, Any]] = []
        for rset in ipam.get("ranges") or []:
            if isinstance(rset, list):
                out.extend(r for r in rset if isinstance(r, dict) and r.get("subnet"))
            elif isinstance(rset, dict) and rset.get("subnet"):
                out.append(rset)
        if not out and isinstance(ipam.get("subnet"), str):
            out.append({k: ipam[k] for k in ("subnet", "gateway", "rangeStart", "rangeEnd") if k in ipam})
        return out

    @property
    def subnets(self) -> list[str]:
        return [str(r["subnet"]) for r in self.ranges]

    @property
    def gateway(self) -> str | None:
        """The first range's gateway, else its subnet's first host address."""
        rs = self.ranges
        if not rs:
            return None
        if rs[0].get("gateway"):
            return str(rs[0]["gateway"])
        try:
            return str(subnets.default_gateway(IPv4Network(str(rs[0]["subnet"]), strict=False)))
        except ValueError:
            return None

    @property
    def bridge(self) -> str | None:
        for p in self.plugins:
            if p.get("type") == "bridge":
                return str(p.get("bridge") or "cni0")  # the bridge plugin's own default
        return None

    @property
    def internal(self) -> bool:
        p = self.main_plugin
        if p.get("type") == "bridge":
            return not p.get("isGateway", False) and not p.get("ipMasq", False)
        return False

    @property
    def is_default(self) -> bool:
        return self.labels.get(DEFAULT_LABEL_KEY) == DEFAULT_LABEL_VALUE

    def ipv4_networks(self) -> list[IPv4Network]:
        out = []
        for s in self.subnets:
            try:
                out.append(IPv4Network(s, strict=False))
            except ValueError:
                continue  # IPv6 or junk: never in the way of an IPv4 allocation
        return out


# ------------------------------------------------------------------------------------------ generation


@dataclass(frozen=True)
class NetworkSpec:
    """What ``create`` asked for, checked and with defaults filled in (see :func:`build_spec`)."""

    name: str
    driver: str
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    labels: dict[str, str] = field(default_factory=dict)
    internal: bool = False
    options: dict[str, str] = field(default_factory=dict)


BRIDGE_OPTIONS = {"mtu": "mtu", "com.docker.network.driver.mtu": "mtu",
                  "ip-masq": "ip-masq", "com.docker.network.bridge.enable_ip_masquerade": "ip-masq",
                  "com.docker.network.bridge.name": "bridge-name"}
VLAN_OPTIONS = {"parent": "parent", "mtu": "mtu", "com.docker.network.driver.mtu": "mtu", "mode": "mode",
                "macvlan_mode": "mode", "ipvlan_mode": "mode"}
MODES = {"macvlan": ("bridge", "private", "vepa", "passthru"), "ipvlan": ("l2", "l3", "l3s")}


def normalize_options(driver: str, options: dict[str, str]) -> dict[str, str]:
    """Docker/nerdctl ``-o`` keys mapped onto ctk's short names; unknown ones are refused."""
    table = BRIDGE_OPTIONS if driver == "bridge" else VLAN_OPTIONS
    out: dict[str, str] = {}
    for key, value in options.items():
        if key not in table:
            raise UsageError(f"unsupported option {key!r} for driver {driver}",
                             hint="supported: " + ", ".join(sorted(table)))
        out[table[key]] = value
    if "mtu" in out and not (out["mtu"].isdigit() and 68 <= int(out["mtu"]) <= 65535):
        raise UsageError(f"invalid mtu {out['mtu']!r}")
    if "ip-masq" in out and out["ip-masq"].lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"invalid ip-masq {out['ip-masq']!r} (true or false)")
    if "mode" in out and out["mode"] not in MODES[driver]:
        raise UsageError(f"invalid {driver} mode {out['mode']!r}", hint="one of " + ", ".join(MODES[driver]))
    if "bridge-name" in out and not re.match(r"^[A-Za-z0-9_.-]{1,15}$", out["bridge-name"]):
        raise UsageError(f"invalid bridge name {out['bridge-name']!r} (at most 15 characters)")
    return out


def _ipam(spec: NetworkSpec, data_root: str) -> dict[str, Any]:
    rng: dict[str, Any] = {"subnet": str(spec.subnet), "gateway": str(spec.gateway)}
    if spec.ip_range is not None:
        start, end = subnets.range_bounds(spec.subnet, spec.ip_range)
        rng.update({"rangeStart": str(start), "rangeEnd": str(end), "ipRange": str(spec.ip_range)})
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[rng]]}
    if not spec.internal:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}]
    ipam["dataDir"] = str(Path(data_root) / "cni" / "ipam")
    return ipam


def bridge_device(name: str, default_bridge_name: str, options: dict[str, str] | None = None) -> str:
    """``bridge_name`` (ctk0) for the default network, ``br-<id[:12]>`` for the others."""
    if options and options.get("bridge-name"):
        return options["bridge-name"]
    return default_bridge_name if name == DEFAULT_NETWORK else f"br-{network_id(name)[:12]}"


def generate(spec: NetworkSpec, *, data_root: str, bridge_name: str = "", parent: str = "") -> dict[str, Any]:
    """The conflist for ``spec``. ``bridge_name`` is the device (bridge driver); ``parent`` the master
    interface (macvlan/ipvlan; ``-o parent`` wins)."""
    opts = spec.options
    plugins: list[dict[str, Any]]
    if spec.driver == "bridge":
        masq = not spec.internal
        if "ip-masq" in opts:
            masq = masq and opts["ip-masq"].lower() in ("true", "1")
        bridge: dict[str, Any] = {"type": "bridge", "bridge": bridge_name, "isGateway": not spec.internal,
                                  "ipMasq": masq, "hairpinMode": True}
        if "mtu" in opts:
            bridge["mtu"] = int(opts["mtu"])
        bridge["ipam"] = _ipam(spec, data_root)
        plugins = [bridge]
        if not spec.internal:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins += [{"type": "firewall", "ingressPolicy": "same-bridge"}, {"type": "tuning"}]
    elif spec.driver in ("macvlan", "ipvlan"):
        master = opts.get("parent") or parent
        if not master:
            raise UsageError(f"{spec.driver} needs a parent interface and the host has no default route",
                             hint="give -o parent=IFACE")
        mode = opts.get("mode") or MODES[spec.driver][0]
        plugin: dict[str, Any] = {"type": spec.driver, "master": master, "mode": mode}
        if "mtu" in opts:
            plugin["mtu"] = int(opts["mtu"])
        plugin["ipam"] = _ipam(spec, data_root)
        plugins = [plugin]
    else:
        raise UsageError(f"unknown network driver {spec.driver!r}", hint="one of " + ", ".join(DRIVERS))
    return {"cniVersion": CNI_VERSION, "name": spec.name, ID_KEY: network_id(spec.name),
            LABELS_KEY: dict(spec.labels), "plugins": plugins}


def required_plugins(conflist: dict[str, Any]) -> list[str]:
    """Every binary the chain execs: each plugin's type and its IPAM type."""
    plugins = conflist.get("plugins") if "plugins" in conflist else [conflist]
    out: list[str] = []
    for p in plugins or []:
        for t in (p.get("type"), (p.get("ipam") or {}).get("type")):
            if isinstance(t, str) and t and t not in out:
                out.append(t)
    return out


def find_plugin(cni_path: str, plugin_type: str) -> str | None:
    for d in cni_path.split(":"):
        p = os.path.join(d, plugin_type)
        if d and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def check_plugins(conflist: dict[str, Any], cni_path: str) -> None:
    """NotFound naming the first plugin missing from ``cni_path``."""
    for t in required_plugins(conflist):
        if find_plugin(cni_path, t) is None:
            raise NotFound(f"CNI plugin {t!r} not found in CNI_PATH {cni_path}", hint=_INSTALL_HINT)


# ------------------------------------------------------------------------------------------- inspect


def dockercompat(net: Network, containers: dict[str, Any] | None = None) -> dict[str, Any]:
    """``docker network inspect``'s shape, filled from the conflist."""
    config = []
    for r in net.ranges:
        entry = {"Subnet": str(r.get("subnet", ""))}
        if r.get("gateway"):
            entry["Gateway"] = str(r["gateway"])
        if r.get("ipRange"):
            entry["IPRange"] = str(r["ipRange"])
        config.append(entry)
    ipam_type = str(net.ipam.get("type", ""))
    return {"Name": net.name, "Id": net.id, "Driver": net.driver,
            "IPAM": {"Driver": "default" if ipam_type in ("host-local", "") else ipam_type, "Config": config},
            "Internal": net.internal, "Labels": dict(net.labels), "Containers": dict(containers or {})}


def native(net: Network) -> dict[str, Any]:
    return {"CNI": net.conflist, "ID": net.id, "Labels": dict(net.labels), "File": net.file}
