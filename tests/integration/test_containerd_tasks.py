"""Contract test: tasks, events, container updates and task IO (``ctk_shared.taskio``) against a live containerd.

Each test pulls the busybox test image into its own namespace, makes container records whose snapshot (key =
container id, parent = the image's top chain id) is prepared under a lease and then rooted by the record, and
runs real runc containers. Everything is deleted at the end: tasks, containers, snapshots.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ctk_shared import connect, reference
from ctk_shared.config import GlobalOptions
from ctk_shared.containerd import Client, Container, Mount
from ctk_shared.containerd.containers import RUNC_OPTIONS_TYPE_URL, runc_options
from ctk_shared.errors import CtkError, NotFound, Timeout
from ctk_shared.images import load_local
from ctk_shared.pull import pull
from ctk_shared.taskio import FifoSet, copy_output

pytestmark = pytest.mark.integration

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE"]
DEVICES = [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, -1), (5, 2)]  # notes §2.2
RUNC_ROOT = "/run/containerd/runc"  # the runc shim's default --root: <root>/<namespace>/<id>
WAIT = 20.0  # seconds: generous upper bound for any single container to finish


def oci_spec(namespace: str, id: str, args: list[str], *, terminal: bool = False) -> dict:
    """A minimal runnable spec, as ``ctr run`` would make it (oci.WithDefaultSpec + default unix devices)."""
    env = [PATH_ENV] + (["TERM=xterm"] if terminal else [])
    devices = [{"allow": False, "access": "rwm"}] + [
        {"allow": True, "type": "c", "major": ma, **({"minor": mi} if mi >= 0 else {}), "access": "rwm"}
        for ma, mi in DEVICES]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args, "env": env, "cwd": "/",
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "cgroupsPath": f"/{namespace}/{id}",
            "resources": {"devices": devices},
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def exec_process(args: list[str], *, terminal: bool = False) -> dict:
    return {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args, "env": [PATH_ENV], "cwd": "/",
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS}, "noNewPrivileges": True}


@pytest.fixture
def top_chain_id(ctd: Client, test_images) -> str:
    ref = reference.parse(test_images["busybox"].ref)
    pull(ctd, connect.registry(ref.domain, GlobalOptions()), ref)
    return load_local(ctd, str(ref)).chain_ids[-1]


MakeBox = Callable[..., list[Mount]]


@pytest.fixture
def box(ctd: Client, top_chain_id: str) -> Iterator[MakeBox]:
    """``box(id, args, terminal=False, runtime_options=None, labels=None) -> rootfs mounts``: a container record
    with its own snapshot. Teardown kills and deletes tasks, then deletes containers and snapshots."""
    made: list[str] = []

    def make(id: str, args: list[str], *, terminal: bool = False, runtime_options=None,
             labels: dict[str, str] | None = None) -> list[Mount]:
        if os.path.exists(f"{RUNC_ROOT}/{ctd.namespace}/{id}"):  # left by an interrupted run (runc state is global)
            subprocess.run(["runc", "--root", f"{RUNC_ROOT}/{ctd.namespace}", "delete", "-f", id], check=False,
                           capture_output=True)
        spec = json.dumps(oci_spec(ctd.namespace, id, args, terminal=terminal)).encode()
        with ctd.lease_scope() as leased:  # the snapshot is garbage until the container record roots it
            leased.snapshots().prepare(id, top_chain_id)
            ctd.containers.create(Container(id, image="busybox", labels=labels or {}, spec=spec,
                                            snapshotter="overlayfs", snapshot_key=id),
                                  runtime_options=runtime_options)
        made.append(id)
        return ctd.snapshots().mounts(id)

    yield make
    for id in made:
        try:
            ctd.tasks.kill(id, signal.SIGKILL, all=True)
            ctd.tasks.wait(id, timeout=WAIT)
        except CtkError:
            pass
        for cleanup in (ctd.tasks.delete, ctd.containers.delete, ctd.snapshots().remove):
            try:
                cleanup(id)
            except CtkError:
                pass
    # runc removes each container's cgroup and state, not their /<namespace> parents
    for parent in [*glob.glob(f"/sys/fs/cgroup/*/{ctd.namespace}"), f"{RUNC_ROOT}/{ctd.namespace}"]:
        try:
            os.rmdir(parent)
        except OSError:
            pass
    assert ctd.tasks.list() == [] and ctd.containers.list() == []


def run_with_fifos(ctd: Client, id: str, mounts: list[Mount], fifo_dir: Path) -> tuple[bytes, bytes, int]:
    """Create+start with FIFO IO; collect stdout and stderr until EOF; return them with the exit status."""
    out, err = bytearray(), bytearray()
    with FifoSet(str(fifo_dir), id, stdin=False, terminal=False) as io:
        assert stat.S_ISFIFO(os.stat(io.stdout_path).st_mode) and io.stdin_path == "" and io.stdin_fd is None
        pid = ctd.tasks.create(id, mounts, **io.uris())
        assert pid > 0
        waiter = ctd.tasks.wait_async(id)  # before start: cannot miss the exit
        assert ctd.tasks.start(id) == pid
        copy_output({io.stdout_fd: out.extend, io.stderr_fd: err.extend})
        status = waiter.result(timeout=WAIT).exit_status
        fifo_subdir = io.dir
    assert not os.path.exists(fifo_subdir)  # close() removed the FIFO directory
    return bytes(out), bytes(err), status


def test_fifo_io_wait_get_delete(ctd, box, tmp_path):
    mounts = box("hello", ["sh", "-c", "echo hello; echo oops >&2"])
    out, err, status = run_with_fifos(ctd, "hello", mounts, tmp_path)
    assert (out, err, status) == (b"hello\n", b"oops\n", 0)
    info = ctd.tasks.get("hello")
    assert (info.id, info.container_id, info.status, info.exit_status) == ("hello", "hello", "stopped", 0)
    assert info.exited_at is not None and info.stdout.endswith("hello-stdout") and not info.terminal
    assert ctd.tasks.wait("hello").exit_status == 0  # an exited process answers at once
    gone = ctd.tasks.delete("hello")
    assert gone.exit_status == 0 and gone.pid > 0 and gone.exited_at is not None
    with pytest.raises(NotFound):
        ctd.tasks.get("hello")

    mounts = box("three", ["sh", "-c", "exit 3"])
    pid = ctd.tasks.create("three", mounts, options=runc_options())  # task-level runtime options are accepted
    created = ctd.tasks.get("three")
    assert (created.status, created.pid, created.exited_at) == ("created", pid, None)
    ctd.tasks.start("three")
    assert ctd.tasks.wait("three", timeout=WAIT).exit_status == 3
    assert ctd.tasks.delete("three").exit_status == 3


def test_file_uri_gets_both_streams(ctd, box, tmp_path):
    log = tmp_path / "logs" / "out.log"  # the shim creates parent directories
    # containerd 1.6 shim race (pkg/process/io.go copyPipes): the stdout copier closes the shared file at its
    # EOF without the stderr copier's reference count, so stderr written right before exit can be lost
    # ("error copying stderr" in the daemon log). Output some time before the exit is safe.
    mounts = box("filelog", ["sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 0.3"])
    ctd.tasks.create("filelog", mounts, stdout=f"file://{log}", stderr=f"file://{log}")
    ctd.tasks.start("filelog")
    assert ctd.tasks.wait("filelog", timeout=WAIT).exit_status == 0
    ctd.tasks.delete("filelog")
    assert sorted(log.read_text().splitlines()) == ["to-stderr", "to-stdout"]


LOGGER = """\
#!{python}
# a shim logging binary: stdout on fd 3, stderr on fd 4, ready pipe on fd 5
import os, signal, sys, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the shim sends SIGTERM on delete: finish draining instead
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = os.open(args["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(out, ("env %s %s\\n" % (os.environ.get("CONTAINER_ID"), os.environ.get("CONTAINER_NAMESPACE"))).encode())
def pump(fd, name):
    buf = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        buf += data
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            os.write(out, name + b" " + line + b"\\n")
threads = [threading.Thread(target=pump, args=(3, b"stdout")), threading.Thread(target=pump, args=(4, b"stderr"))]
for t in threads:
    t.start()
os.close(5)  # ready
for t in threads:
    t.join()
"""


def test_binary_uri_runs_logger(ctd, box, tmp_path):
    logger = tmp_path / "logger.py"
    logger.write_text(LOGGER.format(python=sys.executable))
    logger.chmod(0o755)
    log = tmp_path / "binary.log"
    uri = f"binary://{logger}?out={log}"
    mounts = box("binlog", ["sh", "-c", "echo one; echo two >&2; echo three"])
    ctd.tasks.create("binlog", mounts, stdout=uri, stderr=uri)
    ctd.tasks.start("binlog")
    assert ctd.tasks.wait("binlog", timeout=WAIT).exit_status == 0
    ctd.tasks.delete("binlog")  # closes the pipes, SIGTERMs the logger and waits for it
    lines = log.read_text().splitlines()
    assert lines[0] == f"env binlog {ctd.namespace}"
    assert [ln for ln in lines if ln.startswith("stdout")] == ["stdout one", "stdout three"]
    assert [ln for ln in lines if ln.startswith("stderr")] == ["stderr two"]


def test_exec_pids_list_kill(ctd, box, tmp_path):
    mounts = box("sleeper", ["sleep", "60"])
    pid = ctd.tasks.create("sleeper", mounts)  # null IO
    ctd.tasks.start("sleeper")
    assert ctd.tasks.get("sleeper").status == "running"
    assert [(t.id, t.container_id, t.pid, t.status) for t in ctd.tasks.list()] == \
        [("sleeper", "sleeper", pid, "running")]

    out = bytearray()
    with FifoSet(str(tmp_path), "calc", stdin=False, terminal=False) as io:
        ctd.tasks.exec("sleeper", "calc", exec_process(["sh", "-c", "echo $((6*7))"]), **io.uris())
        assert ctd.tasks.get("sleeper", "calc").status == "created"
        exec_pid = ctd.tasks.start("sleeper", "calc")
        assert exec_pid > 0 and exec_pid != pid
        copy_output({io.stdout_fd: out.extend, io.stderr_fd: out.extend})
    assert out == b"42\n"
    exited = ctd.tasks.wait("sleeper", "calc", timeout=WAIT)
    assert exited.exit_status == 0 and exited.exited_at is not None
    info = ctd.tasks.get("sleeper", "calc")
    assert (info.id, info.container_id, info.status) == ("calc", "sleeper", "stopped")
    assert ctd.tasks.delete_process("sleeper", "calc").exit_status == 0

    ctd.tasks.exec("sleeper", "seven", exec_process(["sh", "-c", "exit 7"]))
    ctd.tasks.start("sleeper", "seven")
    assert ctd.tasks.wait("sleeper", "seven", timeout=WAIT).exit_status == 7
    ctd.tasks.delete_process("sleeper", "seven")

    assert pid in ctd.tasks.pids("sleeper")
    with pytest.raises(Timeout):
        ctd.tasks.wait("sleeper", timeout=0.3)
    ctd.tasks.kill("sleeper", signal.SIGKILL)
    assert ctd.tasks.wait("sleeper", timeout=WAIT).exit_status == 137
    assert ctd.tasks.delete("sleeper").exit_status == 137
    assert ctd.tasks.list() == []


def test_stdin_attach_and_close_io(ctd, box, tmp_path):
    mounts = box("cat", ["cat"])
    with FifoSet(str(tmp_path), "cat", stdin=True, terminal=False) as io:
        ctd.tasks.create("cat", mounts, **io.uris())
        ctd.tasks.start("cat")
        info = ctd.tasks.get("cat")
        assert (info.stdin, info.stdout, info.stderr) == (io.stdin_path, io.stdout_path, io.stderr_path)
        stop = threading.Event()
        stop.set()
        copy_output({io.stdout_fd: bytearray().extend}, stop)  # nothing yet, and stop is set: returns at once

        # a second client re-attaches by the paths containerd reports, as `ctr tasks attach` does
        out = bytearray()
        with FifoSet.attach(info.stdin, info.stdout, info.stderr) as again:
            os.write(again.stdin_fd, b"ping\n")
            # EOF reaches cat only once every writer of the stdin FIFO is gone: ours (both sets) and the
            # shim's own, which it drops on CloseIO
            again.close_stdin()
            io.close_stdin()
            ctd.tasks.close_io("cat")
            guard = threading.Timer(WAIT, stop.set)  # never hang the suite
            stop.clear()
            guard.start()
            copy_output({again.stdout_fd: out.extend, again.stderr_fd: out.extend}, stop)
            guard.cancel()
        assert out == b"ping\n"
        assert os.path.exists(io.stdout_path)  # attach never removes another client's FIFOs
        assert ctd.tasks.wait("cat", timeout=WAIT).exit_status == 0
    ctd.tasks.delete("cat")


def test_terminal_resize(ctd, box, tmp_path):
    mounts = box("tty", ["busybox", "stty", "size"], terminal=True)  # no stty applet link in the image
    out = bytearray()
    with FifoSet(str(tmp_path), "tty", stdin=True, terminal=True) as io:
        assert io.stderr_path == "" and io.stderr_fd is None and io.stdin_fd is not None
        ctd.tasks.create("tty", mounts, **io.uris())
        assert ctd.tasks.get("tty").terminal
        ctd.tasks.resize("tty", 132, 43)  # the console exists once the task is created
        ctd.tasks.start("tty")
        copy_output({io.stdout_fd: out.extend})
    assert out.replace(b"\r", b"").strip() == b"43 132"
    assert ctd.tasks.wait("tty", timeout=WAIT).exit_status == 0
    ctd.tasks.delete("tty")


def test_events_see_task_exit(ctd, box):
    mounts = box("evt", ["sh", "-c", "exit 5"])
    filters = [f'topic=="/tasks/exit",namespace=="{ctd.namespace}"']
    with ctd.events.subscribe(filters, ready=True) as sub:
        guard = threading.Timer(WAIT, sub.cancel)  # never hang the suite
        guard.start()
        try:
            ctd.tasks.create("evt", mounts)
            pid = ctd.tasks.start("evt")
            event = next(iter(sub))
        finally:
            guard.cancel()
    assert (event.topic, event.namespace, event.type_url) == ("/tasks/exit", ctd.namespace,
                                                              "containerd.events.TaskExit")
    assert event.payload["container_id"] == "evt" and event.payload["id"] == "evt"
    assert event.payload["exit_status"] == 5 and event.payload["pid"] == pid
    assert event.timestamp is not None
    assert sub.cancelled and list(sub) == []  # leaving the block ended the stream
    ctd.tasks.delete("evt")

    # unfiltered (all namespaces), cancelled from another thread while blocked
    sub = ctd.events.subscribe()
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(sub))
    reader.start()
    ctd.containers.delete("evt")  # a /containers/delete event may or may not arrive before the cancel
    sub.cancel()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert all(e.topic.startswith("/") for e in seen)


def test_container_update_and_runtime_options(ctd, box):
    box("upd", ["true"], labels={"a": "1", "b": "2"}, runtime_options=runc_options(root="/run/containerd/runc"))
    type_url, value = ctd.containers.runtime_options("upd")
    assert type_url == RUNC_OPTIONS_TYPE_URL and b"/run/containerd/runc" in value

    c = ctd.containers.update(Container("upd", labels={"c": "3"}), ["labels.c", "labels.a"])
    assert c.labels == {"b": "2", "c": "3"}  # labels.a with no value removes it
    c = ctd.containers.update(Container("upd", labels={"x": "y"}, image="other"), ["labels", "image"])
    assert (c.labels, c.image) == ({"x": "y"}, "other")

    spec = json.loads(c.spec)
    spec["process"]["args"] = ["echo", "updated"]
    c = ctd.containers.update_spec("upd", json.dumps(spec).encode())
    assert json.loads(ctd.containers.get("upd").spec)["process"]["args"] == ["echo", "updated"]
    assert c.updated_at is not None and c.created_at is not None and c.updated_at >= c.created_at
    from ctk_shared.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        ctd.containers.update(Container("upd", runtime="io.containerd.other.v1"), ["runtime"])
