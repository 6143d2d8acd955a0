"""The process that runs a container's health checks: one per running container that has a check.

Why a long-lived child of the logger rather than the logger itself or a process per probe: the logger runs
for every container and stays small (no grpc); a probe needs a containerd client (Exec, Start, Wait,
DeleteProcess), and starting Python with grpc costs ~0.3 s of CPU and ~25 MB each time, more than the probe.
So the logger starts this runner (``python -m ctk_run.health_runner``) only when the container has a check,
and it keeps one gRPC channel for the container's life; between probes it sleeps in ``poll``.

Lifetime: it holds a pidfd on the container's init process (its pid from containerd, else through the
shim's ``init.pid`` as the logger finds it) and exits when that process exits. It runs in its own session, so a SIGKILLed logger
does not stop the checks; a SIGKILLed runner is started again by the logger (see logger.py). While both are
gone, ``health.current`` reports ``unknown`` with the reason. containerd restarts are ridden out: a probe
that cannot reach containerd is not counted and is tried again a second later.

Each probe is an exec process with the container's own process settings (user, env, capabilities), its
output read from FIFOs (at most 4 KiB kept), SIGKILLed at the timeout (a failure with Docker's message), and
deleted afterwards. A command that cannot start is a failure with containerd's error as its output.

Usage (by the logger): ``python -m ctk_run.health_runner ADDRESS NAMESPACE CONTAINER_ID CONTAINER_DIR SHIM_PID
LOCK_FD`` (the logger takes ``health.lock`` and hands it over).
"""
from __future__ import annotations

import fcntl
import os
import select
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import health
from . import healthcheck as hcfg

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

