"""How a build shows itself on stderr: ``--progress=auto|tty|plain|quiet|rawjson``.

Steps are "vertices" as in BuildKit: each gets a number (``#5``) when it starts, a status (running, done,
cached, failed, canceled), a timer, and the output of its RUN. The modes:

* ``plain`` — one line per event, for CI logs, in BuildKit's shape::

      #5 [2/4] RUN make
      #5 0.214 cc -o app app.c
      #5 DONE 1.3s

* ``tty`` — BuildKit's live view, redrawn in place: a ``[+] Building 22.6s (9/9)`` header, a line per step
  with its timer (``CACHED`` for reused ones), and the last lines of the running steps' output under them.
  Finished steps keep one line; on a short terminal only the newest lines are shown. As BuildKit's, the view
  is redrawn when a step starts or ends and every 150 ms in between, at most ten times a second
  (``TTY_DISPLAY_RATE=MS`` sets both, as for BuildKit); a frame equal to the last one is not written.
* ``quiet`` — nothing (stdout still gets the ref).
* ``rawjson`` — one JSON object per event (``{"vertexes": [...]}`` / ``{"logs": [...]}``), for tools.
* ``auto`` — ``tty`` when stderr is a terminal (and ``TERM`` is not ``dumb``), else ``plain``.

Only the ``tty`` mode writes terminal control codes. The view is drawn by one thread from the shared state
under one lock, so a chatty RUN costs an append to a bounded deque, not a redraw per line; the build's own
thread never draws, and the drawing thread sleeps until a step starts or ends or the next tick.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MODES = ("auto", "tty", "plain", "quiet", "rawjson")
TTY_TAIL = 6  # output lines shown under a running step (BuildKit shows six)
_TICK = 0.15  # seconds between redraws while no step starts or ends (BuildKit's ticker)
_MIN_GAP = 0.1  # seconds at least between two redraws, however busy the build (BuildKit's display limiter)
_PARTIAL_MAX = 64 * 1024  # a "line" without a newline is cut here (a progress bar redrawn with \r, say)


@dataclass
class Vertex:
    """One step as shown."""

    number: int
    name: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cached: bool = False
    error: str | None = None
    canceled: bool = False
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TTY_TAIL))
    partial: bytes = b""

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    @property
    def digest(self) -> str:
        """A stable id for rawjson (BuildKit's vertex digest)."""
        return "sha256:" + hashlib.sha256(f"{self.number}\0{self.name}".encode()).hexdigest()


class BuildProgress:
    """The interface the builder talks to; this base shows nothing (``quiet``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self.vertices: list[Vertex] = []
        self.total = 0  # steps the build will show (for the tty header)

    def begin(self, name: str) -> Vertex:
        with self._lock:
            self._count += 1
            v = Vertex(self._count, name)
            self.vertices.append(v)
        self._began(v)
        return v

    def output(self, v: Vertex | None, data: bytes) -> None:
        if v is None or not data:
            return
        with self._lock:
            lines = self._split(v, data)
        if lines:
            self._lines(v, lines)

    def cached(self, v: Vertex) -> None:
        v.cached = True
        self._finish(v)

    def done(self, v: Vertex, detail: str = "") -> None:
        self._finish(v, detail)

    def fail(self, v: Vertex, message: str) -> None:
        v.error = message or "failed"
        self._finish(v)

    def cancel(self, v: Vertex) -> None:
        v.canceled = True
        self._finish(v)

    def note(self, text: str) -> None:
        """A line that belongs to no step (a warning, the closing summary)."""

    def close(self) -> None:
        """The build is over (either way): finish the display."""

    # -- for the modes ------------------------------------------------------------------------------------
    def _finish(self, v: Vertex, detail: str = "") -> None:
        if v.ended is not None:
            return
        with self._lock:
            rest = [v.partial.decode(errors="replace")] if v.partial else []
            v.partial = b""
            for line in rest:
                v.tail.append(line)
            v.ended = time.monotonic()
        if rest:
            self._lines(v, rest)
        self._ended(v, detail)

    @staticmethod
    def _split(v: Vertex, data: bytes) -> list[str]:
        buf = v.partial + data
        *whole, v.partial = buf.split(b"\n")
        if len(v.partial) > _PARTIAL_MAX:
            whole.append(v.partial)
            v.partial = b""
        lines = [w.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace") for w in whole]
        v.tail.extend(lines)
        return lines

    def _began(self, v: Vertex) -> None:
        pass

    def _lines(self, v: Vertex, lines: list[str]) -> None:
        pass

    def _ended(self, v: Vertex, detail: str) -> None:
        pass


class PlainProgress(BuildProgress):
    """BuildKit's ``--progress=plain``: ``#N name``, ``#N 0.214 output``, ``#N DONE 0.3s`` / ``#N CACHED``."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        super().__init__()
        self._write = write
        self._first = True

    def _emit(self, text: str) -> None:
        self._write(text.encode(errors="replace"))

    def _began(self, v: Vertex) -> None:
        gap = "" if self._first else "\n"
        self._first = False
        self._emit(f"{gap}#{v.number} {v.name}\n")

    def _lines(self, v: Vertex, lines: list[str]) -> None:
        at = v.elapsed
        self._emit("".join(f"#{v.number} {at:.3f} {line}\n" for line in lines))

    def _ended(self, v: Vertex, detail: str) -> None:
        if v.cached:
            self._emit(f"#{v.number} CACHED\n")
        elif v.error is not None:
            self._emit(f"#{v.number} ERROR: {v.error}\n")
        elif v.canceled:
            self._emit(f"#{v.number} CANCELED\n")
        else:
            self._emit((f"#{v.number} {detail}\n" if detail else "") + f"#{v.number} DONE {v.elapsed:.1f}s\n")

    def note(self, text: str) -> None:
        self._emit(("" if self._first else "\n") + text + "\n")
        self._first = False


class RawJSONProgress(BuildProgress):
    """One JSON object per event, in the shape of BuildKit's ``--progress=rawjson`` (SolveStatus)."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        super().__init__()
        self._write = write
        self._t0 = time.time() - time.monotonic()

    def _wall(self, mono: float | None) -> str | None:
        if mono is None:
            return None
        t = self._t0 + mono
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"

    def _vertex(self, v: Vertex) -> None:
        rec: dict[str, object] = {"digest": v.digest, "name": v.name, "started": self._wall(v.started)}
        if v.ended is not None:
            rec["completed"] = self._wall(v.ended)
        if v.cached:
            rec["cached"] = True
        if v.error is not None:
            rec["error"] = v.error
        elif v.canceled:
            rec["error"] = "canceled"
        self._write((json.dumps({"vertexes": [rec]}) + "\n").encode())

    def _began(self, v: Vertex) -> None:
        self._vertex(v)

    def _lines(self, v: Vertex, lines: list[str]) -> None:
        data = base64.b64encode("".join(line + "\n" for line in lines).encode()).decode()
        rec = {"vertex": v.digest, "stream": 1, "data": data, "timestamp": self._wall(time.monotonic())}
        self._write((json.dumps({"logs": [rec]}) + "\n").encode())

    def _ended(self, v: Vertex, detail: str) -> None:
        self._vertex(v)

    def note(self, text: str) -> None:
        self._write((json.dumps({"warnings": [{"short": text}]}) + "\n").encode())


def display_rate() -> tuple[float, float]:
    """(tick, least gap) in seconds between redraws of the live view: BuildKit's ``TTY_DISPLAY_RATE``
    (milliseconds) sets both."""
    raw = os.environ.get("TTY_DISPLAY_RATE", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw) / 1000, int(raw) / 1000
    return _TICK, _MIN_GAP


def terminal_size() -> os.terminal_size:
    """The size of the terminal the view is drawn on, stderr's (``$COLUMNS``/``$LINES`` first, as
    ``shutil.get_terminal_size``, which asks stdout: that is often a pipe or a file, ``ctk-build . > ref``)."""
    fallback = os.terminal_size((100, 30))
    try:
        size = os.get_terminal_size(sys.__stderr__.fileno()) if sys.__stderr__ is not None else fallback
    except (AttributeError, ValueError, OSError):
        size = fallback
    cols, rows = size.columns or fallback.columns, size.lines or fallback.lines
    with contextlib.suppress(ValueError):
        cols = int(os.environ.get("COLUMNS", "")) or cols
    with contextlib.suppress(ValueError):
        rows = int(os.environ.get("LINES", "")) or rows
    return os.terminal_size((cols, rows))


class TTYProgress(BuildProgress):
    """BuildKit's live view, redrawn in place by a thread of its own: when a step starts or ends, and every
    ``refresh`` seconds in between, at most once every ``min_gap`` seconds."""

    def __init__(self, write: Callable[[bytes], None], size: Callable[[], os.terminal_size] | None = None,
                 refresh: float | None = None, min_gap: float | None = None) -> None:
        super().__init__()
        tick, gap = display_rate()
        self._write = write
        self._size = size or terminal_size
        self._drawn = 0  # lines of the last frame (the cursor sits below them)
        self._shown: list[str] = []  # the last frame written
        self._t0 = time.monotonic()
        self._notes: list[str] = []
        self._stop = threading.Event()
        self._wake = threading.Event()  # a step started or ended: redraw without waiting for the tick
        self._draw_lock = threading.Lock()
        self._closed = False
        self.frames = 0  # frames written (for the progress bench)
        self._thread = threading.Thread(target=self._loop, name="ctk-build-progress", daemon=True,
                                        args=(tick if refresh is None else refresh,
                                              min(gap, tick if refresh is None else refresh)
                                              if min_gap is None else min_gap))
        self._thread.start()

    def _loop(self, tick: float, gap: float) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(tick)
            early = last + gap - time.monotonic()
            if early > 0 and self._stop.wait(early):
                return
            self._wake.clear()
            if not self._stop.is_set():
                self.draw()
                last = time.monotonic()

    def _began(self, v: Vertex) -> None:
        self._wake.set()

    def _ended(self, v: Vertex, detail: str) -> None:
        self._wake.set()

    def note(self, text: str) -> None:
        with self._lock:
            self._notes.append(text)

    def frame(self, final: bool = False) -> list[str]:
        """The lines of the view now (without control codes)."""
        cols, rows = self._size()
        width = max(20, cols - 1)
        with self._lock:
            vertices = list(self.vertices)
            done = sum(1 for v in vertices if v.ended is not None)
            total = max(self.total, len(vertices))
            body: list[str] = []
            for v in vertices:
                body.append(self._line(v, width))
                if v.ended is None or v.error is not None:
                    body.extend(self._clip(f" => => # {t}", width) for t in v.tail)
        state = ""
        if final:
            failed = any(v.error is not None for v in vertices)
            state = " ERROR" if failed else " FINISHED"
        header = f"[+] Building {time.monotonic() - self._t0:.1f}s ({done}/{total}){state}"
        if not final and len(body) > rows - 2:
            body = body[-(max(1, rows - 2)):]  # the newest lines: running steps sit at the end
        return [self._clip(header, width), *body]

    @staticmethod
    def _clip(text: str, width: int) -> str:
        if not text.isprintable():  # (per character only when needed: a frame is drawn up to ten times a second)
            text = "".join(ch if ch.isprintable() else " " for ch in text)
        return text if len(text) <= width else text[:width - 3] + "..."

    def _line(self, v: Vertex, width: int) -> str:
        if v.cached:
            label = f" => CACHED {v.name}"
        elif v.error is not None:
            label = f" => ERROR {v.name}"
        elif v.canceled:
            label = f" => CANCELED {v.name}"
        else:
            label = f" => {v.name}"
        timer = f"{v.elapsed:.1f}s"
        room = width - len(timer) - 1
        if len(label) > room:
            label = label[:max(0, room - 3)] + "..."
        return label.ljust(room) + " " + timer

    def draw(self, final: bool = False) -> None:
        with self._draw_lock:
            if self._closed:
                return
            lines = self.frame(final)
            if lines == self._shown and not final:
                return  # nothing moved (the timers show tenths of seconds)
            self._shown = lines
            self.frames += 1
            out = []
            if self._drawn:
                out.append(f"\x1b[{self._drawn}F")  # to the start of the frame
            out.extend("\x1b[2K" + line + "\n" for line in lines)
            out.append("\x1b[J")  # whatever the last frame had below
            self._drawn = len(lines)
            self._write("".join(out).encode(errors="replace"))

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self.draw(final=True)
        with self._draw_lock:
            self._closed = True
            notes = list(self._notes)
        if notes:
            self._write("".join(n + "\n" for n in notes).encode(errors="replace"))


class VertexStream:
    """A text stream whose lines become a step's output: the pull of a base image logs under its FROM step
    (``#1 0.412 f8a841dcf2cf: downloading``; in the live view, the lines under the running step)."""

    def __init__(self, progress: BuildProgress, vertex: Vertex) -> None:
        self.progress = progress
        self.vertex = vertex

    def write(self, text: str) -> int:
        self.progress.output(self.vertex, text.encode(errors="replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def choose(mode: str, stream_isatty: bool) -> str:
    """The mode ``auto`` stands for here."""
    if mode != "auto":
        return mode
    return "tty" if stream_isatty and os.environ.get("TERM") != "dumb" else "plain"


def make(mode: str, write: Callable[[bytes], None] | None = None, isatty: bool | None = None) -> BuildProgress:
    """The progress for ``--progress MODE`` writing to stderr (or ``write``)."""
    if write is None:
        def write(data: bytes) -> None:
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()
    if isatty is None:
        isatty = sys.stderr.isatty()
    mode = choose(mode, isatty)
    if mode == "quiet":
        return BuildProgress()
    if mode == "tty":
        return TTYProgress(write)
    if mode == "rawjson":
        return RawJSONProgress(write)
    return PlainProgress(write)
