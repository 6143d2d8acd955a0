"""The OCI runtime spec of one ``RUN`` step: Docker's defaults plus the stage's environment, user and cwd.

A build step is a short-lived container: host network by default (as ``docker build``), a private one
with ``--network none``; Docker's default seccomp profile for the default capabilities (as BuildKit applies
it to RUN steps); the build's hosts and resolv.conf files bound read-only so name resolution works in the host
network.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from ctk_shared import ocispec, seccomp


@dataclass(frozen=True)
class StepProcess:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    network: str = "host"  # "host" or "none"
    binds: tuple[tuple[str, str], ...] = field(default=())  # (host path, container path), read-only


def build_step_spec(container_id: str, namespace: str, proc: StepProcess) -> dict[str, Any]:
    host_net = proc.network == "host"
    user: dict[str, Any] = {"uid": proc.uid, "gid": proc.gid}
    if proc.additional_gids:
        user["additionalGids"] = list(proc.additional_gids)
    namespaces = ["pid", "ipc", "uts", "mount"] + ([] if host_net else ["network"])
    mounts = ocispec.default_mounts()
    for src, dst in proc.binds:
        mounts.append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro", "rprivate"]})
    return {
        "ociVersion": ocispec.OCI_VERSION,
        "process": {
            "terminal": False,
            "user": user,
            "args": list(proc.args),
            "env": list(proc.env),
            "cwd": proc.cwd or "/",
            "capabilities": ocispec.capabilities(),
            "rlimits": ocispec.default_rlimits(),
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": socket.gethostname() if host_net else container_id[:12],
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in namespaces],
            "cgroupsPath": f"/{namespace}/{container_id}",
            "resources": {"devices": ocispec.device_rules()},
            "devices": ocispec.device_nodes(),
            "maskedPaths": list(ocispec.MASKED_PATHS),
            "readonlyPaths": list(ocispec.READONLY_PATHS),
            "seccomp": seccomp.default_profile(ocispec.DEFAULT_CAPS),
        },
    }
