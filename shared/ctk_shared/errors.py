"""One error tree for all of ctk, and the single table mapping it to exit codes.

Library code raises these; only ``ctk_shared.cli`` turns them into a one-line message and an exit code,
so every tool reports failures the same way.
"""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Every exit code ctk uses (docs/CONVENTIONS.md, the README's EXIT STATUS). Docker exits 1 for all of 3–5;
    ctk gives scripts distinct codes for the failures they branch on."""

    OK = 0
    FAILURE = 1  # an operation failed
    USAGE = 2  # bad flags or arguments (click's own convention), or a `-` that read no ref
    NOT_FOUND = 3  # no such image, container, network, volume, repository, tag or blob
    UNAUTHORIZED = 4  # the registry wants credentials, or refused the ones given
    INTEGRITY = 5  # bytes did not match their digest or declared size; a MAC or signature check failed
    RUN_FAILED = 125  # ctk-run run/create/exec: ctk itself failed (Docker's code)
    CANNOT_INVOKE = 126  # ctk-run run/exec: the command exists but cannot be run (Docker's code)
    COMMAND_NOT_FOUND = 127  # ctk-run run/exec: the command is not found (Docker's code)
    INTERRUPTED = 130  # Ctrl-C


class CtkError(Exception):
    """Root of everything ctk raises on purpose; ``hint`` is a fix the user can apply."""

    exit_code: int = ExitStatus.FAILURE
    grpc_code: str  # only on errors from containerd's API: its status code's name (containerd.errors.from_rpc_error)

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
    exit_code = ExitStatus.NOT_FOUND


class AlreadyExists(CtkError):
    pass


class Conflict(CtkError):
    """The operation would break something in use (image used by a container)."""


class Unauthenticated(CtkError):
    """The registry refused our credentials or asked for some we do not have."""

    exit_code = ExitStatus.UNAUTHORIZED


class PermissionDenied(CtkError):
    pass


class Unavailable(CtkError):
    """A service we depend on cannot be reached (containerd socket, registry host)."""


class IntegrityError(CtkError):
    """Bytes did not match their digest or size, or a MAC check failed."""

    exit_code = ExitStatus.INTEGRITY


class Timeout(CtkError):
    pass


class Interrupted(CtkError):
    exit_code = ExitStatus.INTERRUPTED


class Failures(CtkError):
    """Several targets of one command failed (``rm a b c``): each is reported on its own line, and the exit code
    is theirs when they agree (all not found: 3), else 1."""

    def __init__(self, failures: list[CtkError]) -> None:
        super().__init__("; ".join(f.message for f in failures))
        self.failures = failures
        codes = {int(f.exit_code) for f in failures}
        self.exit_code = codes.pop() if len(codes) == 1 else ExitStatus.FAILURE


def raise_failures(failures: list[CtkError]) -> None:
    """After every target of a multi-target command was tried: nothing, the one failure as it is, or all."""
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise Failures(failures)