RETRY_UNREACHABLE = 1.0  # seconds before a probe containerd did not answer is tried again
OUTPUT_GRACE = 0.5  # after the probe exited: how long its output may still arrive


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _say(msg: str) -> None:
    try:
        sys.stderr.write(f"ctk-run-health: {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _unreachable(e: Exception) -> bool:
    """containerd down or restarting (not a verdict on the container)."""
    from ctk_shared.errors import Unavailable

    return isinstance(e, Unavailable) or "connection refused" in str(e).lower() or \
        "unavailable" in str(e).lower() or "ttrpc: closed" in str(e)


class Runner:
    def __init__(self, client: Client, cid: str, cdir: str, hc: dict[str, Any], proc: dict[str, Any]) -> None:
        self.client = client
        self.cid = cid
        self.cdir = cdir
        self.hc = hc
        self.proc = proc
        self.fifo_dir = os.path.join(cdir, "health-fifo")

    def probe(self) -> dict[str, Any] | None:
        """Run the check once; its log entry, or None when containerd could not be reached."""
        import secrets
        import threading

        from ctk_shared.errors import CtkError, NotFound, Timeout
        from ctk_shared.taskio import FifoSet, copy_output

        timeout = hcfg.seconds(self.hc, "Timeout")
        start = _now()
        exec_id = f"health-{secrets.token_hex(6)}"
        kept = bytearray()

        def sink(data: bytes) -> None:
            if len(kept) < health.MAX_OUTPUT:
                kept.extend(data[: health.MAX_OUTPUT - len(kept)])

        os.makedirs(self.fifo_dir, mode=0o700, exist_ok=True)
        with FifoSet(self.fifo_dir, exec_id) as fifos:
            try:
                self.client.tasks.exec(self.cid, exec_id, self.proc, stdout=fifos.stdout_path,
                                       stderr=fifos.stderr_path)
            except CtkError as e:
                if _unreachable(e):
                    return None
                return {"Start": start, "End": _now(), "ExitCode": -1, "Output": health.bounded_output(str(e).encode())}
            try:
                fut = self.client.tasks.wait_async(self.cid, exec_id)
                try:
                    self.client.tasks.start(self.cid, exec_id)
                except CtkError as e:
                    fut.cancel()
                    if _unreachable(e):
                        return None
                    return {"Start": start, "End": _now(), "ExitCode": -1,
                            "Output": health.bounded_output(str(e).encode())}
                done = threading.Event()
                fut.add_done_callback(lambda _f: done.set())
                deadline = time.monotonic() + timeout
                reader = threading.Thread(target=copy_output, args=({fd: sink for fd in fifos.output_fds()}, done),
                                          kwargs={"grace": OUTPUT_GRACE}, daemon=True)
                reader.start()
                timed_out = not done.wait(max(deadline - time.monotonic(), 0.0))
                if timed_out:
                    try:
                        self.client.tasks.kill(self.cid, 9, exec_id=exec_id)
                    except CtkError:
                        pass
                    done.wait(5)
                    done.set()
                    reader.join(OUTPUT_GRACE + 1)
                    return {"Start": start, "End": _now(), "ExitCode": -1,
                            "Output": f"Health check exceeded timeout ({hcfg.human_duration(timeout)})"}
                try:
                    code = int(fut.result(0).exit_status)
                except (Timeout, NotFound):
                    code = -1
                except CtkError as e:
                    if _unreachable(e):
                        return None
                    code = -1
                reader.join(OUTPUT_GRACE + 1)
                return {"Start": start, "End": _now(), "ExitCode": code, "Output": health.bounded_output(bytes(kept))}
            finally:
                try:
                    self.client.tasks.delete_process(self.cid, exec_id)
                except CtkError:
                    pass


def _init_pidfd(client: Client, cid: str, shim_pid: int, wait_for: float = 30.0) -> int | None:
    """A pidfd on the container's init process: its pid from containerd, else from the ``init.pid`` the shim
    writes in its working directory (when the logger is the shim's child)."""
    try:
        pid = int(client.tasks.get(cid).pid)
        if pid > 0:
            return os.pidfd_open(pid)
    except Exception:  # noqa: BLE001 - containerd restarting, or no pidfd: try the shim's file
        pass
    end = time.monotonic() + wait_for
    while time.monotonic() < end:
        try:
            with open(f"/proc/{shim_pid}/cwd/init.pid") as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid > 0:
            try:
                return os.pidfd_open(pid)
            except OSError:
                return None
        if not os.path.exists(f"/proc/{shim_pid}"):
            return None
        time.sleep(0.1)
    return None


def _take_lock(cdir: str, inherited: int | None) -> int:
    """Hold ``health.lock`` for our whole life (readers tell a live runner by it): the logger took it and
    handed us its descriptor; started by hand, take it here (a second runner waits)."""
    from ctk_shared.outputs import open_owned

    if inherited is not None:
        os.set_inheritable(inherited, False)
        return inherited
    fd = open_owned(os.path.join(cdir, health.LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _started(doc: dict[str, Any]) -> float:
    """The task's start as a wall-clock time (the start period counts from it)."""
    try:
        return datetime.fromisoformat(str(doc.get("StartedAt"))).timestamp()
    except ValueError:
        return time.time()


def run(address: str, namespace: str, cid: str, cdir: str, shim_pid: int, lock_fd: int | None = None) -> int:
    import json

    from ctk_shared.containerd import Client

    from .execs import process_spec

    lock = _take_lock(cdir, lock_fd)  # noqa: F841 - held until exit
    client = Client(address, namespace)
    pidfd = _init_pidfd(client, cid, shim_pid)
    for attempt in range(60):  # containerd may be restarting
        try:
            c = client.containers.get(cid)
            break
        except Exception as e:  # noqa: BLE001
            if attempt == 59 or not _unreachable(e):
                health.record_stop(cdir, f"cannot read the container's health check: {e}")
                return 0
            time.sleep(RETRY_UNREACHABLE)
    hc = hcfg.from_label(c.labels.get(hcfg.LABEL))
    if hc is None:
        health.record_stop(cdir, f"the container has no runnable health check (label {hcfg.LABEL})")
        return 0
    spec = json.loads(c.spec or b"{}")
    argv = hcfg.command(hc, hcfg.shell_from_label(c.labels.get(hcfg.SHELL_LABEL)))
    proc = process_spec(spec, tuple(argv), tty=False, env=(), workdir=None, user=None, privileged=False)
    runner = Runner(client, cid, cdir, hc, proc)
    doc = health.load(cdir) or {"Status": health.STARTING, "FailingStreak": 0, "Log": [], "StartedAt": _now()}
    doc.pop("Stopped", None)
    started = _started(doc)
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while True:
        in_start = doc.get("Status") == health.STARTING and time.time() - started < hcfg.seconds(hc, "StartPeriod")
        delay = hcfg.seconds(hc, "StartInterval") if in_start and hc.get("StartPeriod") else \
            hcfg.seconds(hc, "Interval")
        if poller.poll(int(delay * 1000)):  # Docker waits an interval before the first probe too
            return 0  # the container's init exited: checks stop with it
        if pidfd is None and not _task_running(client, cid):
            return 0
        probe_start = time.time()
        result = runner.probe()
        if result is None:
            if pidfd is not None and poller.poll(0):
                return 0
            time.sleep(RETRY_UNREACHABLE)
            continue
        if pidfd is not None and poller.poll(0):
            return 0  # the probe failed because the container stopped: not a verdict
        changed = health.apply(doc, result, hcfg.retries(hc), hcfg.seconds(hc, "StartPeriod"),
                               probe_start - started)
        try:
            health.save(cdir, doc)
        except OSError as e:
            _say(f"writing the health state: {e}")
        if changed:
            _publish(client, cid, changed)


def _task_running(client: Client, cid: str) -> bool:
    try:
        return client.tasks.get(cid).status == "running"
    except Exception as e:  # noqa: BLE001
        return _unreachable(e)


def _publish(client: Client, cid: str, status: str) -> None:
    from .health_events import TOPIC, TYPE_URL, encode

    try:
        client.events.publish(TOPIC, TYPE_URL, encode(cid, status), timeout=5)
    except Exception as e:  # noqa: BLE001 - an event is not worth a probe
        _say(f"publishing {status} for {cid[:12]}: {e}")


def main(argv: list[str] | None = None) -> int:
    args = (sys.argv if argv is None else argv)[1:]
    if len(args) not in (5, 6):
        _say("usage: python -m ctk_run.health_runner ADDRESS NAMESPACE CONTAINER_ID CONTAINER_DIR SHIM_PID [LOCK_FD]")
        return 2
    address, namespace, cid, cdir, shim = args[:5]
    try:
        return run(address, namespace, cid, cdir, int(shim), int(args[5]) if len(args) == 6 else None)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
