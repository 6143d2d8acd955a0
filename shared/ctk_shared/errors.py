"""One error tree for all of ctk, and the single table mapping it to exit codes.

Library code raises these; only ``ctk_shared.cli`` turns them into a one-line message and an exit code,
so every tool reports failures the same way.
"""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1  # an operation failed (DESIGN §3)
    USAGE = 2  # bad flags or arguments (click's own convention)
    INTERRUPTED = 130  # Ctrl-C


class CtkError(Exception):
    """Root of everything ctk raises on purpose; ``hint`` is a fix the user can apply."""

    exit_code: int = ExitStatus.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CtkError):
    """The command line itself is wrong (malformed ref, conflicting flags)."""

    exit_code = ExitStatus.USAGE


class InvalidArgument(CtkError):
    """Input data is wrong: a bad manifest, an unsupported media type, a broken archive."""


class NotFound(CtkError):
    pass


class AlreadyExists(CtkError):
    pass


class Conflict(CtkError):
    """The operation would break something in use (image used by a container)."""


class Unauthenticated(CtkError):
    """The registry refused our credentials or asked for some we do not have."""


class PermissionDenied(CtkError):
    pass


class Unavailable(CtkError):
    """A service we depend on cannot be reached (containerd socket, registry host)."""


class IntegrityError(CtkError):
    """Bytes did not match their digest or size, or a MAC check failed."""


class Timeout(CtkError):
    pass


class Interrupted(CtkError):
    exit_code = ExitStatus.INTERRUPTED
