"""Health check configuration (flags, Docker's merge with the image's HEALTHCHECK), the state machine, the
state file as ps/inspect read it, and the health event encoding."""
from __future__ import annotations

import fcntl
import json
import os

import pytest
from ctk_run import health, health_events
from ctk_run import healthcheck as hc


@pytest.mark.parametrize("text, ns", [("2s", 2_000_000_000), ("1m30s", 90_000_000_000), ("500ms", 500_000_000),
                                      ("1.5h", 5_400_000_000_000), ("0", 0), ("0s", 0), ("1ms", 1_000_000)])
def test_durations(text, ns):
    assert hc.parse_duration("health-interval", text) == ns


@pytest.mark.parametrize("text, needle", [("5x", "invalid duration"), ("", "invalid duration"),
                                          ("2", "invalid duration"), ("-1s", "cannot be negative"),
                                          ("999us", "cannot be less than 1ms"), ("1s2", "invalid duration")])
def test_bad_durations(text, needle):
    with pytest.raises(hc.HealthConfigError, match=needle):
        hc.parse_duration("health-interval", text)


def test_flags():
    assert hc.from_flags() is None
    assert hc.from_flags(disabled=True) == {"Test": ["NONE"]}
    with pytest.raises(hc.HealthConfigError, match="conflicts"):
        hc.from_flags(disabled=True, interval="1s")
    got = hc.from_flags(cmd="pg_isready", interval="2s", retries="5")
    assert got == {"Test": ["CMD-SHELL", "pg_isready"], "Interval": 2_000_000_000, "Timeout": 0, "StartPeriod": 0,
                   "StartInterval": 0, "Retries": 5}
    with pytest.raises(hc.HealthConfigError, match="cannot be negative"):
        hc.from_flags(retries="-1")


IMAGE = {"Healthcheck": {"Test": ["CMD", "curl", "-f", "http://x/"], "Interval": 5_000_000_000, "Retries": 2}}


def test_merge_follows_docker():
    assert hc.merge(None, IMAGE)["Test"] == ["CMD", "curl", "-f", "http://x/"]
    merged = hc.merge(hc.from_flags(retries="7"), IMAGE)
    assert merged["Test"][0] == "CMD" and merged["Interval"] == 5_000_000_000 and merged["Retries"] == 7
    merged = hc.merge(hc.from_flags(cmd="true"), IMAGE)
    assert merged["Test"] == ["CMD-SHELL", "true"] and merged["Interval"] == 5_000_000_000
    assert hc.merge(hc.from_flags(disabled=True), IMAGE) is None
    assert hc.merge(None, {}) is None
    assert hc.merge(hc.from_flags(interval="1s"), {}) is None  # nothing to run
    assert hc.merge(None, {"Healthcheck": {"Test": ["NONE"]}}) is None
    # hostile image configs: ignored, never a crash
    for bad in ({"Healthcheck": "x"}, {"Healthcheck": {"Test": "CMD true"}}, {"Healthcheck": {"Test": [1]}},
                {"Healthcheck": {"Test": ["CMD", "x"], "Interval": -1}}, {"Healthcheck": {"Test": ["WHAT", "x"]}}):
        assert hc.merge(None, bad) is None


def test_command_and_defaults():
    assert hc.command({"Test": ["CMD", "a", "b"]}) == ["a", "b"]
    assert hc.command({"Test": ["CMD-SHELL", "a b"]}) == ["/bin/sh", "-c", "a b"]
    assert hc.command({"Test": ["CMD-SHELL", "a"]}, ["/bin/bash", "-lc"]) == ["/bin/bash", "-lc", "a"]
    cfg = {"Test": ["CMD", "x"]}
    assert (hc.seconds(cfg, "Interval"), hc.seconds(cfg, "Timeout"), hc.seconds(cfg, "StartInterval"),
            hc.retries(cfg)) == (30.0, 30.0, 5.0, 3)
    assert [hc.human_duration(s) for s in (30.0, 1.0, 0.5, 90.0)] == ["30s", "1s", "500ms", "1m30s"]
    assert hc.from_label(hc.label_value(cfg)) == {**cfg, "Interval": 0, "Timeout": 0, "StartPeriod": 0,
                                                 "StartInterval": 0, "Retries": 0}
    with pytest.raises(hc.HealthConfigError, match="too long"):
        hc.label_value({"Test": ["CMD-SHELL", "x" * 5000]})


def _result(code: int) -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": ""}


def test_state_machine():
    doc = {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert health.apply(doc, _result(1), 3, 10.0, 2.0) is None  # in the start period: not counted
    assert doc["FailingStreak"] == 0 and doc["Status"] == "starting"
    assert health.apply(doc, _result(1), 3, 10.0, 11.0) is None
    assert health.apply(doc, _result(-1), 3, 10.0, 12.0) is None
    assert doc["FailingStreak"] == 2
    assert health.apply(doc, _result(0), 3, 10.0, 13.0) == "healthy"
    assert doc["FailingStreak"] == 0
    for _ in range(2):
        assert health.apply(doc, _result(1), 3, 10.0, 2.0) is None  # healthy once: the start period is over
    assert health.apply(doc, _result(2), 3, 10.0, 2.0) == "unhealthy"
    assert len(doc["Log"]) == health.MAX_LOG and doc["FailingStreak"] == 3
    assert health.apply(doc, _result(0), 3, 10.0, 20.0) == "healthy"


def test_state_file_ps_and_stale_runner(tmp_path):
    cdir = str(tmp_path)
    assert health.current(cdir, True) is None
    health.reset(cdir, "2020-01-01T00:00:00Z")
    doc = health.current(cdir, True)
    assert doc["Status"] == "unknown" and "not running" in doc["Stopped"]  # nobody holds the lock
    assert health.ps_suffix(doc) == " (health: unknown)"
    fd = os.open(tmp_path / health.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        doc = health.current(cdir, True)
        assert doc["Status"] == "starting" and health.ps_suffix(doc) == " (health: starting)"
    finally:
        os.close(fd)
    assert health.current(cdir, False)["Status"] == "unhealthy"  # stopped: Docker reports it so
    (tmp_path / health.STATE_FILE).write_text(json.dumps({"Status": "healthy", "FailingStreak": 0, "Log": []}))
    assert health.ps_suffix(health.load(cdir)) == " (healthy)"
    (tmp_path / health.STATE_FILE).write_bytes(b"\xff" * 10)
    assert health.load(cdir) is None
    (tmp_path / health.STATE_FILE).write_bytes(b" " * (health.MAX_STATE_FILE + 10))
    assert health.load(cdir) is None


def test_events_round_trip_and_hostile_values():
    value = health_events.encode("abc", "healthy")
    assert health_events.decode(health_events.TYPE_URL, value) == {"id": "abc", "status": "healthy"}
    assert health_events.decode("type.googleapis.com/" + health_events.TYPE_URL, value)["status"] == "healthy"
    assert health_events.decode("containerd.events.TaskExit", value) is None
    for bad in (b"[]", b"\xff", b'{"id": 1, "status": "x"}', b"{" * 10000):
        assert health_events.decode(health_events.TYPE_URL, bad) is None
