"""The progress modes' text, without a build: plain lines, the tty frame, rawjson events, auto."""
from __future__ import annotations

import json
import os

from ctk_build import progress


def collect():
    out = []
    return out, lambda data: out.append(data.decode())


def test_plain_lines_as_buildkit():
    out, write = collect()
    p = progress.PlainProgress(write)
    v = p.begin("[stage-0 2/3] RUN make")
    p.output(v, b"cc -o app\npartial")
    p.done(v, "layer abc (1kB)")
    c = p.begin("[stage-0 3/3] COPY a /a")
    p.cached(c)
    text = "".join(out)
    lines = text.splitlines()
    assert lines[0] == "#1 [stage-0 2/3] RUN make"
    assert lines[1].startswith("#1 0.") and lines[1].endswith(" cc -o app")
    assert lines[2].endswith(" partial")  # the unfinished line is shown when the step ends
    assert lines[3] == "#1 layer abc (1kB)" and lines[4].startswith("#1 DONE ") and lines[4].endswith("s")
    assert lines[5:] == ["", "#2 [stage-0 3/3] COPY a /a", "#2 CACHED"]
    assert "\x1b" not in text


def test_tty_frame_header_steps_and_tail():
    out, write = collect()
    p = progress.TTYProgress(write, size=lambda: os.terminal_size((60, 20)), refresh=3600)
    p.total = 3
    a = p.begin("[1/3] FROM base")
    p.done(a)
    b = p.begin("[2/3] RUN apt-get install")
    p.output(b, b"".join(f"line {i}\n".encode() for i in range(10)))
    frame = p.frame()
    assert frame[0].startswith("[+] Building ") and frame[0].endswith("(1/3)")
    assert frame[1].startswith(" => [1/3] FROM base") and frame[1].endswith("s")
    assert frame[2].startswith(" => [2/3] RUN apt-get install")
    assert frame[3:] == [f" => => # line {i}" for i in range(4, 10)]  # the last six lines
    assert all(len(line) <= 59 for line in frame)
    p.cached(p.begin("[3/3] COPY x /x"))
    p.done(b)
    p.close()
    text = "".join(out)
    assert "\x1b[" in text and "(3/3) FINISHED" in text
    final = p.frame(final=True)
    assert " => CACHED [3/3] COPY x /x" in final[3] and not any("=> => #" in line for line in final)


def test_rawjson_events():
    out, write = collect()
    p = progress.RawJSONProgress(write)
    v = p.begin("[1/1] RUN echo hi")
    p.output(v, b"hi\n")
    p.fail(v, "exit code 1")
    events = [json.loads(x) for x in "".join(out).splitlines()]
    assert events[0]["vertexes"][0]["name"] == "[1/1] RUN echo hi"
    assert events[1]["logs"][0]["vertex"] == events[0]["vertexes"][0]["digest"]
    assert events[2]["vertexes"][0]["error"] == "exit code 1" and "completed" in events[2]["vertexes"][0]


def test_auto_is_tty_only_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    assert progress.choose("auto", True) == "tty"
    assert progress.choose("auto", False) == "plain"
    monkeypatch.setenv("TERM", "dumb")
    assert progress.choose("auto", True) == "plain"
    assert progress.choose("plain", True) == "plain"


def test_tty_redraws_when_a_step_starts_not_only_on_the_tick():
    """As BuildKit's view: a step that starts is shown at once (rate-limited), not at the next tick."""
    import time

    out, write = collect()
    p = progress.TTYProgress(write, size=lambda: os.terminal_size((60, 20)), refresh=3600)
    try:
        p.begin("[1/1] RUN make")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("[1/1] RUN make" in x for x in out):
            time.sleep(0.01)
        assert any("[1/1] RUN make" in x for x in out)
    finally:
        p.close()


def test_tty_writes_no_frame_equal_to_the_last(monkeypatch):
    out, write = collect()
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    p = progress.TTYProgress(write, size=lambda: os.terminal_size((60, 20)), refresh=3600, min_gap=3600)
    p.done(p.begin("[1/2] COPY a /a"))
    p.draw()
    p.draw()
    assert p.frames == 1 and len(out) == 1  # nothing moved: the second frame is not written
    now[0] += 0.2  # the header's timer moved
    p.draw()
    assert p.frames == 2
    p.close()
    assert "(1/1) FINISHED" in out[-1]


def test_tty_display_rate_as_buildkit(monkeypatch):
    monkeypatch.setenv("TTY_DISPLAY_RATE", "500")
    assert progress.display_rate() == (0.5, 0.5)
    monkeypatch.setenv("TTY_DISPLAY_RATE", "fast")
    assert progress.display_rate() == (0.15, 0.1)  # BuildKit's ticker and display limiter


def test_tty_size_is_the_terminal_of_stderr_or_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "77")
    monkeypatch.setenv("LINES", "11")
    assert progress.terminal_size() == os.terminal_size((77, 11))
