"""What a run costs in processes and imports (issue 20): a plain foreground run has no logger process (the CLI
writes the json-file log itself, which ``logs`` from another shell reads while it runs), and a run of an image
that is here already imports neither the puller nor the logger."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.polling import wait_for
from tests.support.procs import command_lines, serves_container


def _env(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    return {**base, **run.env}


def _loggers_of(cid: str) -> list[int]:
    return [pid for pid, cmd in command_lines() if "ctk-run-logger" in cmd and serves_container(pid, cmd, cid)]


def test_a_foreground_run_writes_its_own_log_and_starts_no_logger(run, bb, containerd, ctd):
    p = subprocess.Popen(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "--name", "fg",
                          bb, "sh", "-c", "echo hello; echo oops >&2; sleep 3; echo bye"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(run))
    try:
        # another shell follows the log while the container runs
        assert wait_for(lambda: "hello" in run("logs", "fg").out, timeout=30)
        cid = run("inspect", "-f", "{{.Id}}", "fg").out.strip()
        assert len(cid) == 64
        assert _loggers_of(cid) == []
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert out == "hello\nbye\n" and "oops" in err
    logs = run("logs", "fg")
    assert logs.out == "hello\nbye\n" and logs.err == "oops\n"  # streams kept apart, as the logger does


def test_a_foreground_run_with_a_restart_policy_keeps_its_logger(run, bb, containerd, ctd):
    p = subprocess.Popen(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "--name", "pol",
                          "--restart", "on-failure:1", bb, "sh", "-c", "echo up; sleep 3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(run))
    try:
        assert wait_for(lambda: "up" in run("logs", "pol").out, timeout=30)
        cid = run("inspect", "-f", "{{.Id}}", "pol").out.strip()
        assert len(_loggers_of(cid)) >= 1  # it applies the policy after this CLI is gone
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out == "up\n"


def test_a_run_of_an_image_here_imports_neither_the_puller_nor_the_logger(run, bb, containerd, ctd):
    """Nor asyncio and grpc.aio, which grpc loads for its async API, nor protobuf's pure-Python backend
    (text_format comes with it), which upb makes idle: ctk_shared.containerd.deferred."""
    assert run("--rm", "-q", "--network", "none", bb, "true").code == 0  # pulled and unpacked now
    unwanted = ('ctk_shared.pull', 'ctk_shared.registry', 'ctk_run.logger', 'asyncio', 'grpc.aio',
                'google.protobuf.text_format')
    # the cli ends with os._exit after the atexit handlers (ctk_shared.exiting): the report is one of them
    code = ("import atexit, sys\nfrom ctk_run.cli import main\nsys.argv[0] = 'ctk-run'\natexit.register(lambda: "
            f"print(sorted(m for m in {unwanted!r} if m in sys.modules), file=sys.stderr))\nmain()\n")
    p = subprocess.run([sys.executable, "-c", code, "--address", containerd.address, "--namespace", ctd.namespace,
                        "--rm", "-q", "--network", "none", bb, "sh", "-c", "echo ran"],
                       capture_output=True, text=True, env=_env(run), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ran\n"
    assert p.stderr.strip().splitlines()[-1] == "[]"


def test_a_detached_run_loads_neither_inspect_nor_uuid_nor_openssl(run, bb, containerd, ctd):
    """Started as the launchers start it (no site), ``run -d`` keeps click's and dataclasses' ``inspect`` and
    click's ``uuid`` as stand-ins (ctk_shared.stdlib_standins: every dataclass on the path has a docstring)
    and verifies its manifest and config with CPython's own sha256, not OpenSSL's (ctk_shared.hashers)."""
    from ctk_shared.launchers import import_path

    assert run("--rm", "-q", "--network", "none", bb, "true").code == 0  # pulled and unpacked now
    real = ("inspect", "uuid", "hashlib", "_hashlib", "ast", "platform")
    code = (f"import sys\nsys.path.extend({list(import_path())!r})\nimport atexit\nfrom ctk_run.cli import main\n"
            "sys.argv[0] = 'ctk-run'\natexit.register(lambda: print(sorted(m for m in "
            f"{real!r} if type(sys.modules.get(m)).__name__ not in ('NoneType', 'StandIn')), file=sys.stderr))\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-S", "-c", code, "--address", containerd.address, "--namespace",
                        ctd.namespace, "-d", "-q", "--network", "none", bb, "sleep", "30"],
                       capture_output=True, text=True, env=_env(run), timeout=120)
    assert p.returncode == 0, p.stderr
    assert run("rm", "-f", p.stdout.strip()).code == 0
    assert p.stderr.strip().splitlines()[-1] == "[]"


def test_a_killed_foreground_cli_leaves_the_container_logging_to_its_end(run, bb, containerd, ctd, tmp_path):
    """Docker's daemon logs a container whose client died; with the CLI as the logger, its standby child takes
    over: the container neither loses its output nor blocks on a full pipe (300 kB here, a pipe holds 64 KiB)."""
    import signal

    with open(tmp_path / "cli.err", "w+b") as err:
        p = subprocess.Popen(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "--name",
                              "k", bb, "sh", "-c", "echo first; sleep 2; yes | head -c 300000; echo last"],
                             stdout=subprocess.DEVNULL, stderr=err, env=_env(run))
        try:
            assert wait_for(lambda: "first" in run("logs", "k").out, timeout=30)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        err.seek(0)
        # the CLI was still there to be killed: a foreground run never ends before its container does
        assert p.returncode == -signal.SIGKILL, (p.returncode, err.read().decode(errors="replace"))
    def diag() -> list[object]:  # the standby child's state, should it not take over (a rare flake)
        out: list[object] = []
        for pid, cmd in command_lines():
            if "--name k " in cmd:
                try:
                    out.append((pid, open(f"/proc/{pid}/wchan").read(), open(f"/proc/{pid}/syscall").read()[:40],
                                sorted(os.listdir(f"/proc/{pid}/task")),
                                {f: os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")}))
                except OSError as e:
                    out.append((pid, str(e)))
        from ctk_run.logguard import FAILURE_NOTE  # what a failed standby child left in its FIFO directory

        out.extend(f.read_text() for f in run.data_root.rglob(FAILURE_NOTE))
        return out
    assert wait_for(lambda: run("inspect", "-f", "{{.State.Status}}", "k").out.strip() == "exited", timeout=60), \
        (run("inspect", "-f", "{{.State.Status}}", "k").out, run("logs", "k").out[-300:], diag())
    out = run("logs", "k").out
    assert out.endswith("y\nlast\n") and out.count("y\n") == 150000
    mine = f"--namespace {ctd.namespace} --name k "
    assert wait_for(lambda: [pid for pid, cmd in command_lines() if mine in cmd] == [], timeout=10)  # it went too


def test_stop_records_the_exit_itself_and_rm_containers_still_go(run, bb):
    """``stop`` tells the logger it deletes the task and records the exit (no restart decision there): the
    exit is recorded, an always-restarting container stays stopped, a --rm one is removed."""
    import time

    assert run("-d", "-q", "--name", "al", "--restart", "always", "--network", "none", bb, "sleep", "60").code == 0
    assert run("stop", "-t", "0", "al").code == 0
    time.sleep(2.5)  # longer than the test containerd's restart monitor interval
    st = run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "al").out.split()
    assert st == ["exited", "137"], st
    assert run("-d", "-q", "--name", "gone", "--rm", "--network", "none", bb, "sleep", "60").code == 0
    assert run("stop", "-t", "0", "gone").code == 0
    assert wait_for(lambda: run("ps", "-a", "-q", "--filter", "name=gone").lines == [], timeout=30)


def test_a_detached_containers_logger_starts_without_site(run, bb):
    """The shim starts the logger through the data root's launcher, ``python -I -S`` (half its start-up CPU is
    ``site`` otherwise), and it still logs and records the start."""
    cid = run("-d", "-q", "--network", "none", bb, "sh", "-c", "echo up; sleep 30").out.strip()
    assert wait_for(lambda: "up" in run("logs", cid).out, timeout=30)
    launcher = f"{run.data_root}/bin/ctk-run-logger"
    argvs = [cmd.split() for pid, cmd in command_lines() if "ctk-run-logger" in cmd and serves_container(pid, cmd, cid)]
    assert argvs and all(a[1] == "-IS" and a[2] == launcher for a in argvs), argvs
    assert run("inspect", "-f", "{{.State.Status}}", cid).out.strip() == "running"
    assert run("inspect", "-f", "{{.State.StartedAt}}", cid).out.strip().startswith("20")


_COUNT_RPCS = """\
import sys
from ctk_shared.containerd import channel
calls = []
call, stream = channel.Service._call, channel.Service._stream
def counted_call(self, method, *a, **k):
    calls.append(self.SERVICE.rsplit('.', 1)[-1] + '.' + method)
    return call(self, method, *a, **k)
