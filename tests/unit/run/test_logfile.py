"""Docker's json-file log: the writer's exact format, the reader (tail, since/until, corrupt lines), following,
--since parsing and output formatting."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ctk_run import logfile
from ctk_run.logfile import (
    MAX_LINE,
    JsonLogWriter,
    LogRecord,
    follow_records,
    format_record,
    parse_since,
    read_records,
    rfc3339nano,
)
from ctk_shared.errors import InvalidArgument, UsageError

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def raw(path) -> list[dict]:
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def logs(path) -> list[tuple[str, str]]:
    return [(r["stream"], r["log"]) for r in raw(path)]


def put(path, *records: tuple[str, str, str]) -> None:
    """Append hand-made records (stream, text, time)."""
    with open(path, "a") as f:
        for stream, text, t in records:
            f.write(json.dumps({"log": text, "stream": stream, "time": t}) + "\n")


# -- writer -------------------------------------------------------------------------------------------------

def test_format_is_docker_json_file(tmp_path):
    path = tmp_path / "c" / "c-json.log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"hello\nworld\n")
    w.write("stderr", b"oops\n")
    w.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith(b'{"log":')
        rec = json.loads(line)
        assert list(rec) == ["log", "stream", "time"]
        assert TIME_RE.match(rec["time"]), rec["time"]
    assert logs(path) == [("stdout", "hello\n"), ("stdout", "world\n"), ("stderr", "oops\n")]
    t = datetime.fromisoformat(raw(path)[0]["time"][:26] + "+00:00")
    assert abs((datetime.now(UTC) - t).total_seconds()) < 5


def test_file_mode_dirs_and_append(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "a" / "b" / "x.log"
        with JsonLogWriter(str(path)) as w:
            w.write("stdout", b"one\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        with JsonLogWriter(str(path)) as w:
            w.write("stdout", b"two\n")
        assert [t for _, t in logs(path)] == ["one\n", "two\n"]
    finally:
        os.umask(old)


def test_a_link_planted_at_the_log_name_is_refused_not_followed(tmp_path):
    """The logger runs as root: a symlink at the log's name must not make it append to another file."""
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:x:0:0\n")
    path = tmp_path / "c-json.log"
    path.symlink_to(victim)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        JsonLogWriter(str(path))
    assert victim.read_bytes() == b"root:x:0:0\n"


def test_a_fifo_planted_at_the_log_name_is_refused_without_hanging(tmp_path):
    path = tmp_path / "c-json.log"
    os.mkfifo(path)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        JsonLogWriter(str(path))


def test_partial_lines_wait_for_the_rest_or_flush(tmp_path):
    path = tmp_path / "x.log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"abc")
    assert path.read_bytes() == b""
    w.write("stdout", b"def\nghi")
    assert logs(path) == [("stdout", "abcdef\n")]
    w.flush()
    assert logs(path) == [("stdout", "abcdef\n"), ("stdout", "ghi")]  # a partial record has no \n
    w.write("stdout", b"\n")
    assert logs(path)[-1] == ("stdout", "\n")
    w.write("stdout", b"end")
    w.close()  # close flushes
    assert logs(path)[-1] == ("stdout", "end")
    with pytest.raises(ValueError):
        w.write("stdout", b"more\n")
    w.close()  # twice is fine


def test_a_terminal_log_writes_partial_lines_at_once_but_not_a_torn_character(tmp_path):
    """A container with a terminal: ``attach`` follows the log, so a prompt must be there before its newline;
    a UTF-8 character cut between two reads waits for its rest instead of showing as U+FFFD."""
    path = tmp_path / "x.log"
    w = JsonLogWriter(str(path), terminal=True)
    w.write("stdout", b"root@c:/# ")
    assert logs(path) == [("stdout", "root@c:/# ")]
    w.write("stdout", b"ls\nbin\xc3")  # "biné" torn after its first byte
    assert logs(path)[1:] == [("stdout", "ls\n"), ("stdout", "bin")]
    w.write("stdout", b"\xa9\n")
    assert logs(path)[-1] == ("stdout", "\u00e9\n")
    w.write("stdout", b"\xe2\x82\xac")  # a whole 3-byte character at the end: written now
    assert logs(path)[-1] == ("stdout", "\u20ac")
    w.close()


