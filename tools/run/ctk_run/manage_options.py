"""The options of the ctk-run commands other than ``run`` and ``create`` (see :mod:`ctk_run.options`, which
hands them out on first use): one frozen dataclass per command, as the command line gave them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import BinaryIO

    from ctk_shared.prune import PruneFilter

    from .prune import OrphanDir


@dataclass(frozen=True)
class StartOptions:
    """What ``ctk-run start`` was asked for: the containers, whether to attach, and keys for encrypted images."""

    containers: tuple[str, ...]
    attach: bool = False
    interactive: bool = False
    detach_keys: str | None = None
    decryption_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopOptions:
    """What ``ctk-run stop`` was asked for: the containers, the signal to send first, and the seconds before SIGKILL."""

    containers: tuple[str, ...]
    timeout: int | None = None  # seconds before SIGKILL (None: the container's, else 10)
    sig: str | None = None


@dataclass(frozen=True)
class RestartOptions:
    """What ``ctk-run restart`` was asked for: the containers, and the seconds their stop waits before SIGKILL."""

    containers: tuple[str, ...]
    timeout: int | None = None


@dataclass(frozen=True)
class KillOptions:
    """What ``ctk-run kill`` was asked for: the containers, and the signal (name or number) to send them."""

    containers: tuple[str, ...]
    sig: str = "KILL"


@dataclass(frozen=True)
class RmOptions:
    """What ``ctk-run rm`` was asked for: the containers; -f kills running ones, -v removes their anonymous volumes."""

    containers: tuple[str, ...]
    force: bool = False
    volumes: bool = False


@dataclass(frozen=True)
class PauseOptions:
    """What ``ctk-run pause`` was asked for: the running containers to freeze."""

    containers: tuple[str, ...]


@dataclass(frozen=True)
class UnpauseOptions:
    """What ``ctk-run unpause`` was asked for: the paused containers to resume."""

    containers: tuple[str, ...]


@dataclass(frozen=True)
class UpdateOptions:
    """What ``ctk-run update`` was asked for: the containers, the new limits and restart policy (None: unchanged)."""

    containers: tuple[str, ...]
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    pids_limit: str | None = None
    restart: str | None = None


@dataclass(frozen=True)
class WaitOptions:
    """What ``ctk-run wait`` was asked for: the containers, and what to wait for (stopped, removed or healthy)."""

    containers: tuple[str, ...]
    condition: str = "not-running"  # not-running | removed | healthy


@dataclass(frozen=True)
class InspectOptions:
    """What ``ctk-run inspect`` was asked for: the containers, and the output format (None: a JSON array)."""

    containers: tuple[str, ...]
    fmt: str | None = None


@dataclass(frozen=True)
class PortOptions:
    """What ``ctk-run port`` was asked for: the container, and one private port to look up (None: all of them)."""

    container: str
    private_port: str | None = None  # PORT[/PROTO]


@dataclass(frozen=True)
class LogsOptions:
    """What ``ctk-run logs`` was asked for: the container, which lines (tail, time window), and whether to follow."""

    container: str
    follow: bool = False
    tail: str = "all"
    since: str | None = None
    until: str | None = None
    timestamps: bool = False


@dataclass(frozen=True)
class ExecOptions:
    """What ``ctk-run exec`` was asked for: the running container, the command, and how its process runs."""

    container: str
    command: tuple[str, ...]
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    env: tuple[str, ...] = ()
    env_file: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    privileged: bool = False


@dataclass(frozen=True)
class AttachOptions:
    """What ``ctk-run attach`` was asked for: the running container, and how this terminal joins it."""

    container: str
    no_stdin: bool = False
    sig_proxy: bool = True
    detach_keys: str | None = None


@dataclass(frozen=True)
class RenameOptions:
    """What ``ctk-run rename`` was asked for: the container, and its new name."""

    container: str
    new_name: str


@dataclass(frozen=True)
class VolumeCreateOptions:
    """What ``ctk-run volume create`` was asked for: the name, the labels, and the local driver's options."""

    name: str | None = None  # None: a random name
    label: tuple[str, ...] = ()
    driver: str = "local"
    opt: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeInspectOptions:
    """What ``ctk-run volume inspect`` was asked for: the volumes, and the output format (None: a JSON array)."""

    names: tuple[str, ...]
    fmt: str | None = None


@dataclass(frozen=True)
class VolumeRmOptions:
    """What ``ctk-run volume rm`` was asked for: the volumes; ``force`` skips missing ones and removes used ones."""

    names: tuple[str, ...]
    force: bool = False


@dataclass(frozen=True)
class VolumePruneOptions:
    """``volume prune``: the cli asks for the confirmation (or takes -f) before the function runs."""

    all_: bool = False
    force: bool = False


@dataclass(frozen=True)
class TopOptions:
    """What ``ctk-run top`` was asked for: the running container, and the options for the host's ``ps``."""

    container: str
    ps_options: tuple[str, ...] = ()  # the host ps's options (default -ef)


@dataclass(frozen=True)
class VolumeLsOptions:
    """What ``ctk-run volume ls`` was asked for: which volumes, and how to print them."""

    quiet: bool = False
    filters: tuple[str, ...] = ()
    fmt: str | None = None


@dataclass(frozen=True)
class PruneOptions:
    """``prune``, after the cli's prompt: the filters parsed (a bad one is refused before the prompt), and the
    orphaned namespace directories the prompt listed (only those are removed, and only with ``namespace_dirs``)."""

    filters: PruneFilter | None = None
    namespace_dirs: bool = False
    orphans: tuple[OrphanDir, ...] = ()


@dataclass(frozen=True)
class PsOptions:
    """What ``ctk-run ps`` was asked for: which containers, and how to print them."""

    all_: bool = False
    quiet: bool = False
    filters: tuple[str, ...] = ()
    fmt: str | None = None
    no_trunc: bool = False
    last: int | None = None


@dataclass(frozen=True)
class EventsOptions:
    """What ``ctk-run events`` was asked for: the time window, which events, and how to print them."""

    since: str | None = None
    until: str | None = None
    filters: tuple[str, ...] = ()
    fmt: str | None = None


@dataclass(frozen=True)
class StatsOptions:
    """``stats``: ``no_stream`` as the cli decided it (the flag, or stdout not a terminal, or ``--format json``)."""

    containers: tuple[str, ...] = ()
    all_: bool = False
    no_stream: bool = False
    no_trunc: bool = False
    fmt: str | None = None


@dataclass(frozen=True)
class CpOptions:
    """``cp``: ``stdin``/``stdout`` are the streams the cli hands over for a ``-`` side (a tar in or out)."""

    src: str
    dst: str
    archive: bool = False
    follow_link: bool = False
    quiet: bool = False
    stdin: BinaryIO | None = None
    stdout: BinaryIO | None = None
