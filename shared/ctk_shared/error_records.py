"""Errors as JSON records, for tools that answer each other through a pipe (``ctk-net ensure`` → ctk-run).

A tool that runs another reads the other's answer as data: one record ``{"kind", "message", "hint"}`` whose
``kind`` names a class of :mod:`ctk_shared.errors`. The caller rebuilds that class, so it keeps its exit code
and its meaning (``NotFound`` stays ``NotFound``) without reading the other tool's stderr text.
"""
from __future__ import annotations

from typing import Any

from . import errors

ERROR_KEY = "Error"  # the key under which a result stream carries an error record

# the classes a record may name; anything else comes back as the root class
KINDS: dict[str, type[errors.CtkError]] = {cls.__name__: cls for cls in (
    errors.CtkError, errors.UsageError, errors.InvalidArgument, errors.NotFound, errors.AlreadyExists,
    errors.Conflict, errors.Unauthenticated, errors.PermissionDenied, errors.Unavailable,
    errors.IntegrityError, errors.Timeout, errors.Interrupted)}


def to_record(err: errors.CtkError) -> dict[str, Any]:
    """The record of ``err``: its nearest known class, its message and its hint."""
    kind = next((c.__name__ for c in type(err).__mro__ if c.__name__ in KINDS), "CtkError")
    return {"kind": kind, "message": err.message, "hint": err.hint or ""}


def from_record(record: Any, fallback: str = "failed without a message") -> errors.CtkError:
    """The error a record describes; a malformed record is a plain :class:`CtkError` (never a crash)."""
    if not isinstance(record, dict):
        return errors.CtkError(fallback)
    cls = KINDS.get(str(record.get("kind") or ""), errors.CtkError)
    message = record.get("message")
    hint = record.get("hint")
    return cls(str(message) if message else fallback, hint=str(hint) if hint else None)
