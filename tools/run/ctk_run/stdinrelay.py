"""Keeping stdin for ``-i`` without ``-t`` in the background (``run -di``, ``start`` of a ``create -i``).

containerd 1.6's logging binary takes no stdin (the shim wires only stdout and stderr to it; the process gets
/dev/null), and a task's IO is either FIFOs or a log URI. So such a container gets FIFOs under its directory
for all three streams, and ctk-run starts ctk-run-logger itself, in its own session, on the read ends of the
output FIFOs (its fds 3 and 4, as the shim would pass them, with the same arguments and environment): the
output still reaches the json-file log, ``logs`` and ``attach``. The shim holds a writer of the input FIFO
until the task ends (so the container reads no end of input when no client is attached); ``attach`` writes
into it. A restart by containerd's restart monitor or by the logger uses the log URI alone: the restarted
process has /dev/null as stdin, as with Docker's ``--restart`` of a ``-i`` container whose client is gone.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

READY_TIMEOUT = 10.0  # the logger closes its ready pipe at once


def _fifo(path: Path) -> str:
    """A FIFO at ``path`` (anything else found there is replaced)."""
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return str(path)
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    return str(path)


def start(cdir: Path, stdin: str, log_uri: str, namespace: str, container_id: str) -> tuple[dict[str, str], int]:
    """Start the logger on new output FIFOs in ``cdir``: the task's stdin/stdout/stderr to create it with, and
    the logger's pid (to end it if the task cannot be made: a FIFO that never had a writer never ends)."""
    import select

    out, err = _fifo(cdir / "stdout.fifo"), _fifo(cdir / "stderr.fifo")
    uri = urlsplit(log_uri)
    argv = [unquote(uri.path)] + [x for kv in parse_qsl(uri.query, keep_blank_values=True) for x in kv]
    fds: list[int] = []
    try:
        for path in (out, err):
            fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        ready_r, ready_w = os.pipe()
        fds += [ready_r, ready_w]

        def place() -> None:
            """In the child: fds 3, 4, 5 as the shim gives them (dup2 makes them inheritable; every other fd
            of ours is close-on-exec)."""
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (fds[0], fds[1], fds[3])]
            for target, fd in zip((3, 4, 5), high, strict=True):
                os.dup2(fd, target)
            for fd in (3, 4):
                os.set_blocking(fd, True)

        # through a shell that exits at once, from /: the logger is nobody's child (it looks for the shim's
        # init.pid in its parent's directory, which would be the user's working directory)
        proc = subprocess.Popen(["/bin/sh", "-c", '"$@" </dev/null >/dev/null 2>&1 & echo $!', "sh", *argv],
                                env={"CONTAINER_ID": container_id, "CONTAINER_NAMESPACE": namespace}, cwd="/",
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=False, preexec_fn=place)  # noqa: PLW1509
        os.close(ready_w)
        fds.remove(ready_w)
        out_text, _ = proc.communicate(timeout=READY_TIMEOUT)
        pid = int(out_text.strip() or 0)
        if select.select([ready_r], [], [], READY_TIMEOUT)[0]:
            os.read(ready_r, 1)  # EOF: the logger is set up
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return {"stdin": stdin, "stdout": out, "stderr": err}, pid
