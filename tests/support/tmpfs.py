"""A small tmpfs on demand, for tests of what ctk does when its disk (blocks or inodes) is full."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` (``size=512k``, ``nr_inodes=256``…) at ``path`` (made here), unmounted
    (lazily: a test's leftover process may hold it) at the end."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_blocks(path: Path) -> None:
    """Write zeros to the new file ``path`` until its filesystem is full (the file stays: unlink it to free)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
