"""A container's health check configuration: the image's ``HEALTHCHECK`` merged with the ``--health-*`` flags.

The shape is Docker's ``Config.Healthcheck`` (durations in nanoseconds)::

    {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 2000000000, "Timeout": 0, "StartPeriod": 0,
     "StartInterval": 0, "Retries": 5}

``Test`` is ``[]`` (inherit the image's), ``["NONE"]`` (disabled), ``["CMD", arg…]`` or
``["CMD-SHELL", command]``; a zero duration or retry count means the default. Merging follows Docker's
daemon: when the user gave any health option, each of their zero fields takes the image's value; otherwise
the image's check is used as it is. The merged check is kept in the container label :data:`LABEL` (JSON), so
``inspect`` shows it and the health runner (health_runner.py) reads it from containerd.

Pure functions; only ``json`` at import (ps and the runner import this).
"""
from __future__ import annotations

import json
import re
from typing import Any

LABEL = "ctk/healthcheck"
SHELL_LABEL = "ctk/shell"  # the image's SHELL (JSON list) when it is not /bin/sh -c: CMD-SHELL probes use it
MAX_LABEL = 3800  # containerd refuses a label over 4096 bytes (key and value)

DEFAULT_INTERVAL = 30.0  # seconds, Docker's defaults
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MIN_DURATION_NS = 1_000_000  # Docker: "… cannot be less than 1ms"

FIELDS = (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start-period"),
          ("StartInterval", "start-interval"))

# as text: compiled (and cached by re) when a duration is parsed, not at every ctk-run start
_GO_DURATION = r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)"
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
       "m": 60_000_000_000, "h": 3_600_000_000_000}


class HealthConfigError(ValueError):
    """A health option that Docker refuses; the message is Docker's wording."""


def parse_duration(flag: str, text: str) -> int:
    """``--health-interval 2s`` → nanoseconds, as Go's ``time.ParseDuration`` reads it (``0`` alone too).
    Negative values and non-zero values under 1 ms are refused, as Docker's CLI and daemon refuse them."""
    s = (text or "").strip()
    if s in ("0", "+0", "-0"):
        return 0
    m = re.fullmatch(_GO_DURATION, s)
    if not m:
        raise HealthConfigError(f'invalid argument "{text}" for "--{flag}" flag: time: invalid duration "{text}"')
    ns = round(sum(float(num) * _NS[unit] for num, unit in re.findall(_PART, m.group(2))))
    if m.group(1) == "-" and ns:
        raise HealthConfigError(f"--{flag} cannot be negative")
    if 0 < ns < MIN_DURATION_NS:
        raise HealthConfigError(f"--{flag} cannot be less than 1ms (got {text})")
    return ns


def from_flags(*, cmd: str | None = None, interval: str | None = None, timeout: str | None = None,
               start_period: str | None = None, start_interval: str | None = None, retries: str | int | None = None,
               disabled: bool = False) -> dict[str, Any] | None:
    """The user's part of the check from the ``run``/``create`` flags; None when no health option was given."""
    given = {"interval": interval, "timeout": timeout, "start-period": start_period,
             "start-interval": start_interval}
    any_given = cmd is not None or retries is not None or any(v is not None for v in given.values())
    if disabled:
        if any_given:
            raise HealthConfigError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not any_given:
        return None
    hc: dict[str, Any] = {"Test": ["CMD-SHELL", cmd] if cmd else []}
    for field, flag in FIELDS:
        text = given[flag]
        hc[field] = parse_duration(f"health-{flag}", text) if text is not None else 0
    count = 0
    if retries is not None:
        try:
            count = int(str(retries).strip())
        except ValueError:
            raise HealthConfigError(f'invalid argument "{retries}" for "--health-retries" flag: '
                                    "strconv.ParseInt: parsing: invalid syntax") from None
        if count < 0:
            raise HealthConfigError("--health-retries cannot be negative")
    hc["Retries"] = count
    return hc


