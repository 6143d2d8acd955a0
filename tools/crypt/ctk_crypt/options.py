"""The options of each ctk-crypt command, as the command line gave them: one frozen dataclass per command.

``cli.py`` reads the flags into one of these (``-`` already read from stdin, a ``--request`` file already
read) and calls the command's function in ``ops``, ``(client, gopts, opts) -> Result`` (docs/CONVENTIONS.md §7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctk_shared.oci import Platform


@dataclass(frozen=True)
class EncryptOptions:
    """What ``ctk-crypt encrypt`` was asked for: SRC, DST, the recipients (or keys to add them with), which layers."""

    src: str
    dst: str
    recipients: tuple[str, ...] = ()  # jwe:FILE / pkcs7:FILE
    keys: tuple[str, ...] = ()  # FILE[:pass=…], to add recipients to encrypted layers
    platforms: tuple[Platform, ...] = ()
    layers: tuple[int, ...] = ()
    quiet: bool = False


@dataclass(frozen=True)
class DecryptOptions:
    """What ``ctk-crypt decrypt`` was asked for: SRC, DST, the private keys, and which platforms and layers."""

    src: str
    dst: str
    keys: tuple[str, ...] = ()  # FILE[:pass=…]
    platforms: tuple[Platform, ...] = ()
    layers: tuple[int, ...] = ()
    quiet: bool = False


@dataclass(frozen=True)
class InspectOptions:
    """What ``ctk-crypt inspect`` was asked for: the images, and the output format (None: a JSON array)."""

    refs: tuple[str, ...]
    fmt: str | None = None


@dataclass(frozen=True)
class CheckKeyOptions:
    """What ``ctk-crypt check-key`` was asked for: an image and keys, or ctk-run's ``--request`` document."""

    ref: str | None = None
    keys: tuple[str, ...] = ()
    request: bytes | None = None  # the --request document (ctk-run's, from stdin or a file)
    platforms: tuple[Platform, ...] = ()


@dataclass(frozen=True)
class KeygenOptions:
    """What ``ctk-crypt keygen`` was asked for: where to write the pair, its algorithm and size, password, cert."""

    out: str  # writes OUT.pem and OUT.pub.pem (and OUT.crt)
    kind: str = "rsa"
    bits: int = 4096
    curve: str = "P-256"
    password: str | None = None
    cert_days: int = 0
