"""Issue 21: health checks without a daemon, on the real containerd: Docker's state machine (starting →
healthy/unhealthy, failing streak, start period), ``ps``/``inspect``/``wait --condition``, a hanging and a
missing command, bad durations refused at ``run``, and checks that survive a killed logger or runner."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.cli import health_record as health
from tests.support.cli import inspect_record as inspect
from tests.support.polling import wait_for
from tests.support.procs import command_lines, serves_container


def ps_status(run, name: str) -> str:
    r = run("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert r.code == 0, r.err
    return r.out.strip()


def procs_with(needle: str, env_cid: str | None = None) -> list[int]:
    """Pids whose command line holds ``needle`` (and, with ``env_cid``, whose environment names that container)."""
    return [pid for pid, cmd in command_lines()
            if needle in cmd and (env_cid is None or env_cid in cmd or serves_container(pid, cmd, env_cid))]


def runner_pids(cid: str) -> list[int]:
    return [p for p in procs_with("ctk_run.health_runner") if cid in open(f"/proc/{p}/cmdline", "rb").read().decode(
        errors="replace")]


def logger_pids(cid: str) -> list[int]:
    return procs_with("ctk-run-logger", env_cid=cid)


def test_healthy_then_unhealthy_ps_inspect_and_wait(run, bb):
    r = run("run", "-d", "--name", "hc", "--health-cmd", "test ! -e /tmp/bad && echo fine",
            "--health-interval", "3s", "--health-retries", "2", bb, "sleep", "300")
    assert r.code == 0, r.err
    assert "(health: starting)" in ps_status(run, "hc")
    w = run("wait", "--condition", "healthy", "hc", timeout=30)
    assert w.code == 0 and w.out == "", (w.code, w.out, w.err)
    assert ps_status(run, "hc").endswith("(healthy)")
    h = health(run, "hc")
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0, h
    assert h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n", h
    assert {"Start", "End"} <= set(h["Log"][-1])
    cfg = inspect(run, "hc")["Config"]["Healthcheck"]
    assert cfg["Test"] == ["CMD-SHELL", "test ! -e /tmp/bad && echo fine"] and cfg["Interval"] == 3_000_000_000

    assert run("exec", "hc", "touch", "/tmp/bad").code == 0
    assert wait_for(lambda: health(run, "hc")["Status"] == "unhealthy", timeout=30), health(run, "hc")
    h = health(run, "hc")
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1, h
    assert len(h["Log"]) <= 5
    assert ps_status(run, "hc").endswith("(unhealthy)")
    assert run("ps", "-q", "--filter", "health=unhealthy").lines == [inspect(run, "hc")["Id"][:12]]
    assert run("ps", "-q", "--filter", "health=healthy").lines == []
    w = run("wait", "--condition", "healthy", "hc", timeout=30)
    assert w.code != 0 and "unhealthy" in w.err, (w.code, w.err)
    assert wait_for(lambda: len(health(run, "hc")["Log"]) == 5, timeout=40)  # the last 5 probes only

    # checks stop with the container: no runner is left, ps shows no health
    cid = inspect(run, "hc")["Id"]
    assert runner_pids(cid)
    assert run("stop", "-t", "1", "hc").code == 0
    assert wait_for(lambda: not runner_pids(cid), timeout=10), runner_pids(cid)
    assert "health" not in ps_status(run, "hc") and "healthy" not in ps_status(run, "hc")
    assert health(run, "hc")["Status"] == "unhealthy"  # Docker: checks stopped with the container
    w = run("wait", "--condition", "healthy", "hc", timeout=30)
    assert w.code != 0 and "not running" in w.err, w.err


def test_start_period_and_failing_streak(run, bb):
    """Failures inside the start period do not count; after it, the streak grows until --health-retries."""
    r = run("run", "-d", "--name", "sp", "--health-cmd", "exit 3", "--health-interval", "1s",
            "--health-start-period", "8s", "--health-start-interval", "500ms", "--health-retries", "3", bb,
            "sleep", "300")
    assert r.code == 0, r.err
    time.sleep(4)
    h = health(run, "sp")
    assert h["Status"] == "starting" and h["FailingStreak"] == 0 and len(h["Log"]) >= 3, h  # 500 ms probes
    assert wait_for(lambda: health(run, "sp")["Status"] == "unhealthy", timeout=20), health(run, "sp")
    assert health(run, "sp")["Log"][-1]["ExitCode"] == 3


def test_hanging_check_is_killed_at_the_timeout(run, bb):
    r = run("run", "-d", "--name", "hang", "--health-cmd", "sleep 60", "--health-interval", "1s",
            "--health-timeout", "1s", "--health-retries", "1", bb, "sleep", "300")
    assert r.code == 0, r.err
    assert wait_for(lambda: health(run, "hang").get("Status") == "unhealthy", timeout=20), health(run, "hang")
    entry = health(run, "hang")["Log"][0]
    assert entry["ExitCode"] == -1 and entry["Output"] == "Health check exceeded timeout (1s)", entry
    top = run("exec", "hang", "ps", "-o", "args")
    assert top.out.count("sleep 60") <= 1, top.out  # killed, not piling up (at most the probe running now)


def test_missing_command_is_a_failure_with_the_error_in_the_log(run, bb):
    r = run("run", "-d", "--name", "miss", "--restart", "always", "--health-cmd", "/no/such/probe",
            "--health-interval", "1s", "--health-retries", "1", bb, "sleep", "300")
    assert r.code == 0, r.err
    assert wait_for(lambda: health(run, "miss").get("Status") == "unhealthy", timeout=20)
    entry = health(run, "miss")["Log"][0]
    assert entry["ExitCode"] == 127 and "/no/such/probe" in entry["Output"], entry
    time.sleep(2)
    doc = inspect(run, "miss")  # as Docker: unhealthy is no reason for a restart policy to act
    assert doc["State"]["Status"] == "running" and doc["RestartCount"] == 0, doc["State"]


@pytest.mark.parametrize("args, needle", [
    (("--health-interval", "5x"), 'invalid argument "5x" for "--health-interval" flag'),
    (("--health-timeout", "-1s"), "--health-timeout cannot be negative"),
    (("--health-start-period", "500us"), "cannot be less than 1ms"),
    (("--health-start-interval", "1"), 'invalid argument "1" for "--health-start-interval" flag'),
    (("--health-retries", "-1"), "--health-retries cannot be negative"),
    (("--health-retries", "x"), '"--health-retries"'),
    (("--no-healthcheck", "--health-cmd", "true"), "--no-healthcheck conflicts with --health-* options"),
])
def test_bad_health_options_are_refused_at_run(run, bb, args, needle):
    r = run("run", "-d", "--name", "bad", *args, bb, "sleep", "300")
    assert r.code == 125 and needle in r.err and "Traceback" not in r.err, (r.code, r.err)
    assert run("ps", "-a", "-q").lines == []  # nothing made


def test_no_healthcheck_and_no_check(run, bb):
    assert run("run", "-d", "--name", "plain", bb, "sleep", "300").code == 0
    st = inspect(run, "plain")["State"]
    assert "Health" not in st and "(" not in ps_status(run, "plain")
    assert not runner_pids(inspect(run, "plain")["Id"])
    w = run("wait", "--condition", "healthy", "plain")
    assert w.code != 0 and "no health check" in w.err


def test_killed_logger_and_runner_do_not_wedge_the_container(run, bb):
    r = run("run", "-d", "--name", "kl", "--health-cmd", "true", "--health-interval", "1s", bb, "sleep", "300")
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert run("wait", "--condition", "healthy", "kl", timeout=30).code == 0

    def probes() -> int:
        return len(health(run, "kl")["Log"]) and health(run, "kl")["Log"][-1]["End"]

    # a SIGKILLed runner is started again by the logger; checks go on
    old = runner_pids(cid)
    assert len(old) == 1
    os.kill(old[0], signal.SIGKILL)
    assert wait_for(lambda: runner_pids(cid) and runner_pids(cid) != old, timeout=10)
    last = probes()
    assert wait_for(lambda: probes() != last, timeout=10)
    assert health(run, "kl")["Status"] == "healthy"

    # a SIGKILLed logger: the runner (its own session) keeps checking
    loggers = logger_pids(cid)
    assert len(loggers) == 1, loggers
    os.kill(loggers[0], signal.SIGKILL)
    last = probes()
    assert wait_for(lambda: probes() != last, timeout=10)

    # both gone: the state says checks stopped, instead of a status nobody keeps
    for p in runner_pids(cid):
        os.kill(p, signal.SIGKILL)
    assert wait_for(lambda: health(run, "kl")["Status"] == "unknown", timeout=20), inspect(run, "kl")["State"]
    assert "not running" in health(run, "kl")["Stopped"]
    assert "(health: unknown)" in ps_status(run, "kl")
    # …and the container is not wedged: stop, start (checks resume), rm
    assert run("stop", "-t", "1", "kl").code == 0
    assert run("start", "kl").code == 0
    assert run("wait", "--condition", "healthy", "kl", timeout=30).code == 0
    assert run("rm", "-f", "kl").code == 0
    assert wait_for(lambda: not runner_pids(cid), timeout=10)


def test_status_changes_are_containerd_events(run, ctd, bb):
    """Each status change is published on containerd's event stream (what ``ctk-run events`` shows)."""
    import threading

    from ctk_run import health_events

    seen: list[dict] = []
    sub = ctd.events.subscribe([f'topic=="{health_events.TOPIC}"'], ready=True)

    def read() -> None:
        for ev in sub:
            doc = health_events.decode(ev.type_url, ev.value)
            if doc:
                seen.append(doc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        r = run("run", "-d", "--name", "ev", "--health-cmd", "test ! -e /tmp/bad", "--health-interval", "1s",
                "--health-retries", "1", bb, "sleep", "300")
        assert r.code == 0, r.err
        cid = r.out.strip()
        assert wait_for(lambda: {"id": cid, "status": "healthy"} in seen, timeout=20), seen
        assert run("exec", "ev", "touch", "/tmp/bad").code == 0
        assert wait_for(lambda: {"id": cid, "status": "unhealthy"} in seen, timeout=20), seen
        assert [d["status"] for d in seen if d["id"] == cid] == ["healthy", "unhealthy"]  # changes only
    finally:
        sub.cancel()


def test_foreground_run_with_a_check(run, bb):
    """A foreground ``--rm`` run is checked too; its CLI still gets the output and the exit code, and nothing
    is left afterwards."""
    r = run("run", "--rm", "--name", "fg", "--health-cmd", "true", "--health-interval", "500ms", bb, "sh", "-c",
            "sleep 3; echo done; exit 4")
    assert r.code == 4 and r.out == "done\n", (r.code, r.out, r.err)
    assert run("ps", "-a", "-q").lines == []
    assert wait_for(lambda: not [p for p in procs_with("ctk_run.health_runner") if str(run.data_root) in
                                 open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")], timeout=10)


def test_wait_conditions_not_running_and_removed(run, bb):
    assert run("run", "-d", "--rm", "--name", "gone", bb, "sh", "-c", "sleep 1; exit 5").code == 0
    w = run("wait", "--condition", "removed", "gone", timeout=60)
    assert w.code == 0 and w.out.strip() == "5", (w.out, w.err)
    assert run("ps", "-a", "-q").lines == []
    assert run("run", "-d", "--name", "stays", bb, "sh", "-c", "sleep 1; exit 6").code == 0
    w = run("wait", "--condition", "not-running", "stays", timeout=60)
    assert w.code == 0 and w.out.strip() == "6", (w.out, w.err)
    bad = run("wait", "--condition", "next-exit", "stays")
    assert bad.code == 2 and "next-exit" in bad.err


def test_detached_with_stdin_open_is_checked_too(run, bb):
    """``-d -i``: the logger is started by ctk-run (not by the shim); the checks run all the same."""
    r = run("run", "-d", "-i", "--name", "di", "--health-cmd", "true", "--health-interval", "1s", bb, "cat")
    assert r.code == 0, r.err
    t0 = time.monotonic()
    assert run("wait", "--condition", "healthy", "di", timeout=30).code == 0, health(run, "di")
    assert time.monotonic() - t0 < 15
    cid = r.out.strip()
    assert run("stop", "-t", "1", "di").code == 0
    assert wait_for(lambda: not runner_pids(cid), timeout=10)
