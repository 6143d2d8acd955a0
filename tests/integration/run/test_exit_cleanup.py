"""Issue 17: nothing left running after a container exits (its shim, its logger, its rootfs mount), while
``logs``, ``inspect``, ``start`` and ``rm`` keep working; and log lines lost to a full disk are noted once
space is back, with a warning in ``logs`` and ``inspect``."""
from __future__ import annotations

import time

import pytest

from tests.support.cli import inspect_record as inspect
from tests.support.cli import remove_containers, tool_runner
from tests.support.polling import wait_for
from tests.support.procs import command_lines, serves_container
from tests.support.tmpfs import fill_blocks, small_tmpfs


def leftovers(cid: str) -> list[str]:
    """Processes of this container that outlive it (its shim, whose command line names it, and its logger,
    whose environment does) and mounts under its task directory."""
    found = [f"{pid}: {cmd.strip()}" for pid, cmd in command_lines()
             if serves_container(pid, cmd, cid)]
    with open("/proc/self/mountinfo") as f:
        found += [line.strip() for line in f if cid in line]
    return found


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_an_exited_container_keeps_no_process_or_mount(run, bb, network):
    r = run("run", "-d", "--network", network, "--name", "gone", bb, "sh", "-c", "echo hello; exit 3")
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert wait_for(lambda: inspect(run, "gone")["State"]["Status"] == "exited", timeout=20)
    assert wait_for(lambda: not leftovers(cid), timeout=20), leftovers(cid)
    st = inspect(run, "gone")["State"]
    assert st["ExitCode"] == 3 and st["Pid"] == 0, st
    assert run("ps", "-a", "--format", "{{.Status}}").out.startswith("Exited (3)")
    assert run("logs", "gone").out == "hello\n"
    w = run("wait", "gone")
    assert w.code == 0 and w.out.strip() == "3", (w.out, w.err)
    # start again: it runs, exits, and is released again
    assert run("start", "gone").code == 0
    assert wait_for(lambda: run("logs", "gone").out == "hello\nhello\n", timeout=20)
    assert wait_for(lambda: inspect(run, "gone")["State"]["Status"] == "exited", timeout=20)
    assert wait_for(lambda: not leftovers(cid), timeout=20), leftovers(cid)
    assert run("rm", "gone").code == 0
    assert run("ps", "-a", "-q").lines == []


def test_a_restart_policy_container_keeps_its_shim_while_it_restarts(run, bb):
    """The release is for containers that stay down: one whose policy restarts it is left to the policy."""
    r = run("run", "-d", "--network", "none", "--restart", "on-failure:2", "--name", "rs", bb, "sh", "-c", "exit 1")
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert wait_for(lambda: inspect(run, "rs")["RestartCount"] == 2, timeout=60), inspect(run, "rs")
    assert wait_for(lambda: inspect(run, "rs")["State"]["Status"] == "exited", timeout=30)
    assert wait_for(lambda: not leftovers(cid), timeout=20), leftovers(cid)  # the policy gave up: released


@pytest.fixture
def small_root(tmp_path):
    with small_tmpfs(tmp_path / "small", "size=512k") as small:
        yield small


def test_lines_dropped_on_a_full_disk_are_noted(containerd, ctd, cni_env, bb, small_root):
    run = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=small_root / "data",
                      env=cni_env.env)
    try:
        r = run("run", "-d", "--network", "none", "--name", "chatty", bb, "sh", "-c",
                "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.02; done")
        assert r.code == 0, r.err
        assert wait_for(lambda: "line 5\n" in run("logs", "chatty").out, timeout=20)
        filler = small_root / "filler"
        fill_blocks(filler)
        time.sleep(2)  # lines are dropped meanwhile (the container never blocks)
        during = inspect(run, "chatty")
        assert "lines dropped: no space left on device" in during.get("LogWarning", ""), during.get("LogWarning")
        filler.unlink()
        time.sleep(1.5)
        assert run("stop", "-t", "1", "chatty").code == 0
        logs = run("logs", "chatty")
        marks = [ln for ln in logs.err.splitlines() if ln.startswith("ctk-run-logger: ")]
        assert len(marks) == 1 and marks[0].endswith(" lines dropped: no space left on device"), logs.err[-500:]
        n = int(marks[0].split()[1])
        assert n > 10
        numbers = [int(ln.split()[1]) for ln in logs.out.splitlines() if ln.startswith("line ")]
        assert numbers[-1] - len(numbers) >= n - 5, (numbers[-1], len(numbers), n)  # the gap is what was dropped
        assert "warning:" in logs.err and "lines of this log were dropped: no space left on device" in logs.err
        assert inspect(run, "chatty")["LogWarning"].endswith("lines dropped: no space left on device")
    finally:
        remove_containers(run)
