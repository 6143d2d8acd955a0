"""Docker's number formats for resource flags: sizes (``--memory 512m``), CPUs (``--cpus 1.5``), ulimits.

Sizes follow Docker's ``RAMInBytes`` (go-units): binary units b, k, m, g, t, p, case-insensitive, an optional
``i``/``b`` tail (``512MiB``, ``1gb``) and a fractional number (``1.5g``); the result is truncated to bytes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ctk_shared.errors import UsageError

_SIZE = r"(?i)^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$"  # as text: compiled (and cached by re) at the first size
_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

RLIM_INFINITY = 2**64 - 1  # what -1 (unlimited) becomes in an OCI rlimit

# The names ``--ulimit`` accepts (go-units ulimitNameMapping), each an RLIMIT_* of the OCI spec.
ULIMIT_NAMES = (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
    "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
)


def parse_bytes(text: str) -> int:
    """``"512m"`` → 536870912. Raises UsageError("invalid size: '…'") like Docker."""
    m = re.match(_SIZE, text.strip()) if isinstance(text, str) else None
    if not m:
        raise UsageError(f"invalid size: '{text}'")
    number, unit = m.group(1), (m.group(2) or "").lower()
    try:
        value = float(number)
    except ValueError:  # "1.2.3" passes Docker's regex but not its ParseFloat
        raise UsageError(f"invalid size: '{text}'") from None
    return int(value * _UNIT[unit])


def check_cpus(value: float, available: int | None = None) -> float:
    """Docker's range for ``--cpus``: 0.01 up to the CPUs this process may use (0 means no limit)."""
    import os

    n = available or len(os.sched_getaffinity(0))
    if value and not 0.01 <= value <= n:
        raise UsageError(f"range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
    return value


def parse_cpus(text: str) -> float:
    """``"1.5"`` → 1.5. Docker keeps CPUs as nano-CPUs: more than 9 decimals is "too precise"."""
    from fractions import Fraction  # here: fractions and decimal cost every run ~3 ms to import

    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError, AttributeError):
        raise UsageError(f"invalid argument {text!r} for \"--cpus\": failed to parse {text} as a rational number") \
            from None
    if (value * 10**9).denominator != 1:
        raise UsageError(f"invalid argument {text!r} for \"--cpus\": value is too precise")
    if value < 0 or not math.isfinite(float(value)):
        raise UsageError(f"invalid argument {text!r} for \"--cpus\": CPUs must be positive")
    return float(value)


@dataclass(frozen=True)
class Ulimit:
    """One ``--ulimit NAME=SOFT[:HARD]``, as the spec's ``process.rlimits`` entry it becomes."""

    name: str  # "nofile"
    soft: int
    hard: int

    @property
    def oci_type(self) -> str:
        return "RLIMIT_" + self.name.upper()


def parse_ulimit(text: str) -> Ulimit:
    """``"nofile=1024:2048"`` or ``"nproc=512"`` (soft = hard); ``-1`` is unlimited. Docker's messages."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise UsageError(f"invalid ulimit argument: {text}")
    name = name.strip().lower()
    if name not in ULIMIT_NAMES:
        raise UsageError(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    if ":" in hard_s:
        raise UsageError(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise UsageError(f"invalid ulimit argument: {text}") from None
    if soft < -1 or hard < -1:
        raise UsageError(f"invalid ulimit argument: {text}")
    if _unlimited(soft) > _unlimited(hard):
        raise UsageError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return Ulimit(name, soft, hard)


def _unlimited(v: int) -> int:
    return RLIM_INFINITY if v == -1 else v
