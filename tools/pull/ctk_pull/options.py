"""The options of ctk-pull's image commands, as the command line gave them: one frozen dataclass per command.

``cli.py`` reads the flags into one of these (``-`` arguments already read from stdin) and calls the command's
function in ``ops``, ``(client, gopts, opts) -> Result`` (docs/CONVENTIONS.md §7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import IO, BinaryIO

    from ctk_shared.oci import Platform
    from ctk_shared.prune import PruneFilter


@dataclass(frozen=True)
class PullOptions:
    """What ``ctk-pull pull`` was asked for: the refs, which platforms, whether to unpack, and decryption keys."""

    refs: tuple[str, ...]
    platform: Platform | None = None
    all_platforms: bool = False
    unpack: bool = True
    quiet: bool = False
    max_concurrent_downloads: int = 3
    decryption_keys: tuple[str, ...] = ()  # KEY[:pass=…] specs


@dataclass(frozen=True)
class PushOptions:
    """What ``ctk-pull push`` was asked for: the images, and the one platform to push (None: all the store has)."""

    refs: tuple[str, ...]
    platform: Platform | None = None
    quiet: bool = False


@dataclass(frozen=True)
class TagOptions:
    """What ``ctk-pull tag`` was asked for: the image (SOURCE, already read from stdin for ``-``) and its new name."""

    source: str
    target: str


@dataclass(frozen=True)
class RmOptions:
    """What ``ctk-pull rm`` was asked for: the images; ``force`` removes them even when a container uses them."""

    refs: tuple[str, ...]
    force: bool = False


@dataclass(frozen=True)
class LoginOptions:
    """``login``: the cli has asked for (or read from stdin) what the flags left out."""

    server: str | None
    username: str
    password: str


@dataclass(frozen=True)
class LogoutOptions:
    """What ``ctk-pull logout`` was asked for: the registry to forget (None: Docker Hub)."""

    server: str | None = None


@dataclass(frozen=True)
class ConvertOptions:
    """What ``ctk-pull convert`` was asked for: SRC, DST, the layer format flags, their settings, the platforms."""

    source: str
    target: str
    estargz: bool = False
    zstd: bool = False
    uncompressed: bool = False
    estargz_record_in: str | None = None
    chunk_size: int = 0
    level: int | None = None
    oci: bool = False
    platforms: tuple[Platform, ...] = ()  # --platform a,b
    all_platforms: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class ImagesOptions:
    """What ``ctk-pull images`` was asked for: which images (REPOSITORY[:TAG]), and how to print them."""

    quiet: bool = False
    fmt: str | None = None
    digests: bool = False
    no_trunc: bool = False
    repository: str | None = None


@dataclass(frozen=True)
class InspectOptions:
    """What ``ctk-pull inspect`` was asked for: the images, which platform, and raw documents or a format."""

    refs: tuple[str, ...]
    platform: Platform | None = None
    raw: bool = False
    fmt: str | None = None


@dataclass(frozen=True)
class SaveOptions:
    """``save``: ``stdout`` is the stream the cli hands over for ``-o -`` (the function never reads sys.stdout)."""

    refs: tuple[str, ...]
    output: str
    platform: Platform | None = None
    all_platforms: bool = False
    stdout: BinaryIO | None = None


@dataclass(frozen=True)
class LoadOptions:
    """``load``: ``tar`` is the input the cli opened (``-``: stdin, spooled to a file first)."""

    tar: IO[bytes]
    platform: Platform | None = None
    quiet: bool = False


@dataclass(frozen=True)
class PruneOptions:
    """``prune``, after the cli's prompt: ``filters`` already parsed, so a bad one is refused before it."""

    all_images: bool = False
    filters: PruneFilter | None = None


@dataclass(frozen=True)
class LazyServeOptions:
    """``lazy-serve``: the daemon's root and socket; registry settings come from the global options."""

    root: str
    socket_path: str
