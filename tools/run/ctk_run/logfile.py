"""Docker's json-file log format: one JSON object per line, ``{"log": …, "stream": …, "time": …}``.

Written by the logger (detached and plain foreground runs) or by the CLI (attached runs); read by ``logs``.

The writer half is imported by ``ctk-run-logger``, a long-lived process per container, so this module keeps
its import cost low: ``datetime``, ``dataclasses`` (which pulls in ``inspect``) and ``typing`` are only
loaded by the reader half, on first use (:class:`LogRecord` is built lazily through the module's
``__getattr__``).
"""
from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the logger's RSS)
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Generator, Iterable, Iterator
    from dataclasses import dataclass
    from datetime import datetime
    from typing import BinaryIO

MAX_LINE = 16 * 1024  # Docker's copier buffer: longer lines become several records, all but the last without \n
READ_CHUNK = 1 << 20  # follow: bytes read at a time


# -- writing ----------------------------------------------------------------------------------------------

_stamp_cache: tuple[int, str] = (-1, "")


def rfc3339nano(ns: int | None = None) -> str:
    """``2024-01-01T00:00:00.123456789Z`` (UTC, always 9 digits) for ``ns`` nanoseconds since the epoch (now)."""
    global _stamp_cache
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    cached_sec, head = _stamp_cache
    if cached_sec != sec:
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _stamp_cache = (sec, head)
    return f"{head}.{frac:09d}Z"


def _split_point(buf: bytes, limit: int) -> int:
    """Where to cut ``buf`` (longer than ``limit``) so that no UTF-8 sequence is torn. Docker cuts at exactly
    ``limit`` bytes and both halves then show U+FFFD; backing off up to 3 bytes keeps the character whole."""
    cut = limit
    while cut > limit - 3 and 0x80 <= buf[cut] < 0xC0:  # a continuation byte: its character began earlier
        cut -= 1
    return limit if 0x80 <= buf[cut] < 0xC0 else cut  # still inside one: not UTF-8 anyway


def _torn_tail(buf: bytes) -> int:
    """How many bytes at the end of ``buf`` are the start of a UTF-8 sequence whose rest has not come yet."""
    keep = next((i for i in range(1, min(4, len(buf)) + 1) if buf[-i] >= 0xC0), 0)
    if keep and keep >= (2 if buf[-keep] < 0xE0 else 3 if buf[-keep] < 0xF0 else 4):
        return 0  # the last sequence is whole
    return keep


