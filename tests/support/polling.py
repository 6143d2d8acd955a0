"""Waiting in tests for something that happens in another process (a container starting, a file appearing)."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(pred: Callable[[], object], timeout: float = 20.0, step: float = 0.2) -> bool:
    """True as soon as ``pred()`` is true, False when it still is not after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False
