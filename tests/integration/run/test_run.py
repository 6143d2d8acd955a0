"""ctk-run against a real containerd: what a Docker user would check first."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


def test_foreground_output_and_exit_code(run, bb):
    r = run("--rm", "-q", bb, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.code == 3
    assert r.out == "out\n" and r.err.endswith("err\n")
    assert run("ps", "-a", "-q").lines == []  # --rm removed it


def test_stdin_with_i(run, bb):
    r = run("--rm", "-i", "-q", bb, "sh", "-c", "cat; echo done", input="piped line\n")
    assert r.code == 0 and r.out == "piped line\ndone\n"


def test_detached_ps_logs_exec_stop_rm(run, bb):
    r = run("-d", "--name", "web", bb, "sh", "-c", "echo started; while true; do sleep 1; done")
    assert r.code == 0 and len(r.out.strip()) == 64
    cid = r.out.strip()
    ps = [json.loads(x) for x in run("ps").lines]
    assert [(p["Names"], p["State"]) for p in ps] == [("web", "running")] and ps[0]["Status"].startswith("Up")
    assert wait_for(lambda: run("logs", "web").out == "started\n")
    ex = run("exec", "web", "sh", "-c", "echo $((6*7)); exit 5")
    assert ex.code == 5 and ex.out == "42\n"
    rm = run("rm", "web")
    assert rm.code == 1 and "running" in rm.err and "-f" in rm.err
    assert run("stop", "-t", "1", "web").lines == ["web"]
    doc = json.loads(run("inspect", cid[:12]).out)[0]
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 137 and doc["Name"] == "/web"
    assert "Exited (137)" in json.loads(run("ps", "-a").lines[0])["Status"]
    assert run("rm", "web").code == 0 and run("ps", "-a", "-q").lines == []


def test_names_are_unique_under_concurrency(containerd, ctd, run, bb, tmp_path):
    assert run("-q", "--rm", bb, "true").code == 0  # image pulled once
    env = run.env
    import os

    procs = [subprocess.Popen(["ctk-run", "--address", containerd.address, "-n", ctd.namespace, "-d", "--name",
                               "same", bb, "sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **env}) for _ in range(4)]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    assert len(ok) == 1, results
    assert all("already in use" in r[2] for r in results if r[0] != 0)


def test_exit_codes_for_failures(run, bb):
    r = run("-q", "--rm", "127.0.0.1:1/nowhere/image:1", "true")
    assert r.code == 125 and "ctk-run: error:" in r.err
    r = run("-q", "--rm", bb, "no-such-command")
    assert r.code == 127, r.err
    r = run("-q", "--rm", "-v", "relative/path:/x", bb, "true")
    assert r.code == 125


def test_user_env_readonly_and_volumes(run, bb, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    r = run("--rm", "-q", "-u", "nobody", "-e", "GREETING=hi", "--read-only", "-v", f"{host}:/data:ro", bb,
            "sh", "-c", "id -u; echo $GREETING; cat /data/in.txt; touch /x 2>/dev/null || echo ro")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["65534", "hi", "from host", "ro"]


def test_restart_always_and_explicit_stop(run, bb):
    r = run("-d", "--name", "flappy", "--restart", "always", bb, "sh", "-c", "echo run; sleep 0.5; exit 1")
    assert r.code == 0, r.err
    assert wait_for(lambda: run("logs", "flappy").out.count("run") >= 3, timeout=30)
    # the count is written by the logger of each run as it exits, so it may trail the log by a moment
    assert wait_for(lambda: json.loads(run("inspect", "flappy").out)[0]["RestartCount"] >= 2, timeout=10)
    doc = json.loads(run("inspect", "flappy").out)[0]
    assert doc["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert run("stop", "-t", "1", "flappy").code == 0
    assert json.loads(run("ps", "-a").lines[0])["State"] == "exited"
    n = run("logs", "flappy").out.count("run")
    time.sleep(3)  # the restart monitor ticks every second in the test daemon
    assert run("logs", "flappy").out.count("run") == n  # an explicit stop is never undone
    assert json.loads(run("ps", "-a").lines[0])["State"] == "exited"


def test_on_failure_gives_up_after_max_retries(run, bb):
    r = run("-d", "--name", "twice", "--restart", "on-failure:2", bb, "sh", "-c", "echo try; exit 2")
    assert r.code == 0, r.err
    assert wait_for(lambda: json.loads(run("inspect", "twice").out)[0]["RestartCount"] == 2, timeout=30)
    time.sleep(3)
    doc = json.loads(run("inspect", "twice").out)[0]
    assert doc["RestartCount"] == 2 and doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 2
    assert run("logs", "twice").out.count("try") == 3


def test_always_container_comes_back_after_containerd_restart(containerd, run, bb):
    assert run("-d", "--name", "survivor", "--restart", "always", bb, "sleep", "300").code == 0
    containerd.restart()
    assert wait_for(lambda: json.loads(run("inspect", "survivor").out)[0]["State"]["Status"] == "running",
                     timeout=30)


def test_detached_rm_removes_the_container_when_it_exits(run, bb):
    r = run("-d", "--rm", "-q", bb, "sh", "-c", "echo bye")
    assert r.code == 0 and len(r.out.strip()) == 64
    assert wait_for(lambda: run("ps", "-a", "-q").lines == [], timeout=15)


def test_ps_shows_containers_made_by_ctr(containerd, ctd, run, bb):
    assert run("--rm", "-q", bb, "true").code == 0  # the image, unpacked, in this namespace
    subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "run", "-d", bb, "from-ctr", "sleep", "30"],
                   check=True, capture_output=True)
    try:
        recs = [json.loads(x) for x in run("ps").lines]
        assert [(r["Names"], r["State"]) for r in recs] == [("from-ctr", "running")]
        assert json.loads(run("inspect", "from-ctr").out)[0]["State"]["Running"] is True
    finally:
        subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "task", "kill", "-s", "SIGKILL",
                        "from-ctr"], capture_output=True)
        time.sleep(0.5)
        subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "task", "rm", "from-ctr"],
                       capture_output=True)
        subprocess.run(["ctr", "-a", containerd.address, "-n", ctd.namespace, "container", "rm", "from-ctr"],
                       capture_output=True)


def test_interactive_tty(containerd, ctd, run, bb, tmp_path):
    """`-it` under a real pseudo-terminal (util-linux `script`): typed input runs, the exit code comes back."""
    import os

    assert run("--rm", "-q", bb, "true").code == 0
    cmd = (f"ctk-run --address {containerd.address} -n {ctd.namespace} --rm -it -q {bb} sh")
    p = subprocess.Popen(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env={**os.environ, **run.env})
    time.sleep(2)
    p.stdin.write(b"echo in$((1+1))side\r")
    p.stdin.flush()
    time.sleep(0.5)
    p.stdin.write(b"exit 3\r")
    p.stdin.flush()
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 3
    assert b"in2side" in out


def test_cli_killed_during_run_d_leaves_nothing_running(containerd, ctd, run, bb, tmp_path):
    import os
    import signal

    assert run("--rm", "-q", bb, "true").code == 0
    for delay in (0.05, 0.15, 0.3):
        p = subprocess.Popen(["ctk-run", "--address", containerd.address, "-n", ctd.namespace, "-d", "-q",
                              "--name", "victim", bb, "sleep", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, **run.env})
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # whatever state it died in, rm -f cleans it up and the name is free again
        run("rm", "-f", "victim")
        assert run("ps", "-a", "-q").lines == []
        assert run("-d", "-q", "--name", "victim", bb, "true").code == 0
        run("rm", "-f", "victim")


def test_create_rm_cycles_leak_nothing(containerd, ctd, run, bb):
    import glob

    assert run("--rm", "-q", bb, "true").code == 0

    def mounts() -> int:
        return sum(1 for line in open("/proc/mounts") if containerd.base_dir.as_posix() in line)

    def loggers() -> int:  # this test's only: their log paths are under its data root
        out = subprocess.run(["pgrep", "-f", f"ctk-run-logger.*{run.env['CTK_DATA_ROOT']}"], capture_output=True,
                             text=True).stdout
        return len(out.split())

    before = (mounts(), len(list(ctd.snapshots().list())), loggers())
    for i in range(100):
        assert run("--rm", "-q", "--network", "none", bb, "true").code == 0, i
    assert wait_for(lambda: (mounts(), len(list(ctd.snapshots().list())), loggers()) == before, timeout=15)
    import os

    cg = [d for d in glob.glob(f"/sys/fs/cgroup/*/{ctd.namespace}/*") if os.path.isdir(d)]
    assert cg == [], cg  # no per-container cgroup left (the namespace's own directory stays, as runc leaves it)


def test_logs_tail_timestamps_since_and_follow(run, bb):
    r = run("-d", "-q", "--name", "talker", bb, "sh", "-c",
            "echo one; echo two >&2; echo three; while [ ! -e /go ]; do sleep 0.1; done; echo four")
    assert r.code == 0
    assert wait_for(lambda: "three" in run("logs", "talker").out)
    logs = run("logs", "talker")
    assert logs.out == "one\nthree\n" and logs.err == "two\n"  # streams kept apart
    last = run("logs", "--tail", "1", "talker")  # the last line of either stream (two pipes: order between them is not fixed)
    assert (last.out + last.err) in ("three\n", "two\n")
    stamped = run("logs", "-t", "talker").out.splitlines()
    assert stamped[0].endswith(" one") and stamped[0][:4].isdigit() and "T" in stamped[0].split()[0]
    assert run("logs", "--since", "1h", "talker").out == "one\nthree\n"
    assert run("logs", "--until", "2000-01-01T00:00:00Z", "talker").out == ""
    # -f follows what comes after it started ("four" only now: a fixed sleep ran out before the checks above on
    # a loaded machine), and returns once the container exits
    got: list = []
    follower = threading.Thread(target=lambda: got.append(run("logs", "-f", "talker", timeout=30)))
    follower.start()
    time.sleep(0.5)  # the follower is reading the log (were it later, it would still print "four" and return)
    assert run("exec", "talker", "touch", "/go").code == 0
    follower.join(timeout=40)
    followed = got[0]
    assert followed.code == 0 and followed.out == "one\nthree\nfour\n"


def _pty_run(argv, env, rows, cols):
    """Start ``argv`` on a new pseudo-terminal of the given size; returns (process, master fd)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    return p, master


