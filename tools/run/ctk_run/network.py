"""ctk-run's side of networking: which networks a container joins, and its --add-host entries.

ctk-run never imports ctk-net: it runs the ``ctk-net`` executable (``ensure`` at create, ``hook`` through runc
at every task start and stop) and reads the state file the hook leaves in the container's directory
(``ctk_shared.labels.NETWORK_STATE_FILE``). How a task is attached (the hooks, their annotations, the /etc
files) is shared with ctk-build's RUN steps and lives in :mod:`ctk_shared.nethooks`.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctk_shared import labels as SL
from ctk_shared.errors import UsageError

NO_NETWORK = ("none", "host")


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
        return json.loads((state_dir / SL.NETWORK_STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
