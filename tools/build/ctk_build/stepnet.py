"""The network of RUN steps: which mode a step gets, the ``network.host`` entitlement, and the hooks and /etc
files that attach a ``bridge`` step.

As in BuildKit, a step has a network namespace of its own with outbound access by default, so it cannot reach
services listening on the host's loopback (a local registry, a database) or see the host's sockets. ctk-build
attaches it to ctk's default ``bridge`` network exactly as ctk-run attaches a container: ``ctk-net`` runs as
the step's ``createRuntime``/``poststop`` OCI hooks (:mod:`ctk_shared.nethooks`), so runc releases the
address, veth and iptables rules whenever the step's task is deleted, failed steps and interrupted builds
included. The host's network is an entitlement (``--allow network.host``, BuildKit's name); ``none`` leaves
only ``lo``.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as SL
from ctk_shared import nethooks
from ctk_shared.errors import UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

BRIDGE = "bridge"  # the step's own namespace on ctk's default network (BuildKit's "default")
HOST = "host"
NONE = "none"
NETWORK_HOST = "network.host"
ENTITLEMENTS = frozenset({NETWORK_HOST})
ALLOW_HINT = f"pass --allow {NETWORK_HOST} to ctk-build to let RUN steps use the host's network"


def build_mode(flag: str, allow: frozenset[str]) -> str:
    """The build's default mode from ``--network`` (``default`` and ``bridge`` are the same); a usage error
    for ``host`` without the entitlement."""
    unknown = sorted(set(allow) - ENTITLEMENTS)
    if unknown:
        raise UsageError(f"--allow {unknown[0]}: unknown entitlement", hint=f"ctk-build knows {NETWORK_HOST}")
    mode = BRIDGE if flag in ("default", BRIDGE) else flag
    if mode not in (BRIDGE, HOST, NONE):
        raise UsageError(f"--network {flag}: expected default, none or host")
    if mode == HOST and NETWORK_HOST not in allow:
        raise UsageError(f"--network host needs the {NETWORK_HOST} entitlement", hint=ALLOW_HINT)
    return mode


def step_mode(flag: str | None, build_default: str, allow: frozenset[str]) -> str:
    """The mode of one ``RUN [--network=X]``; ValueError (the caller adds file:line) when not allowed."""
    if not flag or flag == "default":
        return build_default
    if flag not in (HOST, NONE):
        raise ValueError(f"RUN --network={flag}: expected default, none or host")
    if flag == HOST and NETWORK_HOST not in allow:
        raise ValueError(f"RUN --network=host needs the {NETWORK_HOST} entitlement")
    return flag


class StepNetwork:
    """What every ``bridge`` step of one build shares: the network made sure of once (``ctk-net ensure`` on
    first use, so a missing ctk-net or CNI plugin fails before the first step), the hooks and resolv.conf."""

    def __init__(self, gopts: GlobalOptions) -> None:
        self.gopts = gopts
        self._lock = threading.Lock()
        self._hooks: dict[str, Any] | None = None
        self._resolv = ""

    def _prepare(self) -> dict[str, Any]:
        with self._lock:
            if self._hooks is None:
                hint = "pip install ./tools/net, or build with --network none"
                nethooks.ctk_net_executable(hint)
                nethooks.resolve(self.gopts, [nethooks.DEFAULT_NETWORK], need_gateway=False)
                # the host's nameservers minus loopback ones, which would point at the step itself
                self._resolv = nethooks.resolv_text((), (), (), networked=True)
                self._hooks = nethooks.hooks(self.gopts)
            return self._hooks

    def spec_parts(self, namespace: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The hooks and annotations of a bridge step. No name, hostname or state dir: the step is kept out of
        its peers' hosts files and has no state of its own to record."""
        hooks = self._prepare()
        return hooks, nethooks.hook_annotations(namespace, [nethooks.DEFAULT_NETWORK], [], "", "", None, None)

    def etc_files(self, mode: str, hostname: str, d: str) -> list[tuple[str, str]]:
        """(host path, container path) binds for /etc/hosts and /etc/resolv.conf of a step: the host's own
        files with the host's network, generated ones written into the directory ``d`` for a bridge step,
        none with ``none`` (only ``lo``: nothing to resolve)."""
        if mode == HOST:
            return [(p, p) for p in ("/etc/hosts", "/etc/resolv.conf") if os.path.exists(p)]
        if mode != BRIDGE:
            return []
        self._prepare()
        with open(os.path.join(d, "hosts"), "w") as f:
            # networked=False: the hook adds no names for a step, so its own hostname line is static
            f.write(nethooks.hosts_text(hostname, [], "", networked=False))
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(self._resolv)
        return [(os.path.join(d, "hosts"), "/etc/hosts"), (os.path.join(d, "resolv.conf"), "/etc/resolv.conf")]


def container_labels(mode: str) -> dict[str, str]:
    """The step container's ``ctk/networks`` label, so ``ctk-net rm bridge`` sees the network in use."""
    return {SL.NETWORKS: f'["{nethooks.DEFAULT_NETWORK}"]'} if mode == BRIDGE else {}
