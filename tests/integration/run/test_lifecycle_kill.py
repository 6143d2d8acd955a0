"""The CLI killed (SIGKILL) during ``create``, ``start -a`` and ``attach`` leaves nothing half-made: no
container directory without its container, no lease or snapshot of a dead create, and every container that
exists is whole (it starts); an attached container runs on and can be attached again."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from .ptys import PtyRun, attach_and_exit, ctk_argv, ctk_env, status, wait_until

pytestmark = pytest.mark.integration


def test_sigkill_during_create_leaves_nothing_half_made(containerd, ctd, run, bb):
    assert run("create", "-q", "--name", "warm", bb, "true").code == 0  # image pulled and unpacked
    assert run("rm", "warm").code == 0
    env = ctk_env(run)
    cdir = run.data_root / ctd.namespace / "containers"
    for i, delay in enumerate((0, 0.02, 0.05, 0.1, 0.2, 0.3)):
        before = set(os.listdir(cdir))
        p = subprocess.Popen(ctk_argv(containerd, ctd, "create", "-q", "--name", f"k{i}", "-v", "/anon", bb, "true"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the kill lands while the create is under way: once its directory exists, then a little later
        wait_until(lambda b=before, p=p: bool(set(os.listdir(cdir)) - b) or p.poll() is not None, timeout=60,
                   what="the create")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert run("create", "-q", "--name", "after", bb, "true").code == 0  # the next create takes back what is left
    ids = set(run("ps", "-a", "-q", "--no-trunc").lines)
    assert set(os.listdir(cdir)) == ids  # no directory without its container
    dead = [le for le in ctd.leases.list() if le.labels.get("ctk/lease.purpose") == "create"]
    assert dead == []  # the creates' leases were released (by them, or taken back after their death)
    active = {s.name for s in ctd.snapshots("overlayfs").list() if s.kind != "committed"}
    assert active <= ids, active - ids  # no snapshot but the containers' own
    for cid in ids:  # every container that exists is whole
        assert run("start", cid).code == 0, cid
        r = run("wait", cid)
        assert r.out.strip() == "0", (r.code, r.err)


def test_sigkill_of_start_a_leaves_the_container_running_and_whole(containerd, ctd, run, bb):
    assert run("create", "--name", "s", bb, "sh", "-c", "echo up; sleep 600").code == 0
    p = subprocess.Popen(ctk_argv(containerd, ctd, "start", "-a", "s"), env=ctk_env(run), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    assert p.stdout.readline() == b"up\n"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert status(run, "s") == "running"  # as Docker: the container runs on without its client
    assert "up" in run("logs", "s").out
    assert run("stop", "-t", "1", "s").code == 0
    assert status(run, "s") == "exited"
    assert run("start", "s").code == 0 and status(run, "s") == "running"


def test_sigkill_of_attach_leaves_the_container_running_and_attachable(containerd, ctd, run, bb):
    assert run("run", "-dit", "--name", "a", bb, "sh").code == 0
    env = ctk_env(run)
    first = PtyRun(ctk_argv(containerd, ctd, "attach", "a"), env)
    try:
        first.shell_answers("one")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
    finally:
        first.close()
    time.sleep(0.5)
    assert status(run, "a") == "running"  # its shell did not read an end of input
    attach_and_exit(containerd, ctd, run, "a", 7)
