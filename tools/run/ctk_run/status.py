"""A container's state as Docker words it (``Up 3 minutes``, ``Exited (0) 2 seconds ago``,
``Restarting (1) 5 seconds ago``, ``Created``), from the record's labels and its task, if any."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctk_shared.output import human_duration_ago

from . import labels as L

if TYPE_CHECKING:
    from ctk_shared.containerd import Container


@dataclass(frozen=True)
class State:
    """A container's state as Docker's ``State`` has it, from the record's labels and its task."""

    status: str  # Docker's State.Status: created | running | restarting | exited | paused
    running: bool
    pid: int
    exit_code: int
    started_at: datetime | None
    finished_at: datetime | None
    restart_count: int

    def human(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        if self.status in ("running", "paused"):
            up = "Up " + human_duration_ago((now - self.started_at).total_seconds()).removesuffix(" ago") \
                if self.started_at else "Up"
            return up + " (Paused)" if self.status == "paused" else up
        if self.status in ("exited", "restarting"):
            ago = human_duration_ago((now - self.finished_at).total_seconds()) if self.finished_at else ""
            word = "Restarting" if self.status == "restarting" else "Exited"
            return f"{word} ({self.exit_code}) {ago}".rstrip()
        return "Created"


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def state_of(c: Container, task: Any | None) -> State:
    """``task`` is the TaskInfo from ``tasks.list()``/``tasks.get()``, or None when there is no task."""
    count = int(c.labels.get(L.RESTART_COUNT, "0") or 0)
    wants_running = c.labels.get(L.RESTART_STATUS) == "running"
    started = _time(c.labels.get(L.STARTED_AT))
    exit_code = int(c.labels.get(L.EXIT_CODE, "0") or 0)
    finished = _time(c.labels.get(L.FINISHED_AT))
    if task is not None and task.status in ("running", "pausing"):
        return State("running", True, task.pid, 0, started, None, count)
    if task is not None and task.status == "paused":
        return State("paused", True, task.pid, 0, started, None, count)
    if task is not None and task.status == "stopped":
        exit_code = task.exit_status
        finished = task.exited_at or finished
    elif task is None and not c.labels.get(L.STARTED_AT):
        return State("created", False, 0, 0, None, None, count)
    if (task is None or task.status in ("created", "unknown")) and c.labels.get(L.NEVER_STARTED) == "true":
        return State("created", False, 0, 0, None, None, count)  # its first start failed or was cut short
    if wants_running and c.labels.get(L.EXPLICITLY_STOPPED) != "true":
        return State("restarting", False, 0, exit_code, started, finished, count)
    return State("exited", False, 0, exit_code, started, finished, count)
