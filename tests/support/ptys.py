"""Reading what a program writes to a pseudo-terminal, as a terminal emulator would: the tests of the live
views and the progress benchmark share it."""
from __future__ import annotations

import os
import select
import subprocess
import time


def read_terminal(master: int, proc: subprocess.Popen[bytes] | None = None, *, timeout: float = 120,
                  keep: int | None = None) -> bytes:
    """What the master side of a pty gets until the far side is closed (EOF, or EIO once every slave is
    closed), or nothing more comes after ``proc`` ended (or, without ``proc``, for 0.2 s), or ``timeout``
    passes. ``keep``: only the last ``keep`` bytes (a long build's redraws)."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if proc is None or proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        got = got + chunk if keep is None else (got + chunk)[-keep:]
    return got
