"""Issue 17: a container whose first start failed or was cut short is ``Created``, not ``Exited (0)``."""
from __future__ import annotations

from types import SimpleNamespace

from ctk_run import labels as L
from ctk_run.status import state_of

STARTED = "2026-01-01T00:00:00+00:00"


def rec(**labels: str) -> SimpleNamespace:
    return SimpleNamespace(labels=labels)


def task(status: str, exit_status: int = 0) -> SimpleNamespace:
    return SimpleNamespace(status=status, pid=42, exit_status=exit_status, exited_at=None)


def test_never_started_is_created() -> None:
    assert state_of(rec(), None).human() == "Created"


def test_first_start_cut_short_between_task_create_and_start_is_created() -> None:
    c = rec(**{L.STARTED_AT: STARTED, L.NEVER_STARTED: "true"})
    assert state_of(c, task("created")).status == "created"
    assert state_of(c, None).human() == "Created"  # a failed first start deletes its task


def test_a_started_container_is_not_created() -> None:
    assert state_of(rec(**{L.STARTED_AT: STARTED}), None).status == "exited"
    assert state_of(rec(**{L.STARTED_AT: STARTED, L.NEVER_STARTED: "true"}), task("running")).status == "running"
    assert state_of(rec(**{L.STARTED_AT: STARTED}), task("stopped", 3)).human().startswith("Exited (3)")
