"""Attaching a container to CNI networks through the ``ctk-net`` executable, for every tool that runs one.

ctk-run (containers) and ctk-build (RUN steps) give a task its own network the same way, without importing
ctk-net: ``ctk-net ensure`` makes the default network on first use, and the runtime spec carries ``ctk-net
hook`` as the ``createRuntime`` / ``poststop`` OCI hooks plus annotations (keys in :mod:`ctk_shared.labels`)
saying which networks, ports and names. runc runs the hooks, so a network is attached whenever a task is
created and released whenever one is deleted, whoever deletes it. The task also gets generated ``hosts`` and
``resolv.conf`` files (Docker's rules, :func:`resolv_text`).
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import labels as SL
from .errors import CtkError, UsageError

if TYPE_CHECKING:
    from .config import GlobalOptions

DEFAULT_NETWORK = "bridge"
HOOK_TIMEOUT = 120  # seconds; runc kills a hook that takes longer
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what the hook needs from the caller's environment (runc gives a hook only what the spec lists)
_PASSED_ENV = ("CTK_CONFIG", "CTK_BRIDGE_SUBNET", "CTK_BRIDGE_NAME", "CTK_DEBUG")


@dataclass(frozen=True)
class NetworkInfo:
    """A CNI network a container joins, with the gateway its /etc/hosts names."""

    name: str
    gateway: str = ""


def ctk_net_executable(hint: str = "pip install ./tools/net (or use --network none|host)") -> str:
    """``ctk-net`` beside this interpreter (a pyenv shim on PATH would not run under runc's empty env)."""
    here = Path(sys.executable).parent / "ctk-net"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    import shutil

    found = shutil.which("ctk-net")
    if not found:
        raise UsageError("bridge and user networks need ctk-net, which is not installed", hint=hint)
    return os.path.realpath(found)


def resolve(gopts: GlobalOptions, names: list[str], need_gateway: bool) -> list[NetworkInfo]:
    """The networks, created when it is the default one; NotFound for an unknown name.

    Fast path: a conflist ctk-net wrote is recognised by its file name without starting ctk-net (0.1 s saved
    per run); anything else asks ``ctk-net ensure``, which also creates the default network on first use."""
    if not need_gateway and all((Path(gopts.cni_netconfpath) / SL.conflist_name(n)).is_file() for n in names):
        return [NetworkInfo(n) for n in names]
    import subprocess

    exe = ctk_net_executable()
    p = subprocess.run([exe, *_global_args(gopts), "ensure", *names], capture_output=True, text=True,
                       env=_hook_env(), check=False)
    return parse_ensure(p.stdout, p.returncode, p.stderr)


def parse_ensure(stdout: str, returncode: int, stderr: str = "") -> list[NetworkInfo]:
    """``ctk-net ensure``'s answer: one network record per line, or an error record
    (:mod:`ctk_shared.error_records`) raised as the error class it names. A failure without a record (ctk-net
    died, or refused its command line) is a plain CtkError quoting its last stderr line, never classified."""
    from .error_records import ERROR_KEY, from_record

    out = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise CtkError(f"ctk-net ensure printed something that is not JSON: {line[:200]!r}") from None
        if not isinstance(rec, dict):
            continue
        if ERROR_KEY in rec:
            raise from_record(rec[ERROR_KEY], f"ctk-net ensure failed (exit {returncode})")
        out.append(NetworkInfo(str(rec.get("Name") or ""), str(rec.get("Gateway") or "")))
    if returncode != 0:
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        raise CtkError(f"ctk-net ensure failed (exit {returncode})" + (f": {last}" if last else ""))
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
    python = _script_interpreter(exe)
    launcher = hook_launcher(gopts.data_root, python) if python else None
    if launcher:  # the hook module without site (python -I -S), its import path written in the launcher
        path, base = launcher, [launcher, *_global_args(gopts), "--namespace", gopts.namespace]
    elif python:  # the hook module run by ctk-net's own interpreter, isolated (-I): no click, no CLI imports
        path, base = python, [python, "-I", "-m", "ctk_net.hook", *_global_args(gopts), "--namespace", gopts.namespace]
    else:
        path, base = exe, [exe, *_global_args(gopts), "--namespace", gopts.namespace, "hook"]
    # runc gives a hook only this environment: the plugins need iptables on PATH
    env = [f"{k}={v}" for k, v in _hook_env(f"{_PATH}:{Path(exe).parent}").items()]
    return {"createRuntime": [{"path": path, "args": [*base, "createRuntime"], "env": env, "timeout": HOOK_TIMEOUT}],
            "poststop": [{"path": path, "args": [*base, "postStop"], "env": env, "timeout": HOOK_TIMEOUT}]}


def hook_launcher(data_root: str, python: str) -> str | None:
    """``<data root>/bin/ctk-net-hook``: ``python -I -m ctk_net.hook`` without ``site`` (:mod:`.launchers`).
    runc runs the hook twice per networked task, and the task waits for the first; ``site`` and the ``.pth``
    files were ~10% of its CPU here (issue 20). Only when ctk-net's interpreter is this one, since the
    launcher carries this process's import path; None (the caller runs ``python -I -m``) otherwise."""
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return None
    from .launchers import Entry, ensure

    return ensure(Path(os.path.abspath(data_root)) / "bin" / "ctk-net-hook", Entry("ctk_net.hook", "launched", argv=True),
                  needs=("ctk_shared",), note="runc's createRuntime/poststop hook", data_root=data_root)


def _script_interpreter(exe: str) -> str | None:
    """The Python interpreter of the ``ctk-net`` console script (its ``#!`` line), when it is one pip wrote
    (an absolute path to an executable python, no arguments); None for anything else (a wrapper, a binary)."""
    try:
        with open(exe, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!/") or not first.endswith(b"\n"):
        return None
    cmd = first[2:].strip().decode("utf-8", "replace")
    if " " in cmd or not os.path.basename(cmd).startswith("python") or not os.access(cmd, os.X_OK):
        return None
    return cmd


def hook_annotations(namespace: str, networks: list[str], ports: list[dict[str, Any]], name: str, hostname: str,
                     state_dir: Path | None, ip: str | None, *,
                     endpoints: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """What the hook reads from the spec. An empty ``name`` and ``hostname`` keep the task out of its peers'
    hosts files; without a ``state_dir`` the hook writes no state and no hosts file for it. ``endpoints``:
    per network, the ``Aliases`` its peers resolve and the ``IPAddress`` it asks for."""
    ann = {SL.ANN_NETWORKS: json.dumps(networks), SL.ANN_PORTS: json.dumps(ports), SL.ANN_NAMESPACE: namespace,
           SL.ANN_NAME: name, SL.ANN_HOSTNAME: hostname, SL.ANN_STATE_DIR: str(state_dir) if state_dir else ""}
    if ip:
        ann[SL.ANN_IP] = ip
    if endpoints:
        ann[SL.ANN_ENDPOINTS] = json.dumps(endpoints)
    return ann


def pinned_netns(data_root: str | Path, namespace: str, container_id: str) -> Path:
    """Where the hook bind-mounts an attached container's network namespace while it is attached (it outlives
    the task's processes until the CNI DEL). ``--network container:`` joins a container through this path:
    it exists exactly while the target is attached, and a stopped target leaves no file to join."""
    return Path(os.path.abspath(data_root)) / "net" / "netns" / f"{namespace}--{container_id}"


def hook_error(message: str) -> str | None:
    """The hook's own error line inside runc's wrapped message, if the failure came from the hook."""
    if "error running hook" not in message:
        return None
    text = message.split("stderr:", 1)[1] if "stderr:" in message else message
    for part in text.replace("\\n", "\n").splitlines():
        if "error: " in part:
            return part.split("error: ", 1)[1].removesuffix(": unknown").strip()
    return text.strip().removesuffix(": unknown") or None


# ---------------------------------------------------------------------------------------------- /etc files


def hosts_text(hostname: str, add_hosts: list[str], gateway: str, networked: bool) -> str:
    """The static part of /etc/hosts. ``networked``: the hook adds the task's own and its peers' names (it
    does for a container with a state dir), so the ``127.0.1.1 hostname`` line is left out."""
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


def resolv_text(dns: tuple[str, ...], search: tuple[str, ...], options: tuple[str, ...], networked: bool,
                host_file: str = "/etc/resolv.conf") -> str:
    """Docker's rules: flags win; otherwise the host's file, without loopback nameservers when the task has
    its own network namespace (they would point at the task itself)."""
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
