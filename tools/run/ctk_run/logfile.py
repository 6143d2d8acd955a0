"""Docker's json-file log format: one JSON object per line, ``{"log": …, "stream": …, "time": …}``.

Written by the logger (detached and plain foreground runs) or by the CLI (attached runs); read by ``logs``.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ctk_shared.errors import UsageError

MAX_LINE = 16 * 1024  # Docker splits longer lines into several records


def rfc3339nano(t: float | None = None) -> str:
    t = time.time() if t is None else t
    sec = int(t)
    nanos = int(round((t - sec) * 1e9))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nanos:09d}Z"


class JsonLogWriter:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._partial: dict[str, bytes] = {}

    def _emit(self, stream: str, line: bytes) -> bytes:
        rec = {"log": line.decode("utf-8", errors="replace"), "stream": stream, "time": rfc3339nano()}
        return (json.dumps(rec, ensure_ascii=False) + "\n").encode()

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial.pop(stream, b"") + data
        out = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= MAX_LINE:
                if len(buf) >= MAX_LINE:
                    out.append(self._emit(stream, buf[:MAX_LINE]))
                    buf = buf[MAX_LINE:]
                    continue
                break
            out.append(self._emit(stream, buf[: nl + 1]))
            buf = buf[nl + 1:]
        if buf:
            self._partial[stream] = buf
        if out:
            os.write(self._fd, b"".join(out))

    def flush(self) -> None:
        out = [self._emit(s, b) for s, b in self._partial.items() if b]
        self._partial.clear()
        if out:
            os.write(self._fd, b"".join(out))

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class LogRecord:
    stream: str
    time: datetime
    text: str


def _parse_time(s: str) -> datetime:
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


def _parse(line: bytes) -> LogRecord | None:
    try:
        rec = json.loads(line)
        return LogRecord(str(rec.get("stream", "stdout")), _parse_time(str(rec["time"])), str(rec.get("log", "")))
    except (ValueError, KeyError, TypeError):
        return None  # a torn or foreign line: skip it, as Docker does


def _tail_lines(f, n: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The last ``n`` lines, reading backwards in blocks (logs can be large)."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    block, data = 65536, b""
    while end > 0 and data.count(b"\n") <= n:
        start = max(0, end - block)
        f.seek(start)
        data = f.read(end - start) + data
        end = start
    lines = data.splitlines(keepends=True)
    return lines[-n:] if n else []


def _keep(rec: LogRecord, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or rec.time >= since) and (until is None or rec.time <= until)


def read_records(path: str, *, tail: int | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> list[LogRecord]:
    try:
        with open(path, "rb") as f:
            lines = _tail_lines(f, tail) if tail is not None else f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    return [r for r in (_parse(x) for x in lines if x.endswith(b"\n")) if r and _keep(r, since, until)]


def follow_records(path: str, *, tail: int | None, since: datetime | None, until: datetime | None,
                   is_running: Callable[[], bool], poll: float = 0.02, check_every: float = 0.2,
                   wake: "threading.Event | None" = None) -> Iterator[LogRecord]:
    """Existing records, then new ones as they are appended; ends once ``is_running()`` is False and the file
    is drained. ``is_running`` is asked at most every ``check_every`` seconds (it may be an RPC); ``wake``,
    when set, cuts the wait between reads short (the caller knows the container just exited)."""
    f = None
    pending = b""
    last_check, running, woken = 0.0, True, False
    while True:
        if f is None:
            try:
                f = open(path, "rb")
                lines = _tail_lines(f, tail) if tail is not None else []
                if tail is None:
                    f.seek(0)
                else:
                    f.seek(0, os.SEEK_END)
                for x in lines:
                    r = _parse(x)
                    if r and _keep(r, since, until):
                        yield r
            except FileNotFoundError:
                f = None
        chunk = f.read() if f else b""
        if chunk:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for x in complete:
                r = _parse(x + b"\n")
                if r and _keep(r, since, until):
                    yield r
            continue
        if not running:
            break  # the last read after it stopped came up empty: drained
        now = time.monotonic()
        if now - last_check >= check_every:
            last_check = now
            running = is_running()
            if not running:
                continue  # read once more before ending
        if wake is not None and wake.is_set() and not woken:
            woken, last_check = True, 0.0  # ask is_running again at once
        elif wake is not None and not wake.is_set():
            wake.wait(poll)
        else:
            time.sleep(poll)
    if f:
        f.close()


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """Docker's --since/--until: a duration ago (10m, 1h30m), an RFC 3339 time or date, or unix seconds."""
    now = now or datetime.now(timezone.utc)
    s = text.strip()
    m = _DURATION.match(s)
    if s and m and any(m.groups()):
        h, mi, se = (float(g or 0) for g in m.groups())
        return now - timedelta(hours=h, minutes=mi, seconds=se)
    if re.match(r"^\d+(\.\d+)?$", s):
        return datetime.fromtimestamp(float(s), timezone.utc)
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {text!r} (use e.g. 10m, 2024-01-01T00:00:00Z, or unix seconds)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def format_record(rec: LogRecord, timestamps: bool) -> tuple[str, bytes]:
    prefix = rec.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + " " if timestamps else ""
    return rec.stream, (prefix + rec.text).encode()
