"""Global options shared by every tool: flag > environment > TOML file > built-in default.

The TOML file is ``$CTK_CONFIG`` or ``/etc/ctk/ctk.toml``; its keys are the option names with
underscores (``address``, ``namespace``, ``data_root``, ``insecure_registry`` …).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_CONFIG_PATH = "/etc/ctk/ctk.toml"


@dataclass(frozen=True)
class GlobalOptions:
    address: str = "/run/containerd/containerd.sock"
    namespace: str = "default"
    snapshotter: str = "overlayfs"
    data_root: str = "/var/lib/ctk"
    cni_path: str = "/usr/lib/cni"
    cni_netconfpath: str = "/etc/cni/net.d"
    bridge_subnet: str = "10.4.0.0/24"  # the default network `bridge` (nerdctl's --bridge-ip)
    bridge_name: str = "ctk0"  # its bridge device
    insecure_registry: bool = False  # skip TLS verification and allow plain HTTP (nerdctl semantics)
    hosts_dir: tuple[str, ...] = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
    debug: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def socket_path(self) -> str:
        return self.address.removeprefix("unix://")


# environment variable for each option, matching containerd's and nerdctl's names
ENV_VARS = {
    "address": "CONTAINERD_ADDRESS",
    "namespace": "CONTAINERD_NAMESPACE",
    "snapshotter": "CONTAINERD_SNAPSHOTTER",
    "data_root": "CTK_DATA_ROOT",
    "cni_path": "CNI_PATH",
    "cni_netconfpath": "NETCONFPATH",
    "bridge_subnet": "CTK_BRIDGE_SUBNET",
    "bridge_name": "CTK_BRIDGE_NAME",
    "insecure_registry": "CTK_INSECURE_REGISTRY",
    "debug": "CTK_DEBUG",
}


def _coerce(name: str, value: Any) -> Any:
    if name == "hosts_dir":
        if isinstance(value, str):
            return tuple(v for v in value.replace(",", " ").split() if v)
        return tuple(value)
    if name in ("debug", "insecure_registry"):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    return str(value)


def load_file(path: str | None = None) -> dict[str, Any]:
    """Read the TOML file; a missing default file is fine, a missing explicit one is not."""
    explicit = path or os.environ.get("CTK_CONFIG")
    p = Path(explicit or DEFAULT_CONFIG_PATH)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"config file {p} does not exist") from None
        return {}
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {p}: {e}") from e
    known = {f.name for f in fields(GlobalOptions)} - {"extra"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"config file {p}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


def resolve(flags: dict[str, Any], config_path: str | None = None) -> GlobalOptions:
    """Merge the layers; ``flags`` holds only options given on the command line (None = not given)."""
    values: dict[str, Any] = {}
    for name, value in load_file(config_path).items():
        values[name] = _coerce(name, value)
    for name, var in ENV_VARS.items():
        if var in os.environ and os.environ[var] != "":
            values[name] = _coerce(name, os.environ[var])
    for name, value in flags.items():
        if value is None or value == () or value is False:
            continue
        values[name] = _coerce(name, value)
    return replace(GlobalOptions(), **values)
