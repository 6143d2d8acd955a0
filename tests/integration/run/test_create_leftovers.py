"""A ``create`` killed between making its lock file (under a temp name) and moving it into place leaves
``<container dir>/.creating.<owner>.tmp`` and no ``.creating``: the next create takes that directory back once
the owner is certainly gone, and never the directory of a create that still runs."""
from __future__ import annotations

import os
import subprocess

import pytest
from ctk_shared.containerd import owners

pytestmark = pytest.mark.integration


def _left_by(cdir, pid: int, start: str) -> None:
    """A container directory as a create with this pid and start time leaves it when killed after making the
    temp lock file (its /etc files are already written)."""
    cdir.mkdir(parents=True)
    (cdir / "hosts").write_text("127.0.0.1 localhost\n")
    me = owners.owner_labels()
    name = ".".join([".creating", str(pid), start, me[owners.OWNER_PIDNS], me[owners.OWNER_BOOT], "tmp"])
    (cdir / name).write_bytes(b"")


def test_a_create_killed_before_its_lock_was_in_place_is_taken_back(ctd, run, bb):
    assert run("create", "-q", "--name", "first", bb, "true").code == 0  # the namespace's directories exist
    containers = run.data_root / ctd.namespace / "containers"
    victim = subprocess.Popen(["sleep", "60"])
    start = owners._start_ticks(victim.pid) or ""  # as owner_labels() records it
    victim.kill()
    victim.wait()  # its pid is free now (or, reused, belongs to a process started at another time)
    dead, live = containers / ("d" * 64), containers / ("e" * 64)
    _left_by(dead, victim.pid, start)
    me = owners.owner_labels()
    _left_by(live, os.getpid(), me[owners.OWNER_START])  # this process: a create that still runs
    assert run("create", "-q", "--name", "after", bb, "true").code == 0
    assert not dead.exists()  # no directory without its container
    assert live.exists()  # a live create's directory is never taken
    assert set(os.listdir(containers)) == set(run("ps", "-a", "-q", "--no-trunc").lines) | {live.name}