def test_interleaved_streams_keep_their_own_partial_line(tmp_path):
    path = tmp_path / "x.log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"a")
    w.write("stderr", b"b\n")
    w.write("stdout", b"c\n")
    w.write("stderr", b"d")
    w.write("stdout", b"e")
    w.close()
    assert logs(path) == [("stderr", "b\n"), ("stdout", "ac\n"), ("stderr", "d"), ("stdout", "e")]


def test_invalid_utf8_special_characters_and_empty_writes(tmp_path):
    path = tmp_path / "x.log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"")
    w.write("stdout", b"\xff\xfeok\n")
    w.write("stdout", 'quote " backslash \\ tab \t bell \x07 é 日本 \u2028\r\n'.encode())
    w.write("stdout", "split é".encode()[:-1])  # a character torn between two reads
    w.write("stdout", "é".encode()[1:] + b"\n")
    w.close()
    assert [t for _, t in logs(path)] == ["\ufffd\ufffdok\n", 'quote " backslash \\ tab \t bell \x07 é 日本 \u2028\r\n',
                                          "split é\n"]
    assert all(b"\n" not in line[:-1] for line in path.read_bytes().splitlines(keepends=True))


def test_long_lines_are_split_like_docker(tmp_path):
    path = tmp_path / "x.log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"x" * 40000 + b"\n")
    recs = [t for _, t in logs(path)]
    assert [len(t) for t in recs] == [MAX_LINE, MAX_LINE, 40000 - 2 * MAX_LINE + 1]
    assert not recs[0].endswith("\n") and not recs[1].endswith("\n") and recs[2].endswith("\n")
    # exactly one buffer's worth: Docker logs it as a partial record, then the newline alone
    path.unlink()
    w = JsonLogWriter(str(path))
    w.write("stdout", b"y" * MAX_LINE + b"\n")
    assert [len(t) for _, t in logs(path)] == [MAX_LINE, 1]
    # no newline yet, but more than a buffer: logged without waiting, in pieces that arrive in small reads
    path.unlink()
    w = JsonLogWriter(str(path))
    for _ in range(50):
        w.write("stdout", b"z" * 1000)
    assert [len(t) for _, t in logs(path)] == [MAX_LINE, MAX_LINE, MAX_LINE]
    w.close()
    assert [len(t) for _, t in logs(path)] == [MAX_LINE] * 3 + [50000 - 3 * MAX_LINE]


def test_long_lines_do_not_tear_characters(tmp_path):
    path = tmp_path / "x.log"
    text = "aé" * 20000 + "\n"  # 3 bytes a pair: 16 KiB boundaries fall inside characters
    with JsonLogWriter(str(path)) as w:
        w.write("stderr", text.encode())
    recs = [t for _, t in logs(path)]
    assert len(recs) == 4 and "".join(recs) == text and "\ufffd" not in "".join(recs)
    assert all(len(t.encode()) <= MAX_LINE for t in recs)
    path.unlink()
    text = "a😀" * 10000 + "\n"  # 5 bytes a pair, 4-byte characters
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", text.encode())
    recs = [t for _, t in logs(path)]
    assert len(recs) == 4 and "".join(recs) == text and "\ufffd" not in "".join(recs)
    # not UTF-8 at all: cut at exactly 16 KiB, as Docker does
    path.unlink()
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", b"\x80" * 20000 + b"\n")
    assert [len(t) for _, t in logs(path)] == [MAX_LINE, 20000 - MAX_LINE + 1]


