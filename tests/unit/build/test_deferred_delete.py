"""A RUN step's container is deleted in a thread while its layer is written (issue 19/20): settle() must wait
for that deletion and report its failure in the building thread, so a layer is never committed over a task that
could not be deleted, and a missing task or record is no failure (it is gone, which is what was wanted)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from ctk_build import runner
from ctk_shared.errors import CtkError, NotFound


class _Store:
    def __init__(self, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.deleted: list[str] = []
        self.fail, self.delay = fail, delay

    def delete(self, cid: str) -> None:
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.deleted.append(cid)


def _client(tasks: _Store, containers: _Store) -> SimpleNamespace:
    return SimpleNamespace(tasks=tasks, containers=containers)


def _defer(client: SimpleNamespace, key: str, cid: str) -> None:
    deletion = runner._Deletion(client, cid)  # type: ignore[arg-type]
    with runner._deleting_lock:
        runner._deleting[key] = deletion
    deletion.thread.start()


def test_settle_waits_for_the_deletion() -> None:
    tasks, containers = _Store(delay=0.3), _Store()
    _defer(_client(tasks, containers), "k1", "c1")
    t0 = time.monotonic()
    runner.settle("k1")
    assert time.monotonic() - t0 >= 0.25
    assert tasks.deleted == ["c1"] and containers.deleted == ["c1"]
    runner.settle("k1")  # settled once: nothing left to wait for
    runner.settle("never-deferred")


def test_a_failed_deletion_is_raised_by_settle() -> None:
    _defer(_client(_Store(fail=CtkError("shim delete failed")), _Store()), "k2", "c2")
    with pytest.raises(CtkError, match="shim delete failed"):
        runner.settle("k2")


def test_what_is_gone_already_is_no_failure() -> None:
    containers = _Store()
    _defer(_client(_Store(fail=NotFound("no task")), containers), "k3", "c3")
    runner.settle("k3")
    assert containers.deleted == ["c3"]
    assert not [t for t in threading.enumerate() if t.name == "ctk-build-delete"]
