"""The options of each ctk-run command, as the command line gave them: one frozen dataclass per command.

This is the handoff of docs/CONVENTIONS.md §7: ``cli.py`` reads the flags into one of these (``-`` already
resolved into a ref) and calls one function ``(client, gopts, opts) -> Result`` in ``ops``; the values are
still text here, and are checked by that function before anything is made. Field names are the click
parameter names, so a command builds its options with ``RunOptions(image=…, command=…, **flags)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manage_options import (
        AttachOptions,
        CpOptions,
        EventsOptions,
        ExecOptions,
        InspectOptions,
        KillOptions,
        LogsOptions,
        PauseOptions,
        PortOptions,
        PruneOptions,
        PsOptions,
        RenameOptions,
        RestartOptions,
        RmOptions,
        StartOptions,
        StatsOptions,
        StopOptions,
        TopOptions,
        UnpauseOptions,
        UpdateOptions,
        VolumeCreateOptions,
        VolumeInspectOptions,
        VolumeLsOptions,
        VolumePruneOptions,
        VolumeRmOptions,
        WaitOptions,
    )

__all__ = [  # the run path's classes are defined here; the others come from manage_options on first use
    "ContainerOptions", "RunOptions", "AttachOptions", "CpOptions", "EventsOptions", "ExecOptions",
    "InspectOptions", "KillOptions", "LogsOptions", "PauseOptions", "PortOptions", "PruneOptions",
    "PsOptions", "RenameOptions", "RestartOptions", "RmOptions", "StartOptions", "StatsOptions",
    "StopOptions", "TopOptions", "UnpauseOptions", "UpdateOptions", "VolumeCreateOptions",
    "VolumeInspectOptions", "VolumeLsOptions", "VolumePruneOptions", "VolumeRmOptions", "WaitOptions",
]


@dataclass(frozen=True)
class ContainerOptions:
    """``ctk-run create``: every flag of a container (``run`` takes them all, plus its own)."""

    image: str
    command: tuple[str, ...] = ()
    interactive: bool = False
    tty: bool = False
    auto_remove: bool = False  # --rm
    name: str | None = None
    env: tuple[str, ...] = ()
    env_file: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None  # None: the image's; "": cleared
    hostname: str | None = None
    volume: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    cpus: str | None = None
    memory: str | None = None
    pids_limit: int | None = None
    ulimit: tuple[str, ...] = ()
    shm_size: str | None = None
    label: tuple[str, ...] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None
    init: bool = False
    platform: str | None = None
    restart: str = "no"
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_retries: str | None = None
    health_start_period: str | None = None
    health_start_interval: str | None = None
    no_healthcheck: bool = False
    pull: str = "missing"  # missing | always | never
    network: tuple[str, ...] = ()
    network_alias: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    publish_all: bool = False
    ip: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_option: tuple[str, ...] = ()
    add_host: tuple[str, ...] = ()
    decryption_keys: tuple[str, ...] = ()  # KEY[:pass=…] specs, read when the options are checked
    quiet: bool = False  # no pull progress


@dataclass(frozen=True)
class RunOptions(ContainerOptions):
    """``ctk-run run``: a container's flags, and how this invocation stays with it."""

    detach: bool = False
    detach_keys: str | None = None
    sig_proxy: bool = True


def __getattr__(name: str) -> object:
    """The other commands' options (:mod:`ctk_run.manage_options`) load on first use: building their ~26 frozen
    dataclasses costs ~12 ms, which every ``ctk-run run`` would pay before its container starts (issue 20)."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import manage_options

    try:
        return getattr(manage_options, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
