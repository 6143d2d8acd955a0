"""What ``ctk-pull prune`` and ``ctk-run prune`` share: Docker's ``--filter until=…|label=…`` and its report.

Docker's prune filters (``docker image prune --filter``, ``docker container prune --filter``):

* ``until=T`` keeps what was created at or after T: T is a Unix timestamp (``1733350000``, fractions allowed),
  an RFC 3339 date or date-time (``2024-12-05``, ``2024-12-05T10:00:00Z``, a local time without a zone), or
  a Go duration before now (``10m``, ``1h30m``, ``24h``);
* ``label=KEY`` / ``label=KEY=VALUE`` keep only what carries the label (with that value); ``label!=KEY`` /
  ``label!=KEY=VALUE`` keep only what does not. Several label filters must all hold.

Any other key is a usage error naming the keys that exist, before anything is removed.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import UsageError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (``1h30m``, ``90s``); None when it is not one."""
    if not text or _DURATION.sub("", text) != "":
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))


def parse_until(text: str, now: float | None = None) -> datetime:
    """The instant ``until=`` names (see the module doc)."""
    now = time.time() if now is None else now
    seconds = _go_duration(text)
    if seconds is not None:
        return datetime.fromtimestamp(now - seconds, UTC)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid filter 'until={text}': not a timestamp, date or duration",
                         hint="until=1733350000, until=2024-12-05T10:00:00Z or until=24h") from None
    return t if t.tzinfo else t.astimezone(UTC)  # no zone: local time, as Docker reads it


@dataclass(frozen=True)
class LabelTest:
    """One ``label=KEY[=VALUE]`` (or ``label!=…``) prune filter: what an object's labels must (not) hold."""

    key: str
    value: str | None  # None: only the key must (not) be there
    negate: bool

    def holds(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels and (self.value is None or labels[self.key] == self.value)
        return present != self.negate


@dataclass(frozen=True)
class PruneFilter:
    """A prune's ``--filter`` values together: what an object must be for the prune to remove it."""

    until: datetime | None = None
    labels: tuple[LabelTest, ...] = field(default=())

    def matches(self, created: datetime | None, labels: Mapping[str, str]) -> bool:
        """True when an object created at ``created`` with ``labels`` may be pruned. With ``until``, an object
        whose creation time is unknown is kept (never removed on a guess)."""
        if self.until is not None and (created is None or created >= self.until):
            return False
        return all(t.holds(labels) for t in self.labels)


def parse_filters(texts: Iterable[str], now: float | None = None) -> PruneFilter:
    """``--filter`` values (repeatable) into one :class:`PruneFilter`."""
    until: datetime | None = None
    tests: list[LabelTest] = []
    for text in texts:
        key, sep, value = text.partition("=")
        negate = key.endswith("!")
        key = key.removesuffix("!")
        if not sep or key not in ("until", "label") or (negate and key == "until"):
            raise UsageError(f"invalid filter {text!r}", hint="valid filters: until=TIME, label=KEY[=VALUE], "
                                                              "label!=KEY[=VALUE]")
        if key == "until":
            until = parse_until(value, now)
            continue
        lkey, has_value, lvalue = value.partition("=")
        if not lkey:
            raise UsageError(f"invalid filter {text!r}: no label key")
        tests.append(LabelTest(lkey, lvalue if has_value else None, negate))
    return PruneFilter(until, tuple(tests))


def reclaimed_line(nbytes: int) -> str:
    """Docker's last line of a prune: ``Total reclaimed space: 12.3MB``."""
    from .output import human_size

    return f"Total reclaimed space: {human_size(nbytes)}"
