"""What every benchmark here shares: timing one command, silently."""
from __future__ import annotations

import subprocess
import time


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of ``cmd`` (which must succeed), its output discarded."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def tool(name: str) -> str:
    """The installed executable beside this interpreter: a pyenv shim on PATH adds ~60 ms to every call,
    which a user's real install does not have."""
    import os
    import shutil
    import sys

    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else (shutil.which(name) or name)


def unmount_under(base: str) -> None:
    """Lazily unmount whatever a peer (podman's overlay storage) left mounted below ``base``."""
    import subprocess

    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(str(base))]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, check=False)
