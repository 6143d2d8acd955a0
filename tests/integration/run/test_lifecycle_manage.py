"""Changing containers in place: ``pause``/``unpause`` (state in ps and inspect, Docker's refusals), ``rename``
(a taken name refused), ``update`` of limits (seen in the container's own cgroup files) and restart policy,
on running and stopped containers; a bad value changes nothing."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.cli import inspect_record as _inspect

from .ptys import wait_until

pytestmark = pytest.mark.integration

CGROUP_FILES = "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us " \
               "/sys/fs/cgroup/pids/pids.max"


def _limits(run, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = run("exec", name, "cat", *CGROUP_FILES.split())
    assert r.code == 0, r.err
    return r.out.split()


def test_pause_and_unpause(run, bb):
    assert run("run", "-d", "--name", "p", bb, "sleep", "600").code == 0
    r = run("pause", "p")
    assert r.code == 0 and r.out.strip() == "p", r.err
    st = _inspect(run, "p")["State"]
    assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    line = run("ps", "--format", "{{.Names}} {{.Status}}").out.strip()
    assert line.startswith("p Up ") and line.endswith("(Paused)"), line
    r = run("pause", "p")
    assert r.code == 1 and "is already paused" in r.err
    r = run("exec", "p", "true")
    assert r.code != 0 and "paused" in r.err and "unpause" in r.err
    assert run("unpause", "p").code == 0
    assert _inspect(run, "p")["State"]["Status"] == "running"
    r = run("unpause", "p")
    assert r.code == 1 and "is not paused" in r.err
    assert run("exec", "p", "true").code == 0


def test_pause_of_a_stopped_container_and_stop_of_a_paused_one(run, bb):
    assert run("create", "--name", "c", bb, "sleep", "600").code == 0
    r = run("pause", "c")
    assert r.code == 1 and "is not running" in r.err and "Traceback" not in r.err
    r = run("unpause", "c")
    assert r.code == 1 and "is not paused" in r.err
    assert run("run", "-d", "--name", "s", bb, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done").code == 0
    assert run("pause", "s").code == 0
    t0 = time.monotonic()
    assert run("stop", "-t", "5", "s").code == 0
    assert time.monotonic() - t0 < 4  # thawed to take its SIGTERM, not killed after the timeout
    st = _inspect(run, "s")["State"]
    assert (st["Status"], st["ExitCode"]) == ("exited", 0)


def test_rename(run, bb):
    # names that are not hex: "a" or "b" could also be the prefix of a container ID, which lookup accepts
    assert run("run", "-d", "--name", "old", bb, "sleep", "600").code == 0
    assert run("create", "--name", "other", bb, "true").code == 0
    r = run("rename", "old", "other")
    assert r.code != 0 and "already in use" in r.err, r.err
    assert sorted(run("ps", "-a", "--format", "{{.Names}}").lines) == ["old", "other"]
    r = run("rename", "old", "old")
    assert r.code == 2 and "same name" in r.err
    r = run("rename", "old", "bad/name")
    assert r.code == 2 and "invalid container name" in r.err
    assert run("rename", "old", "web").code == 0
    assert sorted(run("ps", "-a", "--format", "{{.Names}}").lines) == ["other", "web"]
    assert _inspect(run, "web")["Name"] == "/web"
    assert run("exec", "web", "true").code == 0
    assert run("inspect", "old").code != 0
    assert run("run", "-d", "--name", "old", bb, "true").code == 0  # the old name is free again


def test_update_limits_of_a_running_container(run, bb):
    assert run("run", "-d", "--name", "u", bb, "sleep", "600").code == 0
    r = run("update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "u")
    assert r.code == 0 and r.out.strip() == "u", r.err
    assert _limits(run, "u") == [str(64 << 20), "50000", "50"]
    for bad in (["--memory", "128m", "--pids-limit", "lots"], ["--memory", "128m", "--cpus", "abc"],
                ["--memory", "1m"], ["--memory", "128m", "--memory-swap", "64m"], ["--restart", "sometimes"],
                ["--cpus", "1000"]):
        r = run("update", *bad, "u")
        assert r.code == 2 and "Traceback" not in r.err, (bad, r.err)
        assert _limits(run, "u") == [str(64 << 20), "50000", "50"], bad  # nothing changed
    r = run("update", "u")
    assert r.code == 2 and "one or more flags" in r.err
    assert run("update", "--memory", "96m", "--memory-swap", "-1", "--cpus", "0", "--pids-limit", "-1", "u").code == 0
    mem, quota, pids = _limits(run, "u")
    assert (mem, quota, pids) == (str(96 << 20), "-1", "max")
    r = run("update", "--memory", "32m", "nosuch")
    assert r.code != 0 and "no such container" in r.err


def test_update_of_a_stopped_container_applies_at_its_next_start(run, bb):
    assert run("create", "--name", "s", bb, "sleep", "600").code == 0
    assert run("update", "--memory", "48m", "--pids-limit", "20", "s").code == 0
    assert run("start", "s").code == 0
    mem, _quota, pids = _limits(run, "s")
    assert (mem, pids) == (str(48 << 20), "20")


def test_a_stopped_restart_always_container_starts_again_at_once(run, bb):
    """``stop`` leaves containerd's restart-monitor label at "stopped", and the monitor kills any task of such a
    container: a ``start`` right after a stop once lost its new task between create and start ("cannot start
    a container that has stopped", half of the tries with a published port, where the create takes longest)."""
    assert run("run", "-d", "--name", "ra", "--restart", "always", "-p", "80", bb, "httpd", "-f", "-p", "80").code == 0
    for _ in range(5):
        assert run("stop", "-t", "0", "ra").code == 0
        r = run("start", "ra")
        assert r.code == 0, r.err
        assert _inspect(run, "ra")["State"]["Status"] == "running"
    time.sleep(1.5)  # a monitor pass (every 1 s here) keeps it running: the label says "running" again
    assert _inspect(run, "ra")["State"]["Status"] == "running"
    assert _inspect(run, "ra")["Config"]["Labels"]["containerd.io/restart.status"] == "running"


def test_update_restart_policy(run, bb):
    assert run("run", "-d", "--name", "r", bb, "sleep", "600").code == 0
    assert run("update", "--restart", "always", "r").code == 0
    assert _inspect(run, "r")["HostConfig"]["RestartPolicy"]["Name"] == "always"
    pid = _inspect(run, "r")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)  # the container's process dies, not by a stop: the policy brings it back
    wait_until(lambda: _inspect(run, "r")["State"]["Status"] == "running"
               and _inspect(run, "r")["State"]["Pid"] not in (0, pid), timeout=30,
               what="the container to come back under its new policy")
    assert run("update", "--restart", "no", "r").code == 0
    assert _inspect(run, "r")["HostConfig"]["RestartPolicy"]["Name"] == "no"
    time.sleep(2)  # containerd's restart monitor (every 1 s here) must not stop it
    assert _inspect(run, "r")["State"]["Status"] == "running"
    assert run("run", "-d", "--rm", "--name", "gone", bb, "sleep", "600").code == 0
    r = run("update", "--restart", "always", "gone")
    assert r.code == 1 and "AutoRemove" in r.err
