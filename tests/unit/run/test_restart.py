"""Restart policies: parsing as Docker does, Docker's decision table, and on_exit's label bookkeeping."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from ctk_run import labels as L
from ctk_run.restart import (
    RestartPolicy,
    clear_unmade_task,
    decide_exit,
    decide_when_reachable,
    on_exit,
    parse_policy,
    should_restart,
)
from ctk_shared.containerd import ExitInfo, TaskInfo
from ctk_shared.errors import NotFound, Timeout, Unavailable, UsageError

# -- parsing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,policy,shown", [
    ("no", RestartPolicy("no"), "no"),
    ("", RestartPolicy("no"), "no"),
    ("always", RestartPolicy("always"), "always"),
    ("unless-stopped", RestartPolicy("unless-stopped"), "unless-stopped"),
    ("on-failure", RestartPolicy("on-failure", 0), "on-failure"),
    ("on-failure:3", RestartPolicy("on-failure", 3), "on-failure:3"),
    ("on-failure:0", RestartPolicy("on-failure", 0), "on-failure"),
    ("on-failure:", RestartPolicy("on-failure", 0), "on-failure"),
    ("always:0", RestartPolicy("always"), "always"),  # Docker accepts a zero count anywhere
])
def test_parse_policy(text, policy, shown):
    assert parse_policy(text) == policy
    assert str(parse_policy(text)) == shown
    assert parse_policy(str(policy)) == policy


@pytest.mark.parametrize("text,why", [
    ("x", "unknown policy"),
    ("Always", "unknown policy"),
    ("on-failure:x", "maximum retry count must be an integer"),
    ("always:3", "maximum retry count can only be used with 'on-failure'"),
    ("unless-stopped:1", "maximum retry count can only be used with 'on-failure'"),
    ("no:1", "maximum retry count can only be used with 'on-failure'"),
    ("on-failure:-1", "maximum retry count cannot be negative"),
    (":3", "no policy provided before colon"),
])
def test_parse_policy_errors(text, why):
    with pytest.raises(UsageError) as e:
        parse_policy(text)
    assert str(e.value).startswith(f"invalid restart policy '{text}'")
    assert why in str(e.value)
    assert e.value.exit_code == 2


# -- decisions ------------------------------------------------------------------------------------------------

ALWAYS, UNLESS, NO = RestartPolicy("always"), RestartPolicy("unless-stopped"), RestartPolicy("no")


@pytest.mark.parametrize("policy", [ALWAYS, UNLESS])
@pytest.mark.parametrize("code", [0, 1, 137])
def test_always_and_unless_stopped_restart_after_any_exit(policy, code):
    assert should_restart(policy, code, 0, False)
    assert should_restart(policy, code, 1000, False)  # no limit


@pytest.mark.parametrize("policy", [ALWAYS, UNLESS, NO, RestartPolicy("on-failure"), RestartPolicy("on-failure", 5)])
@pytest.mark.parametrize("code", [0, 1, 143])
def test_an_explicit_stop_is_never_undone(policy, code):
    assert not should_restart(policy, code, 0, True)


@pytest.mark.parametrize("code", [0, 1, 255])
def test_no_never_restarts(code):
    assert not should_restart(NO, code, 0, False)


def test_on_failure_with_a_maximum():
    p = parse_policy("on-failure:2")
    assert should_restart(p, 1, 0, False)  # first restart
    assert should_restart(p, 1, 1, False)  # second
    assert not should_restart(p, 1, 2, False)  # given up
    assert not should_restart(p, 0, 0, False)  # success: never


def test_on_failure_without_a_maximum():
    p = parse_policy("on-failure")
    assert all(should_restart(p, 2, n, False) for n in (0, 1, 50, 10_000))
    assert not should_restart(p, 0, 0, False)


def test_unknown_policy_name_never_restarts():
    assert not should_restart(RestartPolicy("sometimes"), 1, 0, False)


# -- on_exit --------------------------------------------------------------------------------------------------

class FakeContainers:
    def __init__(self, labels: dict[str, str], fail: Exception | None = None) -> None:
        self.labels = dict(labels)
        self.updates: list[dict[str, str]] = []
        self.fail = fail

    def get(self, cid: str) -> SimpleNamespace:
        if self.fail:
            raise self.fail
        assert cid == "c1"
        return SimpleNamespace(id=cid, labels=dict(self.labels))

    def update_labels(self, cid: str, labels: dict[str, str]) -> None:
        self.updates.append(dict(labels))
        for k, v in labels.items():
            if v:
                self.labels[k] = v
            else:
                self.labels.pop(k, None)


class FakeTasks:
    def __init__(self, exit_status: int | None = 0, wait_error: Exception | None = None,
                 task: TaskInfo | None = None) -> None:
        self.exit_status = exit_status
        self.wait_error = wait_error
        self.task = task
        self.waits: list[tuple[str, float | None]] = []

    def wait(self, cid: str, exec_id: str = "", timeout: float | None = None) -> ExitInfo:
        self.waits.append((cid, timeout))
        if self.wait_error:
            raise self.wait_error
        return ExitInfo(self.exit_status)

    def get(self, cid: str, exec_id: str = "") -> TaskInfo:
        if self.task is None:
            raise NotFound("no task")
        return self.task


def client(labels: dict[str, str], **tasks) -> SimpleNamespace:
    return SimpleNamespace(containers=FakeContainers(labels), tasks=FakeTasks(**tasks))


def labels_for(policy: str, count: int = 0, status: str | None = "running", stopped: bool = False) -> dict[str, str]:
    out = {L.RESTART_POLICY: policy, L.RESTART_COUNT: str(count), L.NAME: "web"}
    if status is not None:
        out[L.RESTART_STATUS] = status
    if stopped:
        out[L.EXPLICITLY_STOPPED] = "true"
    return out


@pytest.mark.parametrize("code", [0, 3])
def test_on_exit_always_counts_and_leaves_the_monitor_running(code):
    c = client(labels_for("always", count=4))
    assert on_exit(c, "c1", code) is True
    labels = c.containers.labels
    assert labels[L.RESTART_COUNT] == "5"
    assert labels[L.RESTART_STATUS] == "running"
    assert L.RESTART_STATUS not in c.containers.updates[0]
    assert labels[L.EXIT_CODE] == str(code)
    assert labels[L.FINISHED_AT][:4].isdigit()
    assert c.tasks.waits == []  # the code was given


def test_on_exit_explicit_stop_sets_the_monitor_to_stopped():
    c = client(labels_for("always", count=2, stopped=True))
    assert on_exit(c, "c1", 143) is False
    assert c.containers.labels[L.RESTART_STATUS] == "stopped"
    assert c.containers.labels[L.RESTART_COUNT] == "2"
    assert c.containers.labels[L.EXIT_CODE] == "143"


def test_on_exit_on_failure_two_retries_then_gives_up():
    c = client(labels_for("on-failure:2", status=None), exit_status=1)
    decisions = [on_exit(c, "c1") for _ in range(3)]
    assert decisions == [True, True, False]
    assert c.containers.labels[L.RESTART_COUNT] == "2"
    assert L.RESTART_STATUS not in c.containers.labels  # never added when it was not there
    assert c.tasks.waits and all(t is not None and 0 < t <= 10 for _, t in c.tasks.waits)  # a short wait


def test_on_exit_on_failure_after_success_does_not_restart():
    c = client(labels_for("on-failure", status="running"), exit_status=0)
    assert on_exit(c, "c1") is False
    assert c.containers.labels[L.RESTART_STATUS] == "stopped"
    assert c.containers.labels[L.EXIT_CODE] == "0"


def test_on_exit_no_policy_and_missing_labels():
    c = client({})
    assert on_exit(c, "c1", 1) is False
    assert c.containers.labels[L.EXIT_CODE] == "1"
    assert L.RESTART_STATUS not in c.containers.labels
    c = client({L.RESTART_POLICY: "bogus", L.RESTART_COUNT: "x", L.RESTART_STATUS: "running"})
    assert on_exit(c, "c1", 1) is False  # a label ctk cannot read: no resurrection on a guess
    assert c.containers.labels[L.RESTART_STATUS] == "stopped"


def test_on_exit_unless_stopped():
    assert on_exit(client(labels_for("unless-stopped")), "c1", 0) is True
    assert on_exit(client(labels_for("unless-stopped", stopped=True)), "c1", 0) is False


def test_on_exit_task_already_deleted_uses_the_recorded_exit_code():
    c = client({**labels_for("on-failure:3"), L.EXIT_CODE: "2"}, wait_error=NotFound("no task"))
    assert on_exit(c, "c1") is True
    # not recorded anywhere: unknown never counts as a failure, and the code is not made up
    c = client(labels_for("on-failure:3"), wait_error=NotFound("no task"))
    assert on_exit(c, "c1") is False
    assert L.EXIT_CODE not in c.containers.labels
    c = client(labels_for("always"), wait_error=NotFound("no task"))
    assert on_exit(c, "c1") is True


def test_on_exit_falls_back_to_the_task_state():
    task = TaskInfo(id="c1", pid=0, status="stopped", exit_status=9)
    c = client(labels_for("on-failure"), wait_error=Unavailable("wait failed"), task=task)
    assert on_exit(c, "c1") is True
    assert c.containers.labels[L.EXIT_CODE] == "9"


def test_on_exit_while_still_running_decides_nothing(capsys):
    c = client(labels_for("on-failure"), wait_error=Timeout("still running"))
    assert on_exit(c, "c1") is False
    assert c.containers.updates == []
    assert "still running" in capsys.readouterr().err


def test_on_exit_never_raises(capsys):
    c = SimpleNamespace(containers=FakeContainers({}, fail=Unavailable("containerd is not running at /x")),
                        tasks=FakeTasks())
    assert on_exit(c, "c1", 1) is False
    assert "containerd is not running" in capsys.readouterr().err
    c = SimpleNamespace(containers=FakeContainers({}, fail=RuntimeError("boom")), tasks=FakeTasks())
    assert on_exit(c, "c1") is False


def test_decide_exit_returns_the_labels_it_decided_on():
    c = client({**labels_for("always"), L.AUTO_REMOVE: "true"})
    restart, labels = decide_exit(c, "c1", 0)
    assert restart is True and labels[L.AUTO_REMOVE] == "true" and labels[L.RESTART_COUNT] == "0"


class _UnmadeTasks:
    """Tasks.Get/Delete as containerd 1.6 answers them for a task a containerd restart left unmade."""

    def __init__(self, get_error: str) -> None:
        self.get_error = get_error
        self.deleted: list[str] = []

    def get(self, cid: str, exec_id: str = "") -> TaskInfo:
        raise NotFound(self.get_error)

    def delete(self, cid: str) -> ExitInfo:
        self.deleted.append(cid)
        raise NotFound("failed to delete task: container not created: not found")  # after reaping it


def test_clear_unmade_task_deletes_only_a_task_the_shim_never_made():
    unmade = SimpleNamespace(tasks=_UnmadeTasks("container not created: not found"))
    assert clear_unmade_task(unmade, "c1") is True  # type: ignore[arg-type]
    assert unmade.tasks.deleted == ["c1"]
    absent = SimpleNamespace(tasks=_UnmadeTasks("no running task found: task c1 not found: not found"))
    assert clear_unmade_task(absent, "c1") is False  # type: ignore[arg-type]
    assert absent.tasks.deleted == []


def test_a_decision_without_containerd_gives_up_at_once_unless_asked_to_wait(tmp_path, capsys):
    import time

    start = time.monotonic()
    assert decide_when_reachable(str(tmp_path / "none.sock"), "default", "c1", retry_for=0) is None
    assert time.monotonic() - start < 5
    assert "containerd is not running" in capsys.readouterr().err
    start = time.monotonic()
    assert decide_when_reachable(str(tmp_path / "none.sock"), "default", "c1", retry_for=1.5) is None
    assert time.monotonic() - start >= 1.0  # it kept trying
