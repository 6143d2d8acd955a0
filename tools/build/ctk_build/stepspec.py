"""The OCI runtime spec of one ``RUN`` step: Docker's defaults plus the stage's environment, user and cwd.

A build step is a short-lived container with a network namespace of its own (as BuildKit's RUN steps):
attached to the default ``bridge`` network by ``ctk-net`` hooks (outbound through NAT), empty with
``--network none``, or the host's with ``--network host`` (an entitlement, checked in :mod:`stepnet`).
Docker's default seccomp profile for the default capabilities (as BuildKit applies it to RUN steps); hosts and
resolv.conf files bound read-only so name resolution works.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from ctk_shared import ocispec, seccomp

# every step's hostname outside the host's network, the same in every build (BuildKit's is "buildkitsandbox"),
# so a step that records it stays reproducible
STEP_HOSTNAME = "ctk-build"


@dataclass(frozen=True)
class StepProcess:
    """What a ``RUN`` step's container runs, and how: the command, environment, user, directory, network and mounts."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    network: str = "bridge"  # "bridge", "host" or "none"
    binds: tuple[tuple[str, str], ...] = field(default=())  # (host path, container path), read-only
    hooks: dict[str, Any] | None = None  # the OCI hooks that attach a "bridge" step (ctk_shared.nethooks)
    annotations: dict[str, str] = field(default_factory=dict)  # what those hooks read
    mounts: tuple[dict[str, Any], ...] = ()  # RUN --mount's spec mounts (runmounts), after the binds
    netns: str = ""  # a "bridge" step: the path of the attached namespace it joins (stepnet's pool)


def build_step_spec(container_id: str, namespace: str, proc: StepProcess) -> dict[str, Any]:
    """The runtime spec; every mode but ``host`` gets a network namespace of its own: a new one, or the
    attached one at ``netns`` (a ``bridge`` step; or hooks that attach a new one)."""
    host_net = proc.network == "host"
    user: dict[str, Any] = {"uid": proc.uid, "gid": proc.gid}
    if proc.additional_gids:
        user["additionalGids"] = list(proc.additional_gids)
    namespaces = ["pid", "ipc", "uts", "mount"] + ([] if host_net else ["network"])
    mounts = ocispec.default_mounts()
    for src, dst in proc.binds:
        mounts.append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro", "rprivate"]})
    mounts.extend(dict(m) for m in proc.mounts)
    spec: dict[str, Any] = {
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
        "hostname": socket.gethostname() if host_net else STEP_HOSTNAME,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t, "path": proc.netns} if t == "network" and proc.netns else {"type": t}
                           for t in namespaces],
            "cgroupsPath": f"/{namespace}/{container_id}",
            "resources": {"devices": ocispec.device_rules()},
            "devices": ocispec.device_nodes(),
            "maskedPaths": list(ocispec.MASKED_PATHS),
            "readonlyPaths": list(ocispec.READONLY_PATHS),
            "seccomp": seccomp.default_profile(ocispec.DEFAULT_CAPS),
        },
    }
    if proc.hooks:
        spec["hooks"] = proc.hooks
    if proc.annotations:
        spec["annotations"] = dict(proc.annotations)
    return spec
