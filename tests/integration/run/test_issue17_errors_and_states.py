"""Issue 17: errors that are never "unexpected X" (binary files, a symlink loop, long names, a full disk), and
containers that never started showing ``Created``."""
from __future__ import annotations

import json
import tarfile

import pytest

from tests.support.cli import Result, run_tool, tool_runner
from tests.support.tmpfs import fill_blocks, small_tmpfs


def one_error(r: Result, tool: str, code: int, *needles: str) -> None:
    """Exit ``code``; stderr is one ``error:`` line (plus at most one hint line) holding each needle."""
    lines = r.err.strip().splitlines()
    assert r.code == code, r.err
    assert 1 <= len(lines) <= 2 and lines[0].startswith(f"{tool}: error: "), r.err
    assert len(lines) == 1 or lines[1].startswith(f"{tool}: hint: "), r.err
    assert "unexpected" not in r.err and "Traceback" not in r.err, r.err
    for n in needles:
        assert n in lines[0], r.err


def test_binary_auth_config_toml_and_env_file(containerd, ctd, bb, tmp_path):
    def go(tool: str, *args: str, env: dict[str, str] | None = None) -> Result:
        return run_tool(tool, *args, address=containerd.address, namespace=ctd.namespace,
                        env={"CTK_DATA_ROOT": str(tmp_path / "data"), **(env or {})})

    binary = b"\xff\xfe\x00\x81binary\n"
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_bytes(binary)
    one_error(go("ctk-pull", "logout", "localhost:1", env={"DOCKER_CONFIG": str(tmp_path / "dc")}), "ctk-pull", 1,
              str(tmp_path / "dc" / "config.json"))
    (tmp_path / "ctk.toml").write_bytes(binary)
    one_error(go("ctk-run", "ps", env={"CTK_CONFIG": str(tmp_path / "ctk.toml")}), "ctk-run", 2,
              str(tmp_path / "ctk.toml"))
    (tmp_path / "env").write_bytes(b"A=1\n" + binary)
    one_error(go("ctk-run", "run", "--rm", "--env-file", str(tmp_path / "env"), bb, "true"), "ctk-run", 125,
              str(tmp_path / "env"))
    long_path = "/tmp/" + "x" * 300
    one_error(go("ctk-run", "run", "--rm", "--env-file", long_path, bb, "true"), "ctk-run", 125,
              "File name too long")


def test_symlink_loop_in_load(containerd, ctd, tmp_path):
    arc = tmp_path / "loop.tar"
    with tarfile.open(arc, "w") as t:
        for name, target in (("manifest.json", "a"), ("a", "manifest.json")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)
    r = run_tool("ctk-pull", "load", "-i", str(arc), address=containerd.address, namespace=ctd.namespace)
    one_error(r, "ctk-pull", 1, "manifest.json", "symbolic links")


def test_long_container_and_network_names(run, bb):
    name = "a" * 300
    one_error(run("create", "--name", name, bb, "true"), "ctk-run", 125, "300 characters")
    one_error(run("create", name, tool="ctk-net"), "ctk-net", 2, "invalid network name")
    assert run("ps", "-a", "-q").lines == []


@pytest.fixture
def small_root(tmp_path):
    with small_tmpfs(tmp_path / "small", "size=64k,nr_inodes=256") as small:
        yield small


def fill(d) -> None:
    """Fill the filesystem at ``d``: its blocks, then its inodes."""
    fill_blocks(d / "filler")
    try:
        for i in range(1000):
            (d / f"f{i}").touch()
    except OSError:
        pass


def test_run_and_exec_on_a_full_data_root(containerd, ctd, bb, small_root, cni_env):
    run = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=small_root / "d",
                      env=cni_env.env)
    try:
        assert run("run", "-d", "--name", "up", "--network", "none", bb, "sleep", "600").code == 0
        fill(small_root)
        one_error(run("run", "--rm", "--network", "none", bb, "true"), "ctk-run", 125, "no space left on device")
        # exec makes its FIFOs under the data root
        one_error(run("exec", "up", "echo", "hi"), "ctk-run", 125, "no space left on device", str(small_root))
    finally:
        for f in small_root.glob("f*"):
            f.unlink()
        run("rm", "-f", "up")


