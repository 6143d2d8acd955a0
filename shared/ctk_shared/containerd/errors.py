"""gRPC status codes from containerd turned into ctk's error tree (mirrors errgrpc ``ToNative``).

Every wrapper call goes through :func:`rpc_errors`, so callers only ever catch ``CtkError`` subclasses
and never see ``grpc.RpcError``. containerd's message is kept verbatim; the gRPC code name is kept on
the exception as ``grpc_code`` for callers that need to tell two failures of one class apart.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import (
    AlreadyExists,
    Conflict,
    CtkError,
    IntegrityError,
    Interrupted,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from .address import NOT_RUNNING_HINT, not_running

if TYPE_CHECKING:
    import grpc
else:
    from . import deferred

    grpc = deferred.grpc()

__all__ = ["NOT_RUNNING_HINT", "from_rpc_error", "not_running", "rpc_errors"]

_CLASSES: dict[grpc.StatusCode, type[CtkError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Interrupted,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}

# Patterns as text, compiled (and cached by re) at the first error, not at every command's start.
# content commit checks (content/local/writer.go, metadata/content.go), sent as FAILED_PRECONDITION
_INTEGRITY = (r"unexpected commit (?:digest|size)|unexpected digest|failed size validation|"
              r"digest mismatch|size mismatch")
# errors grpc itself produces when nothing answers on the socket (containerd's own end in ": unavailable")
_NO_SERVER = (r"(?i)failed to connect|connections to all backends failing|connection refused|"
              r"no such file|socket closed|connection reset|broken pipe|goaway")


_MAX_DETAILS = 2000  # characters of containerd's message kept for the one error line


def _shorten(details: str) -> str:
    """containerd's message, cut in the middle when it is huge (a failed mount lists every lower layer)."""
    if len(details) <= _MAX_DETAILS:
        return details
    cut = len(details) - _MAX_DETAILS
    return f"{details[:_MAX_DETAILS * 3 // 4]} …({cut} characters cut)… {details[-_MAX_DETAILS // 4:]}"


def from_rpc_error(err: grpc.RpcError, address: str = "") -> CtkError:
    """The ctk error for a failed call; ``address`` names the daemon when it cannot be reached."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = _shorten((err.details() if isinstance(err, grpc.Call) else None) or str(err))
    if code == grpc.StatusCode.UNAVAILABLE and re.search(_NO_SERVER, details) and \
            not details.endswith("unavailable"):
        exc: CtkError = not_running(address or "its socket")
    elif code == grpc.StatusCode.FAILED_PRECONDITION and re.search(_INTEGRITY, details):
        exc = IntegrityError(details)
    else:
        cls = _CLASSES.get(code, CtkError) if code is not None else CtkError
        exc = cls(details)
    exc.grpc_code = code.name if code is not None else "UNKNOWN"
    return exc


@contextmanager
def rpc_errors(address: str = "") -> Iterator[None]:
    """Re-raise any ``grpc.RpcError`` raised inside the block as a ctk error (cause kept for --debug)."""
    try:
        yield
    except grpc.RpcError as e:
        raise from_rpc_error(e, address) from e
