"""What every benchmark here shares: timing one command, silently."""
from __future__ import annotations

import subprocess
import time


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of ``cmd`` (which must succeed), its output discarded."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0
