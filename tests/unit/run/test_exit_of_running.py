"""lifecycle.exit_of_running: a foreground run whose Wait fails while its task still runs waits again, so it
never lets go of a running container's output (a pure test of the retry rule, with a stand-in task service)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ctk_run import lifecycle
from ctk_shared.containerd.models import ExitInfo, TaskInfo
from ctk_shared.errors import CtkError, NotFound, Unavailable


@dataclass
class Tasks:
    """Waits answer from ``waits`` in turn (an exception is raised); ``get`` answers ``status`` (or raises it)."""

    waits: list[object]
    status: object = "running"
    exit_status: int = 0
    gets: int = 0
    calls: list[str] = field(default_factory=list)

    def wait(self, cid: str) -> ExitInfo:
        self.calls.append("wait")
        got = self.waits.pop(0)
        if isinstance(got, BaseException):
            raise got
        return ExitInfo(int(got), None)  # type: ignore[call-overload]

    def get(self, cid: str) -> TaskInfo:
        self.calls.append("get")
        if isinstance(self.status, BaseException):
            raise self.status
        return TaskInfo(cid, 1, str(self.status), self.exit_status)


@dataclass
class Client:
    tasks: Tasks


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: None)


def test_a_failed_wait_of_a_running_task_is_sent_again(capsys: pytest.CaptureFixture[str]) -> None:
    tasks = Tasks([Unavailable("ttrpc: closed"), Unavailable("ttrpc: closed"), 7])
    assert lifecycle.exit_of_running(Client(tasks), "c" * 64) == 7  # type: ignore[arg-type]
    assert tasks.calls == ["wait", "get", "wait", "get", "wait"]
    assert capsys.readouterr().err.count("waiting again") == 1  # said once


def test_a_task_that_stopped_meanwhile_gives_its_own_exit_status() -> None:
    tasks = Tasks([CtkError("boom")], status="stopped", exit_status=3)
    assert lifecycle.exit_of_running(Client(tasks), "c" * 64) == 3  # type: ignore[arg-type]


def test_a_task_that_is_gone_gives_255() -> None:
    tasks = Tasks([NotFound("no task")], status=NotFound("no task"))
    assert lifecycle.exit_of_running(Client(tasks), "c" * 64) == 255  # type: ignore[arg-type]


def test_waits_that_keep_failing_end_with_255() -> None:
    tasks = Tasks([Unavailable("down")] * (lifecycle.WAIT_AGAIN + 1))
    assert lifecycle.exit_of_running(Client(tasks), "c" * 64) == 255  # type: ignore[arg-type]
    assert tasks.calls.count("wait") == lifecycle.WAIT_AGAIN + 1
