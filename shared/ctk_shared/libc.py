"""The process's own C library through ctypes, for the few calls Python's os module lacks (openat2,
renameat2): loaded once, and only by the first call that needs it, since importing ctypes and opening the
library is ~2 ms that most commands never need."""
from __future__ import annotations

import functools
from typing import Any


@functools.cache
def libc() -> Any:
    """The C library already mapped into this process (``CDLL(None)``: find_library would run ldconfig), with
    errno kept for ``ctypes.get_errno`` and ``syscall`` returning a long."""
    import ctypes

    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib
