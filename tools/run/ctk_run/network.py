"""ctk-run's side of networking: which networks a container joins, the OCI hooks that run ``ctk-net`` to
attach it, and the /etc files it gets. ctk-run never imports ctk-net: it runs the ``ctk-net`` executable
(``ensure`` at create, ``hook`` through runc at every task start and stop) and reads the state file the
hook leaves in the container's directory (``ctk_shared.labels.NETWORK_STATE_FILE``).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as SL
from ctk_shared.errors import CtkError, NotFound, UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

NO_NETWORK = ("none", "host")
HOOK_TIMEOUT = 120  # seconds; runc kills a hook that takes longer
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSED_ENV = ("CTK_CONFIG", "CTK_BRIDGE_SUBNET", "CTK_BRIDGE_NAME", "CTK_DEBUG")


@dataclass(frozen=True)
class NetOptions:
    """The network flags of ``run``: ``networks`` is ("none",), ("host",) or network names."""

    networks: tuple[str, ...] = ("bridge",)
    publish: tuple[dict[str, Any], ...] = ()  # parsed -p mappings
    publish_all: bool = False
    ip: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    add_hosts: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        """"none", "host" or "cni"."""
        return self.networks[0] if self.networks[0] in NO_NETWORK else "cni"


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    gateway: str = ""


def ctk_net_executable() -> str:
    """``ctk-net`` beside this interpreter (a pyenv shim on PATH would not run under runc's empty env)."""
    here = Path(sys.executable).parent / "ctk-net"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("ctk-net")
    if not found:
        raise UsageError("bridge and user networks need ctk-net, which is not installed",
                         hint="pip install ./tools/net (or use --network none|host)")
    return os.path.realpath(found)


def resolve(gopts: GlobalOptions, names: list[str], need_gateway: bool) -> list[NetworkInfo]:
    """The networks, created when it is the default one; NotFound for an unknown name.

    Fast path: a conflist ctk-net wrote is recognised by its file name without starting ctk-net (0.1 s saved
    per run); anything else asks ``ctk-net ensure``, which also creates the default network on first use."""
    if not need_gateway and all((Path(gopts.cni_netconfpath) / SL.conflist_name(n)).is_file() for n in names):
        return [NetworkInfo(n) for n in names]
    exe = ctk_net_executable()
    p = subprocess.run([exe, *_global_args(gopts), "ensure", *names], capture_output=True, text=True,
                       env=_hook_env(), check=False)
    if p.returncode != 0:
        msg = next((ln.split("error: ", 1)[1] for ln in p.stderr.splitlines() if "error: " in ln),
                   p.stderr.strip() or f"ctk-net ensure failed (exit {p.returncode})")
        hint = next((ln.split("hint: ", 1)[1] for ln in p.stderr.splitlines() if "hint: " in ln), None)
        raise (NotFound if "not found" in msg else CtkError)(msg, hint=hint)
    out = []
    for line in p.stdout.splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append(NetworkInfo(rec.get("Name", ""), rec.get("Gateway") or ""))
    return out


def _global_args(gopts: GlobalOptions) -> list[str]:
    return ["--address", gopts.address, "--data-root", gopts.data_root, "--cni-path", gopts.cni_path,
            "--cni-netconfpath", gopts.cni_netconfpath]


def _hook_env(path: str | None = None) -> dict[str, str]:
    env = {"PATH": path or os.environ.get("PATH") or _PATH}
    env.update({k: os.environ[k] for k in _PASSED_ENV if os.environ.get(k)})
    return env


def hooks(gopts: GlobalOptions) -> dict[str, Any]:
    """The runtime spec's ``hooks``: attach after the namespaces exist, detach when the task is deleted."""
    exe = ctk_net_executable()
    base = [exe, *_global_args(gopts), "--namespace", gopts.namespace, "hook"]
    # runc gives a hook only this environment: the plugins need iptables on PATH
    env = [f"{k}={v}" for k, v in _hook_env(f"{_PATH}:{Path(exe).parent}").items()]
    return {"createRuntime": [{"path": exe, "args": [*base, "createRuntime"], "env": env, "timeout": HOOK_TIMEOUT}],
            "poststop": [{"path": exe, "args": [*base, "postStop"], "env": env, "timeout": HOOK_TIMEOUT}]}


def annotations(namespace: str, networks: list[str], ports: list[dict[str, Any]], name: str, hostname: str,
                state_dir: Path, ip: str | None) -> dict[str, str]:
    ann = {SL.ANN_NETWORKS: json.dumps(networks), SL.ANN_PORTS: json.dumps(ports), SL.ANN_NAMESPACE: namespace,
           SL.ANN_NAME: name, SL.ANN_HOSTNAME: hostname, SL.ANN_STATE_DIR: str(state_dir)}
    if ip:
        ann[SL.ANN_IP] = ip
    return ann


# ---------------------------------------------------------------------------------------------- /etc files


def hosts_text(hostname: str, add_hosts: list[str], gateway: str, networked: bool) -> str:
    """The static part of /etc/hosts; with a network, the hook adds the container's and its peers' names."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if not networked:
        lines.append(f"127.0.1.1\t{hostname}")
    for entry in add_hosts:
        host, _, ip = entry.partition(":")
        if ip == "host-gateway":
            if not gateway:
                raise UsageError(f"--add-host {entry}: host-gateway needs a bridge network")
            ip = gateway
        lines.append(f"{ip}\t{host}")
    return "\n".join(lines) + "\n"


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


def resolv_text(dns: tuple[str, ...], search: tuple[str, ...], options: tuple[str, ...], networked: bool,
                host_file: str = "/etc/resolv.conf") -> str:
    """Docker's rules: flags win; otherwise the host's file, without loopback nameservers when the container
    has its own network namespace (they would point at the container itself)."""
    try:
        host = Path(host_file).read_text()
    except OSError:
        host = ""
    servers = list(dns)
    searches = list(search)
    opts = list(options)
    if not servers:
        for line in host.splitlines():
            f = line.split()
            if len(f) >= 2 and f[0] == "nameserver":
                if networked and _is_loopback(f[1]):
                    continue
                servers.append(f[1])
    if not searches:
        for line in host.splitlines():
            f = line.split()
            if f and f[0] in ("search", "domain"):
                searches = f[1:]
    if not opts:
        for line in host.splitlines():
            f = line.split()
            if f and f[0] == "options":
                opts += f[1:]
    out = [f"nameserver {s}" for s in servers]
    if searches:
        out.append("search " + " ".join(searches))
    if opts:
        out.append("options " + " ".join(opts))
    return "\n".join(out) + ("\n" if out else "")


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------- state


def read_state(state_dir: Path) -> dict[str, Any]:
    """What the hook recorded for the running task (empty when not attached)."""
    try:
        return json.loads((state_dir / SL.NETWORK_STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def hook_error(message: str) -> str | None:
    """The hook's own error line inside runc's wrapped message, if the failure came from the hook."""
    if "error running hook" not in message:
        return None
    text = message.split("stderr:", 1)[1] if "stderr:" in message else message
    for part in text.replace("\\n", "\n").splitlines():
        if "error: " in part:
            return part.split("error: ", 1)[1].removesuffix(": unknown").strip()
    return text.strip().removesuffix(": unknown") or None