def test_created_states(run, bb):
    cid = run("create", bb, "true").out.strip()
    assert cid
    rec = json.loads(run("ps", "-a", "--format", "json", "--filter", f"id={cid}").lines[0])
    assert (rec["Status"], rec["State"]) == ("Created", "created")
    assert json.loads(run("inspect", cid).out)[0]["State"]["Status"] == "created"
    # a first start that fails (no such command): still Created, as in Docker
    r = run("run", "-d", "--name", "nocmd", bb, "/nonexistent")
    assert r.code == 127, r.err
    rec = json.loads(run("ps", "-a", "--format", "json", "--filter", "name=nocmd").lines[0])
    assert (rec["Status"], rec["State"]) == ("Created", "created")
    assert json.loads(run("inspect", "nocmd").out)[0]["State"]["Status"] == "created"
    # a later successful start makes it a normal container again
    assert run("start", cid).code == 0
    assert run("wait", cid).out.strip() == "0"
    rec = json.loads(run("ps", "-a", "--format", "json", "--filter", f"id={cid}").lines[0])
    assert rec["Status"].startswith("Exited (0)"), rec


def test_restart_count_and_stop_after_a_containerd_restart(containerd, run, bb):
    from tests.support.polling import wait_for

    def count() -> int:
        return int(json.loads(run("inspect", "flappy").out)[0]["RestartCount"])

    r = run("-d", "--name", "flappy", "--restart", "always", bb, "sh", "-c", "echo run; sleep 1; exit 1")
    assert r.code == 0, r.err
    assert wait_for(lambda: count() >= 1, timeout=30)
    containerd.restart()
    before = count()
    assert wait_for(lambda: count() > before, timeout=60), (before, json.loads(run("inspect", "flappy").out))
    # the first stop after the restart used to fail: "failed to delete task: ttrpc: closed"
    r = run("stop", "-t", "1", "flappy")
    assert r.code == 0, r.err
    assert json.loads(run("inspect", "flappy").out)[0]["State"]["Status"] == "exited"


def test_an_exit_while_containerd_is_down_is_counted_and_restarted(containerd, run, bb):
    """The container's process dies while containerd is stopped: its logger cannot record the exit then, and
    used to give up at once, so RestartCount stayed 0 although the task came back. It now waits for
    containerd (restart.decide_when_reachable)."""
    import os
    import signal
    import time

    from tests.support.polling import wait_for

    def state() -> dict[str, object]:
        return dict(json.loads(run("inspect", "downed").out)[0])

    r = run("-d", "--name", "downed", "--restart", "always", bb, "sleep", "1000")
    assert r.code == 0, r.err
    pid = state()["State"]["Pid"]  # type: ignore[index]
    assert isinstance(pid, int) and pid > 0
    containerd.stop_daemon()
    try:
        os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)  # the logger sees the exit and finds nobody to tell
    finally:
        containerd.start()
    assert wait_for(lambda: state()["RestartCount"] == 1, timeout=30), state()
    assert wait_for(lambda: state()["State"]["Running"], timeout=30), state()  # type: ignore[index]
    r = run("stop", "-t", "1", "downed")
    assert r.code == 0, r.err


