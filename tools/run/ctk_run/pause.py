"""``pause`` / ``unpause``: freeze and thaw every process of a container (containerd's task Pause/Resume, the
cgroup freezer), with Docker's refusals for a container in the wrong state."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ctk_shared.errors import Conflict

from . import lifecycle

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Container


def pause(client: Client, c: Container) -> None:
    task = lifecycle.task_of(client, c.id)
    if task is not None and task.status in ("paused", "pausing"):
        raise Conflict(f"container {c.id} is already paused")
    if task is None or task.status != "running":
        raise Conflict(f"container {c.id} is not running", hint="only a running container can be paused")
    client.tasks.pause(c.id)


def unpause(client: Client, c: Container) -> None:
    task = lifecycle.task_of(client, c.id)
    if task is None or task.status not in ("paused", "pausing"):
        raise Conflict(f"container {c.id} is not paused")
    client.tasks.resume(c.id)
