"""Repeated ``KEY=VALUE`` flag values, parsed the same way in every tool (click-free, so a tool's logic can
check them: docs/CONVENTIONS.md §7)."""
from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import UsageError


def key_values(items: Iterable[str], flag: str = "--label", *, bare: str = "empty") -> dict[str, str]:
    """Repeated ``KEY=VALUE`` flag values (``--label``, ``-o``, ``--build-arg``) as a dict; a later KEY wins.

    ``bare`` says what ``KEY`` alone means, as Docker has it per flag: ``"empty"`` an empty value (labels),
    ``"env"`` the value of that variable in our environment, left out when unset (build args), ``"error"``
    refused (driver options)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or (not eq and bare == "error"):
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        if eq or bare == "empty":
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out