def _read_until(master, needle: bytes, timeout=30.0) -> bytes:
    import os
    import select

    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                buf += os.read(master, 4096)
            except OSError:
                break
    assert needle in buf, buf
    return buf


def test_tty_size_follows_the_terminal_in_run_and_exec(containerd, ctd, run, bb):
    """`-it`: the container's terminal starts at our size and follows it on SIGWINCH, for run and exec."""
    import fcntl
    import os
    import signal
    import struct
    import termios

    env = {**os.environ, **run.env}
    base = ["ctk-run", "--address", containerd.address, "-n", ctd.namespace]
    assert run("-d", "-q", "--name", "tty", bb, "sleep", "60").code == 0
    for argv in (base + ["--rm", "-it", "-q", bb, "sh"], base + ["exec", "-it", "tty", "sh"]):
        p, master = _pty_run(argv, env, 33, 101)
        try:
            _read_until(master, b"# ")  # the shell's prompt: it reads from here on
            os.write(master, b"stty size\r")
            _read_until(master, b"33 101")
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            p.send_signal(signal.SIGWINCH)
            time.sleep(0.5)
            os.write(master, b"stty size\r")
            _read_until(master, b"40 120")
            os.write(master, b"exit 4\r")
            assert p.wait(timeout=30) == 4
        finally:
            if p.poll() is None:
                p.kill()
            os.close(master)


