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
    containers: tuple[str, ...]
    attach: bool = False
    interactive: bool = False
    detach_keys: str | None = None
    decryption_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopOptions:
    containers: tuple[str, ...]
    timeout: int | None = None  # seconds before SIGKILL (None: the container's, else 10)
    sig: str | None = None


@dataclass(frozen=True)
class RestartOptions:
    containers: tuple[str, ...]
    timeout: int | None = None


@dataclass(frozen=True)
class KillOptions:
    containers: tuple[str, ...]
    sig: str = "KILL"


@dataclass(frozen=True)
class RmOptions:
    containers: tuple[str, ...]
    force: bool = False
    volumes: bool = False


@dataclass(frozen=True)
class PauseOptions:
    containers: tuple[str, ...]


@dataclass(frozen=True)
class UnpauseOptions:
    containers: tuple[str, ...]


@dataclass(frozen=True)
class UpdateOptions:
    containers: tuple[str, ...]
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    pids_limit: str | None = None
    restart: str | None = None


@dataclass(frozen=True)
class WaitOptions:
    containers: tuple[str, ...]
    condition: str = "not-running"  # not-running | removed | healthy


@dataclass(frozen=True)
class InspectOptions:
    containers: tuple[str, ...]
    fmt: str | None = None


@dataclass(frozen=True)
class PortOptions:
    container: str
    private_port: str | None = None  # PORT[/PROTO]


@dataclass(frozen=True)
class LogsOptions:
    container: str
    follow: bool = False
    tail: str = "all"
    since: str | None = None
    until: str | None = None
    timestamps: bool = False


@dataclass(frozen=True)
class ExecOptions:
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
    container: str
    no_stdin: bool = False
    sig_proxy: bool = True
    detach_keys: str | None = None


@dataclass(frozen=True)
class RenameOptions:
    container: str
    new_name: str


@dataclass(frozen=True)
class VolumeCreateOptions:
    name: str | None = None  # None: a random name
    label: tuple[str, ...] = ()
    driver: str = "local"
    opt: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeInspectOptions:
    names: tuple[str, ...]
    fmt: str | None = None


@dataclass(frozen=True)
class VolumeRmOptions:
    names: tuple[str, ...]
    force: bool = False


@dataclass(frozen=True)
class VolumePruneOptions:
    """``volume prune``: the cli asks for the confirmation (or takes -f) before the function runs."""

    all_: bool = False
    force: bool = False


@dataclass(frozen=True)
class TopOptions:
    container: str
    ps_options: tuple[str, ...] = ()  # the host ps's options (default -ef)


@dataclass(frozen=True)
class VolumeLsOptions:
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
    all_: bool = False
    quiet: bool = False
    filters: tuple[str, ...] = ()
    fmt: str | None = None
    no_trunc: bool = False
    last: int | None = None


@dataclass(frozen=True)
class EventsOptions:
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
