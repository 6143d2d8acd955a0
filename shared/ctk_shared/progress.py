"""Progress reporting for long work (pull, push, save, load…), always on stderr.

Library code talks to a ``Progress``; the CLI picks the kind: live bars when stderr is a TTY, one plain
line per event when it is not, nothing with ``-q``. All methods are thread-safe: layers move in parallel.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol, TextIO

from .output import human_size


class Progress(Protocol):
    def task(self, key: str, label: str, total: int | None = None, status: str = "waiting") -> None: ...
    def advance(self, key: str, nbytes: int) -> None: ...
    def status(self, key: str, status: str, *, completed: int | None = None) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def task(self, key: str, label: str, total: int | None = None, status: str = "waiting") -> None:
        pass

    def advance(self, key: str, nbytes: int) -> None:
        pass

    def status(self, key: str, status: str, *, completed: int | None = None) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class TextSink(Protocol):
    """Where PlainProgress writes its lines: a text file, or anything with ``write`` and ``flush``."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


class PlainProgress:
    """One line per meaningful state change, for logs and CI: ``abcd…: downloading (3.2MB)``."""

    SILENT = frozenset({"waiting", "verifying", "downloaded", "extracted"})

    def __init__(self, stream: TextSink | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        self._t0 = time.monotonic()

    def _line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def task(self, key: str, label: str, total: int | None = None, status: str = "waiting") -> None:
        self._tasks[key] = {"label": label, "total": total, "done": 0, "status": status}

    def advance(self, key: str, nbytes: int) -> None:
        t = self._tasks.get(key)
        if t is not None:
            t["done"] += nbytes

    def status(self, key: str, status: str, *, completed: int | None = None) -> None:
        t = self._tasks.setdefault(key, {"label": key, "total": None, "done": 0, "status": ""})
        if completed is not None:
            t["done"] = completed
        if t["status"] == status:
            return
        t["status"] = status
        if status in self.SILENT:
            return
        size = f" ({human_size(t['total'])})" if t["total"] else ""
        self._line(f"{t['label']}: {status}{size}")

    def note(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        pass


class RichProgress:
    """Live per-task bars with bytes, rate and elapsed time (rich is imported only here)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn
        from rich.progress import Progress as _RP

        self._console = Console(file=stream or sys.stderr)
        self._rp = _RP(TextColumn("{task.description:<12}"), TextColumn("{task.fields[status]:<11}"),
                       BarColumn(bar_width=24), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
                       console=self._console, transient=False, refresh_per_second=8)
        self._ids: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._started = False  # the live display (and its cursor codes) only once there is something to draw

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._rp.start()

    def task(self, key: str, label: str, total: int | None = None, status: str = "waiting") -> None:
        with self._lock:
            self._start()
            if key not in self._ids:
                self._ids[key] = self._rp.add_task(label, total=total, status=status)

    def advance(self, key: str, nbytes: int) -> None:
        tid = self._ids.get(key)
        if tid is not None:
            self._rp.advance(tid, nbytes)

    def status(self, key: str, status: str, *, completed: int | None = None) -> None:
        tid = self._ids.get(key)
        if tid is None:
            self.task(key, key, None, status)
            tid = self._ids[key]
        kw: dict[str, Any] = {"status": status}
        if completed is not None:
            kw["completed"] = completed
        self._rp.update(tid, **kw)

    def note(self, text: str) -> None:
        with self._lock:
            self._start()
        self._rp.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        if self._started:
            self._rp.stop()


def make_progress(quiet: bool = False, stream: TextIO | None = None) -> Progress:
    s = stream or sys.stderr
    if quiet:
        return NullProgress()
    if s.isatty():
        return RichProgress(s)
    return PlainProgress(s)