def test_init_and_named_volumes(run, bb):
    r = run("--rm", "-q", "--init", bb, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo pid=$$")
    assert r.code == 0, r.err
    first, second = r.out.splitlines()
    assert "init" in first.split()[0] and second != "pid=1"  # tini is PID 1, the command its child
    assert run("--rm", "-q", "-v", "ctkdata:/data", bb, "sh", "-c", "echo kept > /data/f").code == 0
    again = run("--rm", "-q", "-v", "ctkdata:/data:ro", bb, "sh", "-c", "cat /data/f; touch /data/g || echo ro")
    assert again.out.splitlines()[0] == "kept" and again.out.splitlines()[-1] == "ro"


def test_data_root_is_0710_and_logs_0640(run, bb):
    """Container data (logs, volumes, /etc files) is nobody else's: the data root is made 0710, as dockerd
    keeps /var/lib/docker/containers, and the json-file logs stay 0640."""
    import os
    import stat

    r = run("-d", "-q", "-v", "private:/data", bb, "sh", "-c", "echo secret > /data/f; echo logged")
    assert r.code == 0, r.err
    cid = r.out.strip()
    root = run.data_root
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o710
    assert wait_for(lambda: run("logs", cid).out == "logged\n")
    log = json.loads(run("inspect", cid).out)[0]["LogPath"]
    assert log.startswith(str(root)) and stat.S_IMODE(os.stat(log).st_mode) == 0o640
    assert run("--rm", "-q", "-v", "private:/data", bb, "cat", "/data/f").out == "secret\n"