def _clean_image(hc: object) -> dict[str, Any] | None:
    """The image config's ``Healthcheck`` as far as it can be trusted (bytes from a registry): a dict with a
    list of strings as Test and non-negative integers, else None (no check; a bad one is not guessed at)."""
    if not isinstance(hc, dict):
        return None
    test = hc.get("Test")
    if test is not None and not (isinstance(test, list) and all(isinstance(t, str) for t in test)):
        return None
    out: dict[str, Any] = {"Test": list(test or [])}
    for field in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        v = hc.get(field) or 0
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return None
        out[field] = v
    return out


def merge(user: dict[str, Any] | None, image_config: object) -> dict[str, Any] | None:
    """The container's check: Docker's merge of the user's (``from_flags``) with the image's; None when
    there is none, or it is disabled (``["NONE"]``)."""
    image = _clean_image(image_config.get("Healthcheck")) if isinstance(image_config, dict) else None
    if user is None:
        hc = image
    elif image is None:
        hc = dict(user)
    else:
        hc = dict(user)
        if not hc.get("Test"):
            hc["Test"] = image["Test"]
        for field in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not hc.get(field):
                hc[field] = image.get(field, 0)
    if not hc or not runnable(hc):
        return None
    return hc


def runnable(hc: dict[str, Any]) -> bool:
    """A check that probes: ``CMD`` with a program, or ``CMD-SHELL`` with a command (``NONE``, an empty or an
    unknown Test run nothing, as in Docker)."""
    test = hc.get("Test") or []
    return len(test) >= 2 and test[0] in ("CMD", "CMD-SHELL") and bool(test[1])


def command(hc: dict[str, Any], shell: list[str] | None = None) -> list[str]:
    """The probe's argv: ``CMD`` as given; ``CMD-SHELL`` through the image's SHELL (default ``/bin/sh -c``)."""
    test = hc["Test"]
    if test[0] == "CMD":
        return list(test[1:])
    return [*(shell or ["/bin/sh", "-c"]), test[1]]


def shell_from_label(text: str | None) -> list[str] | None:
    try:
        shell = json.loads(text or "null")
    except ValueError:
        return None
    return shell if isinstance(shell, list) and shell and all(isinstance(s, str) for s in shell) else None


def image_shell(image_config: object) -> list[str] | None:
    """The image's SHELL, when set and not the default."""
    shell = image_config.get("Shell") if isinstance(image_config, dict) else None
    if isinstance(shell, list) and shell and all(isinstance(s, str) for s in shell) and shell != ["/bin/sh", "-c"]:
        return shell
    return None


def label_value(hc: dict[str, Any]) -> str:
    text = json.dumps(hc, separators=(",", ":"))
    if len(text) + len(LABEL) > MAX_LABEL:
        raise HealthConfigError(f"the health check is too long ({len(text)} bytes; at most {MAX_LABEL - 60})")
    return text


def from_label(text: str | None) -> dict[str, Any] | None:
    """The check kept in the container label; None when absent or unreadable."""
    if not text:
        return None
    try:
        hc = _clean_image(json.loads(text))
    except ValueError:
        return None
    return hc if hc and runnable(hc) else None


def seconds(hc: dict[str, Any], field: str) -> float:
    """A duration of the check in seconds, with Docker's default for 0."""
    defaults = {"Interval": DEFAULT_INTERVAL, "Timeout": DEFAULT_TIMEOUT, "StartPeriod": DEFAULT_START_PERIOD,
                "StartInterval": DEFAULT_START_INTERVAL}
    ns = hc.get(field) or 0
    return ns / 1e9 if ns else defaults[field]


def retries(hc: dict[str, Any]) -> int:
    return int(hc.get("Retries") or 0) or DEFAULT_RETRIES


def human_duration(ns_or_s: float) -> str:
    """Go's ``Duration.String`` for whole-millisecond values (``30s``, ``1m30s``, ``500ms``), in timeout
    messages (``Health check exceeded timeout (30s)``)."""
    ms = round(ns_or_s * 1000)
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = rest / 1000
    text = f"{s:g}s"
    if h:
        return f"{h}h{m}m{text}"
    return f"{m}m{text}" if m else text
