"""Global options shared by every tool: flag > environment > TOML file > built-in default.

The TOML file is ``$CTK_CONFIG`` or ``/etc/ctk/ctk.toml``; its keys are the option names with
underscores (``address``, ``namespace``, ``data_root``, ``insecure_registry`` …).

Every value is checked where it is given: a TOML value of the wrong type, or a timeout that is not a
positive number, is a usage error naming the key and its source, before any tool does anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_CONFIG_PATH = "/etc/ctk/ctk.toml"


@dataclass(frozen=True)
class GlobalOptions:
    """Where a command works: containerd's socket and namespace, ctk's data root and the CNI paths."""

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
    # registry waits in seconds: (connect, response, stalled body); CONNECT,RESPONSE,STALL or one number for all
    registry_timeout: tuple[float, float, float] = (10.0, 30.0, 60.0)
    debug: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def socket_path(self) -> str:
        from .containerd.address import socket_path

        return socket_path(self.address)


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
    "registry_timeout": "CTK_REGISTRY_TIMEOUT",
    "debug": "CTK_DEBUG",
}


_BOOLS = frozenset({"debug", "insecure_registry"})
_MAX_TIMEOUT = 86400.0


def parse_registry_timeout(value: Any, source: str = "--registry-timeout") -> tuple[float, float, float]:
    """``30`` (every phase) or ``CONNECT,RESPONSE,STALL`` (``10,30,60``): positive seconds, at most a day."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parts: list[Any] = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise UsageError(f"{source}: expected seconds, got {type(value).__name__} {value!r}")
    try:
        nums = [float(p) for p in parts if not isinstance(p, bool)]
    except (TypeError, ValueError):
        nums = []
    if len(nums) != len(parts) or len(nums) not in (1, 3) or not all(0 < n <= _MAX_TIMEOUT for n in nums):
        raise UsageError(f"{source}: invalid registry timeout {value!r}",
                         hint="give seconds (0 < s <= 86400): one number for every phase, "
                              "or CONNECT,RESPONSE,STALL such as 10,30,60")
    return (nums[0], nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1], nums[2])


def _coerce(name: str, value: Any, source: str = "") -> Any:
    if name == "hosts_dir":
        if isinstance(value, str):
            return tuple(v for v in value.replace(",", " ").split() if v)
        return tuple(value)
    if name in _BOOLS:
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if name == "registry_timeout":
        return parse_registry_timeout(value, source or f"--{name.replace('_', '-')}")
    return str(value)


def _check_types(data: dict[str, Any], path: Path) -> None:
    """A TOML value of the wrong type names its key and file (``address = 5`` is not a socket path)."""
    for key, value in data.items():
        if key in _BOOLS:
            ok, want = isinstance(value, bool), "a boolean (true or false)"
        elif key == "hosts_dir":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            want = "a string or an array of strings"
        elif key == "registry_timeout":
            ok, want = True, ""  # checked with its range by parse_registry_timeout
        else:
            ok, want = isinstance(value, str), "a string"
        if not ok:
            raise UsageError(f"config file {path}: {key} must be {want}, not {type(value).__name__} {value!r}",
                             hint=f'quote it: {key} = "{value}"' if want == "a string" and isinstance(value, (int, float)) else None)


def file_path(path: str | None = None) -> Path:
    """The TOML file in effect: ``path``, else ``$CTK_CONFIG``, else /etc/ctk/ctk.toml."""
    return Path(path or os.environ.get("CTK_CONFIG") or DEFAULT_CONFIG_PATH)


def load_file(path: str | None = None) -> dict[str, Any]:
    """Read the TOML file; a missing default file is fine, a missing explicit one is not."""
    explicit = path or os.environ.get("CTK_CONFIG")
    p = file_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise UsageError(f"config file {p} does not exist") from None
        return {}
    except UnicodeDecodeError as e:
        raise UsageError(f"config file {p}: not UTF-8 text (byte {e.start})",
                         hint="a ctk config file is TOML; fix the file or point $CTK_CONFIG elsewhere") from None
    except OSError as e:
        raise UsageError(f"config file {p}: {e.strerror or e}") from None
    import tomllib  # only now: most machines have no file, and the parser costs every command ~3 ms to import

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {p}: {e}") from e
    known = {f.name for f in fields(GlobalOptions)} - {"extra"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"config file {p}: unknown key(s) {', '.join(sorted(unknown))}")
    _check_types(data, p)
    return data


def resolve(flags: dict[str, Any], config_path: str | None = None) -> GlobalOptions:
    """Merge the layers; ``flags`` holds only options given on the command line (None = not given)."""
    values: dict[str, Any] = {}
    for name, value in load_file(config_path).items():
        values[name] = _coerce(name, value, f"config file {file_path(config_path)}: {name}")
    for name, var in ENV_VARS.items():
        if var in os.environ and os.environ[var] != "":
            values[name] = _coerce(name, os.environ[var], f"${var}")
    for name, value in flags.items():
        if value is None or value == () or value is False:
            continue
        values[name] = _coerce(name, value)
    return replace(GlobalOptions(), **values)
