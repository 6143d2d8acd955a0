"""The machine's processes as tests and benchmarks look for them: by command line, and by the container a
process serves (a shim names it on its command line; a logger has it in its environment)."""
from __future__ import annotations

import os
from collections.abc import Iterator


def command_lines() -> Iterator[tuple[int, str]]:
    """(pid, command line with spaces for NULs) of every process still there when read."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(d), cmd


def serves_container(pid: int, cmd: str, cid: str) -> bool:
    """Whether process ``pid`` belongs to container ``cid``: its shim (``-id CID``) or its logger or health runner
    (``CONTAINER_ID=CID`` in the environment the shim gave it)."""
    if cid in cmd and "containerd-shim" in cmd:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"CONTAINER_ID={cid}".encode() in f.read().split(b"\0")
    except OSError:
        return False
