"""``exec``: a new process in a running container, with the init process's security settings."""
from __future__ import annotations

import json
import secrets
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from ctk_shared import dataroot
from ctk_shared.errors import Conflict, CtkError

from . import lifecycle, state
from .errors import exec_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client
    from ctk_shared.taskio import FifoSet

    from .attach import Terminal


def process_spec(spec: dict[str, Any], command: tuple[str, ...], *, tty: bool, env: tuple[str, ...], workdir: str | None,
                 user: str | None, privileged: bool) -> dict[str, Any]:
    """The container's own process settings (capabilities, seccomp-relevant flags, rlimits, user, env) with the
    exec's overrides, so an exec is never more privileged than the container unless asked."""
    proc: dict[str, Any] = json.loads(json.dumps(spec.get("process") or {}))
    proc["args"] = list(command)
    proc["terminal"] = tty
    merged = {e.split("=", 1)[0]: e for e in proc.get("env") or []}
    merged.update({e.split("=", 1)[0]: e for e in env})
    proc["env"] = list(merged.values())
    if workdir:
        proc["cwd"] = workdir
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            from .spec import resolve_user

            u, g, extra = resolve_user(user, None, None)
            proc["user"] = {"uid": u, "gid": g, "additionalGids": extra}
        else:
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if privileged:
        from .spec import capabilities

        caps = list(capabilities((), (), privileged=True))
        proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    return proc


def exec_in(client: Client, gopts: GlobalOptions, text: str, command: tuple[str, ...], *, detach: bool,
            interactive: bool, tty: bool, env: tuple[str, ...], workdir: str | None, user: str | None,
            privileged: bool) -> int:
    from ctk_shared.taskio import FifoSet

    from .lookup import find_container

    c = find_container(client, text)
    _require_running(client, c.id, text)
    spec = json.loads(c.spec or b"{}")
    proc = process_spec(spec, command, tty=tty, env=env, workdir=workdir, user=user, privileged=privileged)
    if tty and not detach and (size := _window_size()):
        # runc sizes the terminal before the process runs (the shim makes an exec's terminal only at its start,
        # so a ResizePty before then would be lost, and one after it races the process: ``stty size`` saw 0 0)
        proc["consoleSize"] = {"height": size[1], "width": size[0]}
    exec_id = f"exec-{secrets.token_hex(8)}"
    fifo_dir = state.namespace_dir(gopts.data_root, client.namespace) / "fifo"
    dataroot.makedirs(gopts.data_root, fifo_dir)  # the data root 0710 first
    fifos = FifoSet(str(fifo_dir), exec_id, stdin=interactive, terminal=tty)
    from .attach import Terminal

    term = Terminal(client, c.id, tty=tty and not detach, stdin_open=interactive, exec_id=exec_id)
    try:
        _start_process(client, c.id, exec_id, proc, fifos, tty=tty)
        if detach:
            return 0
        term.attach()
        return _follow(client, c.id, exec_id, fifos, term, interactive=interactive)
    finally:
        fifos.close()


def _require_running(client: Client, container_id: str, text: str) -> None:
    """An exec needs a running (not paused) task, as Docker's: each refusal says how to get there."""
    task = lifecycle.task_of(client, container_id)
    if task is not None and task.status in ("paused", "pausing"):
        raise Conflict(f"container {container_id} is paused, unpause the container before exec",
                       hint=f"ctk-run unpause {text}")
    if task is None or task.status != "running":
        raise Conflict(f"container {container_id[:12]} is not running", hint=f"start it first: ctk-run start {text}")


def _start_process(client: Client, container_id: str, exec_id: str, proc: dict[str, Any], fifos: FifoSet, *,
                   tty: bool) -> None:
    """Add the process to the task and start it; one that fails to start is deleted again (nothing half-made)."""
    try:
        client.tasks.exec(container_id, exec_id, proc, stdin=fifos.stdin_path, stdout=fifos.stdout_path,
                          stderr=fifos.stderr_path, terminal=tty)
        client.tasks.start(container_id, exec_id)
    except CtkError as e:
        try:
            client.tasks.delete_process(container_id, exec_id)
        except CtkError:
            pass
        raise exec_error(e) from e


def _follow(client: Client, container_id: str, exec_id: str, fifos: FifoSet, term: Terminal, *,
            interactive: bool) -> int:
    """Copy the started process's output (and our stdin to it) until it exits and its output ends; its exit code."""
    import threading

    from ctk_shared.taskio import copy_output

    from .attach import OUTPUT_GRACE

    done = threading.Event()
    result: dict[str, int] = {}

    def wait() -> None:
        try:
            result["code"] = client.tasks.wait(container_id, exec_id).exit_status
        finally:
            done.set()

    threading.Thread(target=wait, daemon=True).start()
    if interactive:
        from .attach import pump_stdin

        threading.Thread(target=pump_stdin, args=(client, container_id, fifos, exec_id), daemon=True).start()
    sinks: dict[int, Callable[[bytes], None]] = {}
    if fifos.stdout_fd is not None:
        sinks[fifos.stdout_fd] = _writer(sys.stdout.buffer)
    if fifos.stderr_fd is not None and fifos.stderr_fd >= 0:
        sinks[fifos.stderr_fd] = _writer(sys.stderr.buffer)
    try:
        # to EOF, not to the exit: the shim may still be copying the process's last output into the FIFO
        whole = copy_output(sinks, done, grace=OUTPUT_GRACE)
        done.wait()
    finally:
        term.restore()
    try:
        # the shim waits (up to 2 s) for its copy of the output before it closes its end of the FIFOs
        client.tasks.delete_process(container_id, exec_id)
    except CtkError:
        pass
    if not whole:  # something else (a background child) held the output open: take what the shim flushed
        done.set()
        if not copy_output(sinks, done, grace=OUTPUT_GRACE):
            sys.stderr.write(f"ctk-run: the output of exec {exec_id} was still open {OUTPUT_GRACE:g} s after "
                             "the process exited and was deleted; it may be incomplete\n")
            sys.stderr.flush()
    return result.get("code", 255)


def _writer(target: BinaryIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        target.write(data)
        target.flush()
    return write


def _window_size() -> tuple[int, int] | None:
    """Our terminal's (columns, rows), if stdout is one."""
    import os

    try:
        cols, rows = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None
    return (cols, rows) if cols and rows else None
