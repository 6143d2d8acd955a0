"""Containers with a terminal: ``run -dit``/``-dt`` in the background with their output in ``logs``, ``attach``
with detach keys, ``run -it`` and ``start -ai``, the window size seen by the first process, and no terminal
codes on stderr when nothing is drawn. Keys are typed through a real pseudo-terminal (python's ``pty``)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.support.ptys import read_terminal

from .ptys import PtyRun, attach_and_exit, ctk_argv, ctk_env, status, wait_until

pytestmark = pytest.mark.integration

CTRL_P_Q = b"\x10\x11"


def test_dit_runs_in_the_background_with_its_terminal_output_in_logs(run, bb):
    r = run("run", "-dit", "--name", "sh1", bb, "sh")
    assert r.code == 0, r.err
    assert len(r.out.strip()) == 64
    assert status(run, "sh1") == "running"
    r = run("run", "-dt", "--name", "t1", bb, "sh", "-c", "echo tty=$(tty); echo done")
    assert r.code == 0, r.err
    wait_until(lambda: "done" in run("logs", "t1").out, what="the -dt container's output in logs")
    out = run("logs", "t1").out
    assert "tty=/dev/pts/" in out  # a real terminal, and its output is logged
    r = run("inspect", "t1")
    assert json.loads(r.out)[0]["Config"]["Tty"] is True


def test_attach_types_into_the_terminal_detaches_with_ctrl_p_q_and_returns_the_exit_status(containerd, ctd, run,
                                                                                        bb):
    assert run("run", "-dit", "--name", "sh2", bb, "sh").code == 0
    env = ctk_env(run)
    a = PtyRun(ctk_argv(containerd, ctd, "attach", "sh2"), env)
    try:
        a.wait_raw()
        a.send(b"echo abc$((40+2))\r")
        a.expect(b"abc42")
        a.send(CTRL_P_Q)
        assert a.wait() == 1  # Docker's attach: 1 after the detach keys
        assert b"read escape sequence" in a.out
    finally:
        a.close()
    assert status(run, "sh2") == "running"  # detaching leaves it running, its shell still reading
    assert "abc42" in run("logs", "sh2").out
    attach_and_exit(containerd, ctd, run, "sh2", 3)
    assert run("inspect", "--format", "{{.State.ExitCode}}", "sh2").out.strip() == "3"


def test_run_it_detach_keys_and_reattach(containerd, ctd, run, bb):
    env = ctk_env(run)
    p = PtyRun(ctk_argv(containerd, ctd, "run", "-it", "--detach-keys", "ctrl-a,x", "--name", "k", bb, "sh"), env)
    try:
        p.shell_answers("first")
        p.send(b"\x01x")
        assert p.wait() == 0  # run -it: detached, exit 0
    finally:
        p.close()
    assert status(run, "k") == "running"
    a = PtyRun(ctk_argv(containerd, ctd, "attach", "--detach-keys=ctrl-a,x", "k"), env)
    try:
        a.shell_answers("second")
        a.send(b"\x01y\x01x")  # Ctrl-A then y is no detach: both keys reach the shell
        assert a.wait() == 1
    finally:
        a.close()
    assert status(run, "k") == "running"


def test_run_it_rm_detached_is_removed_when_it_exits(containerd, ctd, run, bb):
    env = ctk_env(run)
    p = PtyRun(ctk_argv(containerd, ctd, "run", "-it", "--rm", "--name", "gone", bb, "sh"), env)
    try:
        p.wait_raw()
        p.send(CTRL_P_Q)
        assert p.wait() == 0
    finally:
        p.close()
    assert status(run, "gone") == "running"
    a = PtyRun(ctk_argv(containerd, ctd, "attach", "gone"), env)
    try:
        a.wait_raw()
        a.send(b"exit 2\r")
        assert a.wait() == 2
    finally:
        a.close()
    wait_until(lambda: run("inspect", "gone").code != 0, what="--rm to remove it after its exit")


def test_bad_detach_keys_are_refused_before_anything_is_made(run, bb):
    r = run("run", "-it", "--detach-keys", "ctrl-pp", "--name", "bad", bb, "sh")
    assert r.code == 125 and "detach keys" in r.err, r.err
    assert "Traceback" not in r.err
    assert run("ps", "-a", "-q").lines == []
    assert run("run", "-dit", "--name", "ok", bb, "sh").code == 0
    r = run("attach", "--detach-keys", "nope", "ok")
    assert r.code == 2 and "detach keys" in r.err, r.err


def test_di_keeps_stdin_open_in_the_background_and_attach_feeds_it(run, bb):
    """-i without -t: containerd's logging binary takes no stdin, so ctk-run gives the task FIFOs and runs the
    logger on them itself; the shell waits on its input with no client attached, and attach feeds it."""
    assert run("run", "-di", "--name", "i", bb, "sh").code == 0
    time.sleep(1.5)
    assert status(run, "i") == "running"  # no end of input while nobody is attached
    r = run("attach", "i", input="echo via-$((6*7))\necho err-line >&2\nexit 5\n", timeout=60)
    assert r.code == 5, r.err
    assert "via-42" in r.out and "err-line" in r.err
    assert "via-42" in run("logs", "i").out
    assert status(run, "i") == "exited"
    cid = run("inspect", "--format", "{{.Id}}", "i").out.strip()

    def loggers() -> str:
        return subprocess.run(["pgrep", "-f", f"ctk-run-logger.*{cid}"], capture_output=True, text=True).stdout

    wait_until(lambda: not loggers(), what="its logger to end")  # nothing of it outlives the container


def test_attach_says_what_it_cannot_do(run, bb):
    assert run("create", "--name", "never", bb, "true").code == 0
    r = run("attach", "never")
    assert r.code != 0 and "cannot attach to a stopped container" in r.err, r.err
    assert run("run", "-d", "--name", "plain", bb, "sh", "-c",
               "for i in 1 2 3 4 5 6 7 8; do sleep 1; echo tick-$i; done; exit 6").code == 0
    r = run("attach", "plain", timeout=60)
    assert "no terminal and no stdin" in r.err, r.err
    assert "tick-8" in r.out  # what comes from now on, until it exits
    assert r.code == 6


def test_dit_with_a_restart_policy_comes_back_with_its_terminal(containerd, ctd, run, bb):
    """containerd's restart monitor cannot make a terminal: ctk's logger restarts such a container itself."""
    assert run("run", "-dit", "--restart", "always", "--name", "r", bb, "sh").code == 0
    pid = json.loads(run("inspect", "r").out)[0]["State"]["Pid"]
    os.kill(pid, 9)
    wait_until(lambda: status(run, "r") == "running"
               and json.loads(run("inspect", "r").out)[0]["State"]["Pid"] not in (0, pid), timeout=30,
               what="the container to come back")
    assert json.loads(run("inspect", "r").out)[0]["RestartCount"] == 1
    a = PtyRun(ctk_argv(containerd, ctd, "attach", "r"), ctk_env(run))
    try:
        a.shell_answers("back")  # its new shell has a terminal and reads the same input FIFO
        a.send(CTRL_P_Q)
        assert a.wait() == 1
    finally:
        a.close()
    assert run("stop", "-t", "1", "r").code == 0
    time.sleep(2)
    assert status(run, "r") == "exited"  # an explicit stop is never undone


def test_window_size_is_set_before_the_first_process_runs(containerd, ctd, run, bb):
    env = ctk_env(run)
    p = PtyRun(ctk_argv(containerd, ctd, "run", "-it", "--name", "sz", bb, "busybox", "stty", "size"), env, rows=33, cols=97)
    try:
        assert p.wait() == 0
        assert b"33 97" in p.out, p.out
    finally:
        p.close()
    assert run("run", "-d", "--name", "ex", bb, "sleep", "600").code == 0
    for _ in range(3):  # the race lost before: the size arrived after stty had asked
        e = PtyRun(ctk_argv(containerd, ctd, "exec", "-it", "ex", "busybox", "stty", "size"), env, rows=41, cols=123)
        try:
            assert e.wait() == 0
            assert b"41 123" in e.out, e.out
        finally:
            e.close()


def test_create_then_start_ai_and_start_a(containerd, ctd, run, bb):
    assert run("create", "-it", "--name", "c1", bb, "sh").code == 0
    assert status(run, "c1") == "created"
    p = PtyRun(ctk_argv(containerd, ctd, "start", "-ai", "c1"), ctk_env(run))
    try:
        p.shell_answers("in", "exit 4")
        assert p.wait() == 4
    finally:
        p.close()
    assert run("create", "--name", "w", bb, "sh", "-c", "echo from-w; echo to-err >&2; exit 5").code == 0
    r = run("start", "-a", "w")
    assert r.code == 5
    assert r.out == "from-w\n" and "to-err" in r.err
    assert status(run, "w") == "exited"
    r = run("start", "-a", "w", "c1")
    assert r.code == 2 and "multiple containers" in r.err


def test_no_terminal_codes_on_stderr_when_nothing_is_drawn(containerd, ctd, run, bb, tmp_path):
    import pty

    assert run("run", "-q", "--name", "warm", bb, "true").code == 0  # the image is here: nothing to pull
    master, slave = pty.openpty()
    try:
        p = subprocess.run(ctk_argv(containerd, ctd, "run", "--rm", bb, "echo", "hi"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=slave, env=ctk_env(run), timeout=120)
        os.close(slave)
        slave = -1
        err = read_terminal(master)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0 and p.stdout == b"hi\n"
    assert b"\x1b[" not in err, err
