"""The options of each ctk-net command, as the command line gave them: one frozen dataclass per command.

``cli.py`` reads the flags into one of these and calls the command's function in ``ops``, ``(store, gopts,
opts) -> Result`` (docs/CONVENTIONS.md §7); the function checks the values.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LsOptions:
    quiet: bool = False
    fmt: str | None = None
    no_trunc: bool = False


@dataclass(frozen=True)
class InspectOptions:
    refs: tuple[str, ...]
    mode: str = "dockercompat"  # or native: the conflist with ctk's fields
    fmt: str | None = None


@dataclass(frozen=True)
class CreateOptions:
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
    refs: tuple[str, ...]


@dataclass(frozen=True)
class PruneOptions:
    """``prune``: the cli asks for the confirmation (or takes -f) before the function runs."""

    force: bool = False


@dataclass(frozen=True)
class EnsureOptions:
    names: tuple[str, ...]


@dataclass(frozen=True)
class HookOptions:
    phase: str  # createRuntime | postStop