def counted_stream(self, method, *a, **k):
    calls.append(self.SERVICE.rsplit('.', 1)[-1] + '.' + method)
    return stream(self, method, *a, **k)
channel.Service._call, channel.Service._stream = counted_call, counted_stream
from ctk_run.cli import main
sys.argv[0] = 'ctk-run'
import atexit  # the cli ends with os._exit after the atexit handlers (ctk_shared.exiting)
atexit.register(lambda: print(' '.join(calls), file=sys.stderr))
main()
"""


def _rpcs(run, containerd, ctd, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:  # type: ignore[no-untyped-def]
    p = subprocess.run([sys.executable, "-c", _COUNT_RPCS, "--address", containerd.address, "--namespace",
                        ctd.namespace, *args], capture_output=True, text=True, env=_env(run), timeout=120)
    return p, p.stderr.strip().splitlines()[-1].split()


def test_a_run_makes_no_view_of_the_image_and_its_start_asks_for_nothing_it_knows(run, bb, containerd, ctd):
    """Issue 20: /etc/passwd is read from the container's own new snapshot (no view of the image under a
    lease of its own: four RPCs), and the first start of the container this run made looks for no earlier
    task, asks for no mounts and updates no labels before the task runs; --rm deletes the exited task without
    looking at it first. 24 RPCs per ``run --rm`` before, 16 now; 20 per ``run -d`` before, 13 now."""
    assert run("--rm", "-q", "--network", "none", bb, "true").code == 0  # pulled and unpacked now
    p, calls = _rpcs(run, containerd, ctd, "--rm", "-q", "--network", "none", "-u", "nobody", bb, "id")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("uid=65534(nobody) gid=65534(nobody)")  # the name still resolves
    for needless in ("Snapshots.View", "Snapshots.Mounts", "Tasks.Get"):
        assert needless not in calls, calls
    assert calls.count("Leases.Create") == 1 and calls.count("Containers.Update") == 1, calls
    assert len(calls) <= 16, calls
    p, calls = _rpcs(run, containerd, ctd, "-d", "-q", "--network", "none", bb, "sleep", "60")
    assert p.returncode == 0, p.stderr
    assert len(calls) <= 13 and "Snapshots.View" not in calls, calls
    cid = p.stdout.strip()
    st = run("inspect", "-f", "{{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}", cid).out.split()
    assert st[0] == "running" and st[1].startswith("20") and st[2] == "0", st
    # rm -f: the task rm saw is the one stop ends (no second look), and no exit is recorded on a container
    # that goes next (4 Tasks.Get and 2 label updates before)
    p, calls = _rpcs(run, containerd, ctd, "rm", "-f", cid)
    assert p.returncode == 0, p.stderr
    assert calls.count("Tasks.Get") <= 2 and calls.count("Containers.Update") == 1, calls
    assert run("ps", "-a", "-q").lines == []


def test_users_and_groups_come_from_every_layer_of_the_image(run, bb, registry, tmp_path):
    """The image's /etc/passwd and /etc/group as its layers merge them (read from the container's new
    snapshot): a user added by an upper layer, and root's supplementary groups, as Docker sets them."""
    from tests.support.images import build_image, busybox_layer_tar, extra_layer_tar, push_layout

    top = extra_layer_tar({"/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                           "/etc/group": b"root:x:0:\nwheel:x:10:root,app\napp:x:1000:\n"})
    build_image(tmp_path / "layout", "v1", [busybox_layer_tar(), top])
    ref = f"{registry.host}/test/users:v1"
    push_layout(tmp_path / "layout", "v1", ref)
    r = run("--rm", "-q", "--network", "none", "-u", "app", ref, "id")
    assert r.code == 0, r.err
    assert r.out.startswith("uid=1000(app) gid=1000(app) groups=") and "10(wheel)" in r.out, r.out
    r = run("--rm", "-q", "--network", "none", ref, "id")
    assert r.out.startswith("uid=0(root) gid=0(root) groups=") and "10(wheel)" in r.out, r.out
    r = run("--rm", "-q", "--network", "none", "-u", "nosuch", ref, "id")
    assert r.code == 125 and "unable to find user nosuch" in r.err
    assert run("ps", "-a", "-q").lines == []