def test_a_restart_cut_by_a_containerd_restart_still_happens(containerd, ctd, run, bb, tmp_path):
    """containerd stops while its restart monitor creates the new task (the shim is started and waits for
    the logger): containerd 1.6 comes back holding a task the shim never made ("container not created"),
    and its monitor's Create then fails with "already exists" every second, for good. This was the CI
    failure of test_restart_count_and_stop_after_a_containerd_restart; the logger's watch child now clears
    that task (restart.watch_restart). The window is made wide by a logger that is slow to start once."""
    import sys
    import time
    from pathlib import Path
    from urllib.parse import urlsplit

    from tests.support.polling import wait_for

    def count() -> int:
        return int(json.loads(run("inspect", "cut").out)[0]["RestartCount"])

    def state() -> dict[str, object]:
        return dict(json.loads(run("inspect", "cut").out)[0]["State"])

    r = run("-d", "--name", "cut", "--restart", "always", bb, "sh", "-c", "sleep 2; exit 3")
    assert r.code == 0, r.err
    cid = json.loads(run("inspect", "cut").out)[0]["Id"]
    marker, slow = tmp_path / "slow-logger-ran", tmp_path / "slow-logger"
    real = Path(sys.executable).parent / "ctk-run-logger"
    slow.write_text(f"#!/bin/sh\nif [ ! -e {marker} ]; then : > {marker}; /bin/sleep 3; fi\nexec {real} \"$@\"\n")
    slow.chmod(0o755)
    uri = ctd.containers.get(cid).labels["containerd.io/restart.loguri"]
    ctd.containers.update_labels(cid, {"containerd.io/restart.loguri": f"binary://{slow}?{urlsplit(uri).query}"})
    assert wait_for(marker.exists, timeout=30)  # the monitor's Create waits for this logger now
    time.sleep(0.5)
    containerd.restart()
    # running again (the count alone could move for the exit before the restart, decided late)
    assert wait_for(lambda: state()["Running"], timeout=30), state()
    before = count()
    assert wait_for(lambda: count() > before, timeout=30), state()
    r = run("stop", "-t", "1", "cut")
    assert r.code == 0, r.err
    assert json.loads(run("inspect", "cut").out)[0]["State"]["Status"] == "exited"



def test_start_clears_a_task_a_containerd_restart_left_unmade(containerd, ctd, run, bb, tmp_path):
    """A task whose creation a containerd restart cut (here made by containerd's monitor, through a logger
    that is slow to start once): containerd 1.6 comes back holding a task its shim never made, and
    ``ctk-run start`` used to fail with "already exists" until containerd restarted again."""
    import sys
    from pathlib import Path

    from tests.support.polling import wait_for

    assert run("create", "--name", "unmade", bb, "sh", "-c", "echo up; sleep 1000").code == 0
    assert run("start", "unmade").code == 0 and run("stop", "-t", "0", "unmade").code == 0
    c = ctd.containers.get(json.loads(run("inspect", "unmade").out)[0]["Id"])
    marker, slow = tmp_path / "slow-logger-ran", tmp_path / "slow-logger"
    real = Path(sys.executable).parent / "ctk-run-logger"
    slow.write_text(f"#!/bin/sh\nif [ ! -e {marker} ]; then : > {marker}; /bin/sleep 4; fi\nexec {real} \"$@\"\n")
    slow.chmod(0o755)
    query = "log=" + c.labels["ctk/log.path"]
    ctd.containers.update_labels(c.id, {"containerd.io/restart.status": "running",  # the monitor creates a task
                                        "containerd.io/restart.loguri": f"binary://{slow}?{query}"})
    assert wait_for(marker.exists, timeout=30)
    containerd.restart()
    ctd.containers.update_labels(c.id, {"containerd.io/restart.status": ""})  # the monitor leaves it alone now
    client = containerd.client(ctd.namespace)
    try:
        try:
            client.tasks.get(c.id)
            unmade = False
        except Exception as e:  # noqa: BLE001
            unmade = "not created" in str(e)
    finally:
        client.close()
    assert unmade  # the state this test is about
    r = run("start", "unmade")
    assert r.code == 0, r.err
    assert wait_for(lambda: json.loads(run("inspect", "unmade").out)[0]["State"]["Running"], timeout=20)