class JsonLogWriter:
    """Appends records to a json-file log. ``write`` may be given any chunk of a stream: whole lines are
    written at once (one ``write(2)`` per call, so concurrent writers with O_APPEND interleave whole lines),
    a trailing partial line waits for the rest, for :meth:`flush` or for :meth:`close`.

    ``terminal=True`` (a container with a terminal): each chunk is written as it comes, partial lines included
    (a prompt, an echoed key), since ``attach`` shows the terminal by following the log; only a UTF-8
    sequence torn at the end of a chunk waits for its rest."""

    def __init__(self, path: str, *, terminal: bool = False) -> None:
        from ctk_shared.outputs import open_owned

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        # the logger runs as root: a link (or a FIFO) planted at the log's name is refused, never written through
        self._fd = open_owned(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._partial: dict[str, bytes] = {}
        self._terminal = terminal
        self._torn = False  # a write failed half-way (disk full): the next one starts on a new line

    @staticmethod
    def _record(stream: str, chunk: bytes, stamp: str) -> str:
        text = chunk.decode("utf-8", errors="replace")
        return f'{{"log":{json.dumps(text, ensure_ascii=False)},"stream":{json.dumps(stream)},"time":"{stamp}"}}\n'

    def _records(self, stream: str, line: bytes, newline: bool, stamp: str, out: list[str]) -> None:
        """``line`` (without its \\n) as one record, or several when longer than :data:`MAX_LINE`."""
        while len(line) > MAX_LINE or (newline and len(line) == MAX_LINE):
            cut = _split_point(line, MAX_LINE) if len(line) > MAX_LINE else MAX_LINE
            out.append(self._record(stream, line[:cut], stamp))
            line = line[cut:]
        if newline:
            out.append(self._record(stream, line + b"\n", stamp))
        elif line:
            out.append(self._record(stream, line, stamp))

    def write(self, stream: str, data: bytes) -> None:
        if not data:
            return
        buf = self._partial.pop(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()  # after the last \n: a partial line (maybe empty)
        stamp = rfc3339nano()
        out: list[str] = []
        for line in lines:
            self._records(stream, line, True, stamp, out)
        while len(rest) > MAX_LINE:  # a full buffer without a newline: Docker logs it as a partial record
            cut = _split_point(rest, MAX_LINE)
            out.append(self._record(stream, rest[:cut], stamp))
            rest = rest[cut:]
        if rest and self._terminal:
            keep = _torn_tail(rest)
            if len(rest) > keep:
                out.append(self._record(stream, rest[:len(rest) - keep], stamp))
            rest = rest[len(rest) - keep:]
        if rest:
            self._partial[stream] = rest
        if out:
            self._write("".join(out).encode())

    def flush(self) -> None:
        """Write the partial lines too, each as a record without a trailing newline."""
        stamp = rfc3339nano()
        out = [self._record(s, b, stamp) for s, b in self._partial.items() if b]
        self._partial.clear()
        if out:
            self._write("".join(out).encode())

    def write_record(self, stream: str, text: str) -> None:
        """One whole record of ctk's own (the logger's note of lines it dropped), apart from partial lines."""
        self._write(self._record(stream, text.encode(), rfc3339nano()).encode())

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise ValueError("write to a closed JsonLogWriter")
        if self._torn:  # end the half record a failed write left, so readers skip only that one
            os.write(self._fd, b"\n")
            self._torn = False
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError:
                self._torn = self._torn or len(view) < len(data)
                raise
            view = view[n:]

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JsonLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ----------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    @dataclass(frozen=True)
    class LogRecord:
        stream: str
        time: datetime  # aware, UTC; microsecond precision (datetime's)
        text: str  # the line, with its \n unless it was a partial record
        nanosecond: int | None = None  # the nanoseconds of the second, as stored (None: from ``time``)


def _record_class() -> type:
    """Build :class:`LogRecord` (a frozen dataclass) on first use; see the module docstring for why."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class LogRecord:
        """One json-file record. ``nanosecond`` keeps the stored precision that ``time`` (µs) cannot."""

        stream: str
        time: datetime
        text: str
        nanosecond: int | None = None

    LogRecord.__module__ = __name__
    LogRecord.__qualname__ = "LogRecord"
    globals()["LogRecord"] = LogRecord
    return LogRecord


def __getattr__(name: str) -> object:
    if name == "LogRecord":
        return _record_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TIME_RE = None
_second_cache: tuple[str, datetime | None] = ("", None)  # records come in time order: one parse per second of log
_decode = json.JSONDecoder().decode


def _parse_time(s: str) -> tuple[datetime, int] | None:
    """RFC 3339 with up to 9 fractional digits → (aware UTC datetime, nanoseconds of the second)."""
    global _TIME_RE, _second_cache
    from datetime import UTC, datetime

    if len(s) == 30 and s[19] == "." and s[29] == "Z" and s[20:29].isdigit():  # what we write: the fast path
        head = s[:19]
        cached_head, base = _second_cache
        if cached_head != head or base is None:
            try:
                base = datetime.fromisoformat(head + "+00:00")
            except ValueError:
                return None
            _second_cache = (head, base)
        ns = int(s[20:29])
        return base.replace(microsecond=ns // 1000), ns
    if _TIME_RE is None:
        import re

        _TIME_RE = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")
    m = _TIME_RE.fullmatch(s)
    if not m:
        return None
    frac = m.group(2) or ""
    tz = m.group(3)
    try:
        t = datetime.fromisoformat(f"{m.group(1)}.{frac[:6].ljust(6, '0')}{'+00:00' if tz in 'Zz' else tz}")
    except ValueError:
        return None
    if tz not in "Zz":
        t = t.astimezone(UTC)
    return t, int(frac.ljust(9, "0")) if frac else 0


def _parse(line: bytes) -> LogRecord | None:
    """A record, or None for a torn, corrupt or foreign line (skipped, as Docker does)."""
    try:
        rec = _decode(line.decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(rec, dict):
        return None
    text, stamp, stream = rec.get("log"), rec.get("time"), rec.get("stream", "stdout")
    if not isinstance(text, str) or not isinstance(stamp, str) or not isinstance(stream, str):
        return None
    parsed = _parse_time(stamp)
    if parsed is None:
        return None
    cls = globals().get("LogRecord") or _record_class()
    record: LogRecord = cls(stream, parsed[0], text, parsed[1])  # the lazily built class is LogRecord
    return record


def _aware(t: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC (parse_since never returns one)."""
    if t is None or t.tzinfo is not None:
        return t
    from datetime import UTC

    return t.replace(tzinfo=UTC)


def _keep(rec: LogRecord, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or rec.time >= since) and (until is None or rec.time <= until)


def _records_until(lines: Iterable[bytes], since: datetime | None,
                   until: datetime | None) -> Generator[LogRecord, None, bool]:
    """The records of ``lines`` from ``since`` on; returns True (stop following) at the first one after ``until``."""
    for x in lines:
        r = _parse(x)
        if r is None:
            continue
        if until is not None and r.time > until:
            return True
        if since is None or r.time >= since:
            yield r
    return False


def _tail(f: BinaryIO, n: int) -> tuple[list[bytes], int]:
    """The last ``n`` complete lines (without their \\n) of binary file ``f``, read backwards in blocks, and the
    offset just past the last complete line (where following should continue)."""
    f.seek(0, os.SEEK_END)
    pos = f.tell()
    chunks: list[bytes] = []
    newlines = 0
    block = 1 << 16
    while pos > 0 and newlines <= n:  # n + 1 newlines: the n-th line from the end starts after the first one
        start = max(0, pos - block)
        f.seek(start)
        chunk = f.read(pos - start)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
        pos = start
        block = min(block * 2, 1 << 22)
    data = b"".join(reversed(chunks))
    cut = data.rfind(b"\n") + 1  # a torn last line (being written) is left for later
    lines = data[:cut].split(b"\n")[:-1]
    if pos > 0 and lines:
        lines = lines[1:]  # the first one may have started before the block we read
    return (lines[-n:] if n > 0 else []), pos + cut


def read_records(path: str, *, tail: int | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> list[LogRecord]:
    """The records of the log (none if it does not exist). ``tail`` counts lines from the end before
    ``since``/``until`` filter them, as Docker does; a negative ``tail`` means all."""
    since, until = _aware(since), _aware(until)
    if tail is not None and tail < 0:
        tail = None
    out = []
    try:
        with open(path, "rb") as f:
            lines = _tail(f, tail)[0] if tail is not None else [x for x in f if x.endswith(b"\n")]
    except FileNotFoundError:
        return []
    for x in lines:
        r = _parse(x)
        if r is not None and _keep(r, since, until):
            out.append(r)
    return out


def follow_records(path: str, *, tail: int | None = None, since: datetime | None = None,
                   until: datetime | None = None, is_running: Callable[[], bool], poll: float = 0.1,
                   check_every: float = 0.2, wake: threading.Event | None = None) -> Iterator[LogRecord]:
    """Existing records, then new ones as they are appended, like ``docker logs -f``.

    Ends once ``is_running()`` is False and the file is drained (it is read once more after that answer),
    or once a record newer than ``until`` shows up or ``until`` has passed. ``is_running`` is asked at most
    every ``check_every`` seconds (it may be an RPC). The file may not exist yet. Between reads it sleeps
    ``poll`` seconds at most (less right after output, so bursts come through quickly); ``wake``, when set,
    cuts the wait short and makes ``is_running`` be asked at once (the caller knows the process just exited).
    A file that shrinks (truncated) is read again from its start.
    """
    from datetime import UTC, datetime, timedelta

    since, until = _aware(since), _aware(until)
    if tail is not None and tail < 0:
        tail = None
    f = None
    pending = b""
    running, woken = True, False
    last_check = float("-inf")
    delay = 0.005
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    f = None
                else:
                    if tail is not None:
                        lines, offset = _tail(f, tail)
                        f.seek(offset)
                        if (yield from _records_until(lines, since, until)):
                            return
            if f is not None:
                chunk = f.read(READ_CHUNK)
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    if (yield from _records_until(complete, since, until)):
                        return
                    delay = 0.005
                    continue
                if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                    f.seek(0)
                    pending = b""
                    continue
            if not running:
                return  # asked after it stopped, then read to the end: drained
            if until is not None and datetime.now(UTC) > until + timedelta(seconds=1):
                return  # nothing written from now on can be old enough
            if wake is not None and wake.is_set() and not woken:
                woken, last_check = True, float("-inf")
            now = time.monotonic()
            if now - last_check >= check_every:
                last_check = now
                running = bool(is_running())
                if not running:
                    continue  # read once more before ending
            delay = min(delay * 2, poll)
            if wake is not None and not wake.is_set():
                wake.wait(delay)
            else:
                time.sleep(delay)
    finally:
        if f is not None:
            f.close()


# -- --since / --until and output -------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(s: str) -> float | None:
    """Seconds in a Go ``time.ParseDuration`` string (``10m``, ``1h30m``, ``1.5h``, ``-30s``), else None.
    A bare number is not a duration here (Docker reads ``0`` as one, i.e. "now"; ctk reads it as epoch 0)."""
    import re

    m = re.fullmatch(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)", s)
    if not m:
        return None
    total = sum(float(num) * _DURATION_UNITS[unit]
                for num, unit in re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", m.group(2)))
    return -total if m.group(1) == "-" else total


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """Docker's ``--since``/``--until`` value as an aware UTC datetime: a Go duration before ``now``
    (``10m``, ``1h30m``), an RFC 3339 time or date (``2024-01-01T00:00:00Z``, ``2024-01-01T10:30``,
    ``2024-01-01``; without a zone it is local time, as in Docker) or unix seconds (``1700000000.5``).
    :class:`~ctk_shared.errors.UsageError` otherwise."""
    import re
    from datetime import UTC, datetime, timedelta

    from ctk_shared.errors import UsageError

    s = text.strip()
    now = _aware(now) or datetime.now(UTC)
    d = _go_duration(s)
    if d is not None:
        return (now - timedelta(seconds=d)).astimezone(UTC)
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        try:
            return datetime.fromtimestamp(float(s), UTC)
        except (OverflowError, OSError, ValueError):
            pass
    else:
        iso = re.sub(r"[Zz]$", "+00:00", s).replace("t", "T")
        date_zone = re.fullmatch(r"(\d{4}-\d\d-\d\d)([+-]\d\d:\d\d)", iso)  # Go's "2006-01-02Z07:00"
        if date_zone:
            iso = f"{date_zone.group(1)}T00:00:00{date_zone.group(2)}"
        if re.fullmatch(r"\d{4}-\d\d-\d\d(?:[Tt]\d\d(?::\d\d(?::\d\d(?:\.\d+)?)?)?)?(?:[+-]\d\d:\d\d)?", iso):
            frac = re.search(r"\.(\d+)", iso)
            if frac and len(frac.group(1)) > 6:  # fromisoformat stops at microseconds
                iso = iso.replace(frac.group(0), "." + frac.group(1)[:6])
            try:
                t = datetime.fromisoformat(iso)
            except ValueError:
                pass
            else:
                return (t if t.tzinfo else t.astimezone()).astimezone(UTC)  # naive: local time
    raise UsageError(f"invalid time {text!r}",
                     hint="use a duration (10m, 1h30m), an RFC 3339 time or date (2024-01-01T00:00:00Z) "
                          "or unix seconds")


def format_record(rec: LogRecord, timestamps: bool) -> tuple[str, bytes]:
    """(stream, bytes for that stdio stream); with ``timestamps`` prefixed by Docker's RFC3339Nano time."""
    if not timestamps:
        return rec.stream, rec.text.encode("utf-8", errors="replace")
    from datetime import UTC

    t = rec.time.astimezone(UTC) if rec.time.tzinfo else rec.time
    ns = rec.nanosecond if rec.nanosecond is not None else t.microsecond * 1000
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z "
    return rec.stream, (stamp + rec.text).encode("utf-8", errors="replace")
