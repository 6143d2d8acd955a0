"""The options of each ctk-net command, as the command line gave them: one frozen dataclass per command.

``cli.py`` reads the flags into one of these and calls the command's function in ``ops``, ``(store, gopts,
opts) -> Result`` (docs/CONVENTIONS.md §7); the function checks the values.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LsOptions:
    """What ``ctk-net ls`` was asked for: how to print the networks."""

    quiet: bool = False
    fmt: str | None = None
    no_trunc: bool = False


@dataclass(frozen=True)
class InspectOptions:
    """What ``ctk-net inspect`` was asked for: the networks, Docker's shape or ctk's conflist, and the format."""

    refs: tuple[str, ...]
    mode: str = "dockercompat"  # or native: the conflist with ctk's fields
    fmt: str | None = None


@dataclass(frozen=True)
class CreateOptions:
    """What ``ctk-net create`` was asked for: the name, the CNI driver and its options, the addresses and labels."""

    name: str
    driver: str = "bridge"  # bridge | macvlan | ipvlan
    opts: tuple[str, ...] = ()  # -o KEY=VALUE driver options
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    labels: tuple[str, ...] = ()  # KEY=VALUE
    internal: bool = False
    ipam_driver: str = "default"


@dataclass(frozen=True)
class RmOptions:
    """What ``ctk-net rm`` was asked for: the networks to remove."""

    refs: tuple[str, ...]


@dataclass(frozen=True)
class PruneOptions:
    """``prune``: the cli asks for the confirmation (or takes -f) before the function runs."""

    force: bool = False


@dataclass(frozen=True)
class EnsureOptions:
    """What the hidden ``ctk-net ensure`` was asked for (by ctk-run or ctk-build): the networks to resolve."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class HookOptions:
    """What the hidden ``ctk-net hook`` was asked for: the phase runc runs the hook in (createRuntime, postStop)."""

    phase: str  # createRuntime | postStop