def test_rfc3339nano():
    assert rfc3339nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20.000000000Z"
    assert rfc3339nano(1_700_000_000_999_999_999) == "2023-11-14T22:13:20.999999999Z"
    assert TIME_RE.match(rfc3339nano())


def test_concurrent_writers_interleave_whole_records(tmp_path):
    """Two loggers of one container (a restart while the old one drains) share the file through O_APPEND."""
    path = str(tmp_path / "x.log")

    def spam(stream: str) -> None:
        with JsonLogWriter(path) as w:
            for i in range(300):
                w.write(stream, f"{stream} {i} ".encode() * 20 + b"\n")

    threads = [threading.Thread(target=spam, args=(s,)) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = read_records(path)
    assert len(recs) == 600
    assert [r.text for r in recs if r.stream == "stdout"] == [f"stdout {i} " * 20 + "\n" for i in range(300)]


# -- reader -------------------------------------------------------------------------------------------------

def test_records_round_trip(tmp_path):
    path = str(tmp_path / "x.log")
    with JsonLogWriter(path) as w:
        w.write("stdout", b"one\n")
        w.write("stderr", b"two\n")
        w.write("stdout", b"three")
    recs = read_records(path)
    assert [(r.stream, r.text) for r in recs] == [("stdout", "one\n"), ("stderr", "two\n"), ("stdout", "three")]
    assert all(r.time.tzinfo is not None and r.time.utcoffset() == timedelta(0) for r in recs)
    assert recs[0].time <= recs[1].time <= recs[2].time
    assert read_records(str(tmp_path / "missing.log")) == []


def test_log_record_is_a_frozen_dataclass():
    rec = LogRecord("stdout", datetime(2024, 1, 1, tzinfo=UTC), "x\n")
    assert dataclasses.is_dataclass(rec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.text = "y"  # type: ignore[misc]
    assert rec == LogRecord("stdout", datetime(2024, 1, 1, tzinfo=UTC), "x\n")
    assert logfile.LogRecord is LogRecord


def test_corrupt_lines_are_skipped(tmp_path):
    path = tmp_path / "x.log"
    put(path, ("stdout", "good 1\n", "2024-01-01T00:00:00.000000001Z"))
    with open(path, "ab") as f:
        f.write(b"garbage\n")
        f.write(b"123\n")
        f.write(b'["a"]\n')
        f.write(b'{"log": "no time\\n", "stream": "stdout"}\n')
        f.write(b'{"log": "bad time\\n", "stream": "stdout", "time": "yesterday"}\n')
        f.write(b'{"log": 5, "stream": "stdout", "time": "2024-01-01T00:00:00Z"}\n')
        f.write(b'\xff\xfe{"log"\n')
        f.write(b'{"log": "torn\n')
        f.write(b"\n")
    put(path, ("stderr", "good 2\n", "2024-01-01T00:00:01+01:00"))
    with open(path, "ab") as f:
        f.write(b'{"log": "being written", "str')  # the last line is still being written
    recs = read_records(str(path))
    assert [(r.stream, r.text) for r in recs] == [("stdout", "good 1\n"), ("stderr", "good 2\n")]
    assert recs[1].time == datetime(2023, 12, 31, 23, 0, 1, tzinfo=UTC)  # other offsets become UTC
    assert [r.text for r in read_records(str(path), tail=1)] == ["good 2\n"]


def test_tail(tmp_path):
    path = tmp_path / "x.log"
    with JsonLogWriter(str(path)) as w:
        for i in range(10):
            w.write("stdout" if i % 2 else "stderr", f"line {i}\n".encode())
    texts = lambda **kw: [r.text for r in read_records(str(path), **kw)]  # noqa: E731
    assert texts(tail=3) == ["line 7\n", "line 8\n", "line 9\n"]
    assert texts(tail=1) == ["line 9\n"]
    assert texts(tail=0) == []
    assert texts(tail=100) == texts() == [f"line {i}\n" for i in range(10)]
    assert texts(tail=-1) == texts()  # docker logs --tail -1: all
    assert read_records(str(tmp_path / "missing.log"), tail=5) == []
    (tmp_path / "empty.log").write_bytes(b"")
    assert read_records(str(tmp_path / "empty.log"), tail=5) == []


def test_tail_of_a_big_file_reads_from_the_end(tmp_path):
    path = tmp_path / "big.log"
    line = '{"log":"%s\\n","stream":"stdout","time":"2024-01-01T00:00:%02d.%09dZ"}\n'
    with open(path, "w") as f:
        f.write("".join(line % ("x" * (i % 50) + f" {i}", i // 10000, i) for i in range(100_000)))
    assert path.stat().st_size > 5_000_000
    t0 = time.perf_counter()
    recs = read_records(str(path), tail=10)
    elapsed = time.perf_counter() - t0
    assert [r.text.split()[-1] for r in recs] == [str(i) for i in range(99_990, 100_000)]
    assert elapsed < 0.1, elapsed
    t0 = time.perf_counter()
    assert len(read_records(str(path), tail=5000)) == 5000
    assert time.perf_counter() - t0 < 0.5
    everything = read_records(str(path), tail=100_000)
    assert len(everything) == 100_000 and everything[0].text.endswith(" 0\n")
    assert len(read_records(str(path), tail=200_000)) == 100_000


def test_since_and_until(tmp_path):
    path = tmp_path / "x.log"
    put(path,
        ("stdout", "a\n", "2024-01-01T00:00:00.000000000Z"),
        ("stderr", "b\n", "2024-01-01T00:00:01.500000000Z"),
        ("stdout", "c\n", "2024-01-01T00:00:02.999999999Z"),
        ("stdout", "d\n", "2024-01-01T00:00:04Z"))
    texts = lambda **kw: [r.text for r in read_records(str(path), **kw)]  # noqa: E731
    t = lambda s: datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC) + timedelta(seconds=s)  # noqa: E731
    assert texts(since=t(1)) == ["b\n", "c\n", "d\n"]
    assert texts(since=t(1.5)) == ["b\n", "c\n", "d\n"]  # inclusive
    assert texts(until=t(1.5)) == ["a\n", "b\n"]
    assert texts(since=t(1), until=t(3)) == ["b\n", "c\n"]
    assert texts(since=t(5)) == []
    assert texts(tail=2, since=t(3)) == ["d\n"]  # tail first, then the filter (Docker's order)
    assert texts(since=datetime(2024, 1, 1, 0, 0, 2)) == ["c\n", "d\n"]  # naive: UTC
    assert texts(since=parse_since("2024-01-01T01:00:02+01:00")) == ["c\n", "d\n"]


# -- follow -------------------------------------------------------------------------------------------------

class Running:
    """is_running() that says True until stop(); counts the calls."""

    def __init__(self) -> None:
        self.on = True
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.on


def collect(gen, out: list, done: threading.Event) -> threading.Thread:
    def run() -> None:
        for r in gen:
            out.append(r.text)
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_follow_yields_existing_then_new_records_and_ends_when_stopped(tmp_path):
    path = str(tmp_path / "x.log")
    w = JsonLogWriter(path)
    w.write("stdout", b"old 1\nold 2\n")
    running = Running()
    out: list[str] = []
    done = threading.Event()
    collect(follow_records(path, tail=None, since=None, until=None, is_running=running), out, done)
    assert wait_for(lambda: out == ["old 1\n", "old 2\n"])
    w.write("stderr", b"new 1\n")
    assert wait_for(lambda: out[-1:] == ["new 1\n"], timeout=2)
    time.sleep(0.5)
    assert not done.is_set()
    w.write("stdout", b"last words\nand a partial one")
    w.close()
    running.on = False  # the container stops: what was written before is all delivered, then it ends
    assert done.wait(2)
    assert out == ["old 1\n", "old 2\n", "new 1\n", "last words\n", "and a partial one"]


def test_follow_asks_is_running_at_most_every_200ms(tmp_path):
    path = str(tmp_path / "x.log")
    running = Running()
    done = threading.Event()
    collect(follow_records(path, tail=None, since=None, until=None, is_running=running), [], done)
    time.sleep(1.0)
    assert 2 <= running.calls <= 7, running.calls
    running.on = False
    assert done.wait(1)


def test_follow_copes_with_a_file_that_does_not_exist_yet(tmp_path):
    path = str(tmp_path / "later" / "x.log")
    running = Running()
    out: list[str] = []
    done = threading.Event()
    collect(follow_records(path, tail=None, since=None, until=None, is_running=running, poll=0.02), out, done)
    time.sleep(0.3)
    with JsonLogWriter(path) as w:
        w.write("stdout", b"hello\n")
    assert wait_for(lambda: out == ["hello\n"], timeout=2)
    running.on = False
    assert done.wait(1)


def test_follow_of_a_missing_file_ends_when_not_running(tmp_path):
    t0 = time.monotonic()
    assert list(follow_records(str(tmp_path / "none.log"), tail=None, since=None, until=None,
                               is_running=lambda: False)) == []
    assert time.monotonic() - t0 < 0.5


def test_follow_with_tail_and_since(tmp_path):
    path = str(tmp_path / "x.log")
    put(path, ("stdout", "ancient\n", "2000-01-01T00:00:00Z"))
    w = JsonLogWriter(path)
    w.write("stdout", b"a\nb\nc\n")
    w.write("stdout", b"torn")  # a line being written when follow starts is not lost
    running = Running()
    out: list[str] = []
    done = threading.Event()
    since = datetime(2020, 1, 1, tzinfo=UTC)
    collect(follow_records(path, tail=2, since=since, until=None, is_running=running), out, done)
    assert wait_for(lambda: out == ["b\n", "c\n"])
    w.flush()
    put(path, ("stdout", "too old\n", "2001-01-01T00:00:00Z"))
    w.write("stdout", b"d\n")
    w.close()
    running.on = False
    assert done.wait(2)
    assert out == ["b\n", "c\n", "torn", "d\n"]


def test_follow_ends_at_until(tmp_path):
    path = str(tmp_path / "x.log")
    put(path, ("stdout", "before\n", "2024-01-01T00:00:00Z"), ("stdout", "after\n", "2024-01-01T00:00:10Z"))
    recs = list(follow_records(path, tail=None, since=None, until=datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC),
                               is_running=lambda: True))
    assert [r.text for r in recs] == ["before\n"]
    # an until already in the past: no need to wait for the container to stop
    path2 = str(tmp_path / "y.log")
    put(path2, ("stdout", "old\n", "2024-01-01T00:00:00Z"))
    t0 = time.monotonic()
    recs = list(follow_records(path2, tail=None, since=None, until=datetime(2024, 6, 1, tzinfo=UTC),
                               is_running=lambda: True))
    assert [r.text for r in recs] == ["old\n"] and time.monotonic() - t0 < 1


def test_follow_wake_cuts_the_wait_short(tmp_path):
    path = str(tmp_path / "x.log")
    with JsonLogWriter(path) as w:
        w.write("stdout", b"x\n")
    wake = threading.Event()
    state = {"running": True}
    gen = follow_records(path, tail=None, since=None, until=None, is_running=lambda: state["running"],
                         poll=5, check_every=60, wake=wake)
    assert next(gen).text == "x\n"
    threading.Timer(0.2, lambda: (state.update(running=False), wake.set())).start()
    t0 = time.monotonic()
    assert list(gen) == []
    assert time.monotonic() - t0 < 1.5


def test_follow_restarts_after_truncation(tmp_path):
    path = tmp_path / "x.log"
    put(path, ("stdout", "one\n", "2024-01-01T00:00:00Z"), ("stdout", "two\n", "2024-01-01T00:00:01Z"))
    running = Running()
    out: list[str] = []
    done = threading.Event()
    collect(follow_records(str(path), tail=None, since=None, until=None, is_running=running, poll=0.02), out, done)
    assert wait_for(lambda: out == ["one\n", "two\n"])
    path.write_bytes(b"")
    time.sleep(0.2)
    put(path, ("stdout", "3\n", "2024-01-01T00:00:02Z"))
    assert wait_for(lambda: out == ["one\n", "two\n", "3\n"], timeout=2)
    running.on = False
    assert done.wait(1)


# -- --since / --until ----------------------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("text,expected", [
    ("10m", NOW - timedelta(minutes=10)),
    ("1h30m", NOW - timedelta(hours=1, minutes=30)),
    ("1.5h", NOW - timedelta(hours=1, minutes=30)),
    ("90s", NOW - timedelta(seconds=90)),
    ("2h45m30.5s", NOW - timedelta(hours=2, minutes=45, seconds=30.5)),
    ("300ms", NOW - timedelta(milliseconds=300)),
    ("-5m", NOW + timedelta(minutes=5)),
    ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01t00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00+01:00", datetime(2023, 12, 31, 23, 0, tzinfo=UTC)),
    ("2024-01-01+01:00", datetime(2023, 12, 31, 23, 0, tzinfo=UTC)),
    ("2024-01-01Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("1700000000.5", datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
    ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ("  10m ", NOW - timedelta(minutes=10)),
])
def test_parse_since(text, expected):
    got = parse_since(text, now=NOW)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2024-01-01", "2024-01-01T10", "2024-01-01T10:30", "2024-01-01T10:30:15.25"])
def test_parse_since_without_a_zone_is_local_time(text):
    local = datetime.fromisoformat(text).astimezone()
    assert parse_since(text) == local


def test_parse_since_default_now():
    got = parse_since("1h")
    assert abs((datetime.now(UTC) - timedelta(hours=1) - got).total_seconds()) < 5


@pytest.mark.parametrize("text", ["", "yesterday", "10x", "m", "1h-5m", "2024-13-01", "2024-01-01T25:00:00Z",
                                  "2024/01/01", "1e9", "-1700000000", "2024-01-01T00:00:00ZZ"])
def test_parse_since_rejects_bad_input(text):
    with pytest.raises(UsageError) as e:
        parse_since(text, now=NOW)
    assert e.value.exit_code == 2
    assert "invalid time" in str(e.value)


def test_parse_since_bare_number_is_unix_seconds_not_a_duration():
    assert parse_since("10", now=NOW) == datetime(1970, 1, 1, 0, 0, 10, tzinfo=UTC)


# -- output ---------------------------------------------------------------------------------------------------

def test_format_record(tmp_path):
    path = tmp_path / "x.log"
    put(path, ("stderr", "héllo\n", "2024-01-01T00:00:00.123456789Z"), ("stdout", "part", "2024-01-01T00:00:01Z"))
    a, b = read_records(str(path))
    assert format_record(a, False) == ("stderr", "héllo\n".encode())
    assert format_record(a, True) == ("stderr", "2024-01-01T00:00:00.123456789Z héllo\n".encode())
    assert format_record(b, True) == ("stdout", b"2024-01-01T00:00:01.000000000Z part")
    made = LogRecord("stdout", datetime(2024, 1, 1, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=1))), "x\n")
    assert format_record(made, True) == ("stdout", b"2024-01-01T00:00:00.000005000Z x\n")


def test_the_writer_half_imports_little():
    """The logger imports logfile: no datetime/dataclasses/typing/grpc there (its RSS, see logger.py)."""
    code = ("import sys; before = set(sys.modules); import ctk_run.logger, ctk_run.logfile; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    added = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    for heavy in ("datetime", "dataclasses", "inspect", "typing", "grpc", "click", "rich", "requests",
                  "ctk_shared.containerd", "ctk_shared.errors", "subprocess", "urllib.parse"):
        assert heavy not in added, (heavy, sorted(added))
