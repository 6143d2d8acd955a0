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
