"""``ctk-run wait --condition not-running|removed|healthy``: Docker's wait conditions, plus ``healthy`` (ctk's).

``not-running`` (the default) and ``removed`` are the conditions of Docker's wait API and print the exit
code. ``healthy`` is ctk's extension for scripts that need a service ready: it returns (printing nothing)
once the health state says ``healthy``, and fails with one line when the container is, or becomes,
``unhealthy``, exits, is removed, or has no health check. It reads the state file the health runner keeps
(health.py) a few times a second: cheap, and it keeps working across a containerd restart, unlike an event
subscription that would have to be made again.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ctk_shared.errors import Conflict, CtkError, NotFound

from . import health, lifecycle
from . import labels as L
from .healthcheck import LABEL

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Container

CONDITIONS = ("not-running", "removed", "healthy")
POLL = 0.2


def wait(client: Client, c: Container, condition: str) -> int | None:
    """Block until ``condition`` holds; the exit code to print (None for ``healthy``)."""
    if condition == "healthy":
        wait_healthy(client, c)
        return None
    code = lifecycle.wait_exit(client, c)
    if condition == "removed":
        while True:
            try:
                cur = client.containers.get(c.id)
            except NotFound:
                return code
            code = int(cur.labels.get(L.EXIT_CODE, str(code)) or code)
            time.sleep(POLL)
    return code


def wait_healthy(client: Client, c: Container) -> None:
    from .listing import health_state
    from .lookup import display_name
    from .status import state_of

    name = display_name(c)
    log = c.labels.get(L.LOG_PATH)
    if LABEL not in c.labels or not log:
        raise Conflict(f"container {name} has no health check",
                       hint="run it with --health-cmd, or use an image with a HEALTHCHECK")
    while True:
        try:
            cur = client.containers.get(c.id)
        except NotFound:
            raise CtkError(f"container {name} was removed before it was healthy") from None
        st = state_of(cur, lifecycle.task_of(client, c.id))
        if st.status == "running":
            doc = health_state(cur, st) or {}
            status = doc.get("Status")
            if status == health.HEALTHY:
                return
            if status == health.UNHEALTHY:
                raise CtkError(f"container {name} is unhealthy (failing streak {doc.get('FailingStreak', 0)})",
                               hint=f"ctk-run inspect {name} --format '{{{{json .State.Health}}}}'")
            if status == health.UNKNOWN:
                raise CtkError(f"container {name}: {doc.get('Stopped') or 'health checks stopped'}")
        elif st.status in ("exited", "created"):
            raise CtkError(f"container {name} is not running ({st.human()}); it never became healthy"
                           if st.status == "exited" else f"container {name} is not running",
                           hint=f"ctk-run logs {name}")
        time.sleep(POLL)
