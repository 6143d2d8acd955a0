"""ctk-run stats, top, events and port against the real containerd with real processes (issue 14)."""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time

import pytest

from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

HOG = ["sh", "-c", "while :; do :; done"]


def _json_lines(r) -> list[dict]:  # type: ignore[no-untyped-def]
    assert r.code == 0, r.err
    return [json.loads(x) for x in r.lines]


def test_stats_no_stream_reads_cpu_memory_and_pids_of_running_containers(run, bb):
    assert run("-d", "--name", "hog", "--network", "none", bb, *HOG).code == 0
    assert run("-d", "--name", "idle", "--network", "none", "-m", "64m", bb,
               "sh", "-c", "sleep 300 & sleep 301 & wait").code == 0
    assert run("-d", "--name", "hostnet", "--network", "host", bb, "sleep", "300").code == 0
    assert run("create", "--name", "never", "--network", "none", bb, "true").code == 0
    rows = {r["Name"]: r for r in _json_lines(run("stats", "--no-stream"))}
    assert set(rows) == {"hog", "idle", "hostnet"}  # running ones only, as Docker
    assert rows["hostnet"]["NetIO"] == "0B / 0B"  # not the host's own traffic
    hog, idle = rows["hog"], rows["idle"]
    assert float(hog["CPUPerc"].rstrip("%")) > 1.0, hog  # a busy loop is seen busy
    assert idle["CPUPerc"] == "0.00%" or float(idle["CPUPerc"].rstrip("%")) < 5.0
    assert idle["MemUsage"].endswith(" / 64MiB") and idle["PIDs"] == "3", idle  # sh and two sleeps
    assert re.fullmatch(r"[\d.]+[KMG]?i?B / [\d.]+[KMGT]iB", hog["MemUsage"]), hog
    assert re.fullmatch(r"\d+\.\d\d%", idle["MemPerc"])
    assert re.fullmatch(r"[\d.]+k?B / [\d.]+k?B", hog["BlockIO"]) and re.fullmatch(r"[\d.]+k?B / [\d.]+k?B",
                                                                                   hog["NetIO"])
    assert len(hog["ID"]) == 12 and hog["Container"] == hog["ID"]
    # -a adds the container that never ran, with zeros; named containers keep the word given
    everyone = {r["Name"]: r for r in _json_lines(run("stats", "--no-stream", "-a", "--no-trunc"))}
    assert everyone["never"]["CPUPerc"] == "0.00%" and everyone["never"]["PIDs"] == "0"
    assert len(everyone["hog"]["ID"]) == 64
    [named] = _json_lines(run("stats", "--no-stream", "idle"))
    assert named["Container"] == "idle" and named["Name"] == "idle"
    table = run("stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}", "idle")
    assert table.code == 0 and table.lines[0].split() == ["NAME", "PIDS"] and table.lines[1].split()[0] == "idle"


def test_stats_refuses_unknown_containers_and_fields(run, bb):
    r = run("stats", "--no-stream", "nosuch")
    assert r.code != 0 and "no such container: nosuch" in r.err  # the not-found code of ctk's exit table
    r = run("stats", "--no-stream", "--format", "{{.Nope}}")
    assert r.code == 2 and "unknown field" in r.err and "CPUPerc" in r.err


def test_stats_live_view_redraws_on_a_terminal(run, bb, containerd, ctd):
    """On a TTY, stats keeps refreshing the table in place until interrupted."""
    import pty

    assert run("-d", "--name", "live", "--network", "none", bb, "sleep", "300").code == 0
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env.update(run.env)
    p = subprocess.Popen(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "stats"],
                         stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 20
    try:
        while seen.count(b"\x1b[H\x1b[J") < 2 and time.monotonic() < deadline:
            try:
                seen += os.read(primary, 4096)
            except OSError:
                break
    finally:
        p.terminate()
        p.wait(10)
        os.close(primary)
    assert seen.count(b"\x1b[H\x1b[J") >= 2, seen  # at least two screens
    screen = seen.split(b"\x1b[H\x1b[J")[-1].decode()
    assert "CONTAINER ID" in screen and "MEM USAGE / LIMIT" in screen and "live" in screen


def test_top_lists_the_container_processes_only(run, bb):
    assert run("-d", "--name", "procs", "--network", "none", bb,
               "sh", "-c", "sleep 300 & sleep 301 & wait").code == 0
    assert wait_for(lambda: len(_json_lines(run("top", "procs"))) == 3)
    rows = _json_lines(run("top", "procs"))
    cmds = sorted(r["CMD"] for r in rows)
    assert cmds[-2:] == ["sleep 300", "sleep 301"] and cmds[0].startswith("sh -c"), cmds
    assert all(r["PID"] != "1" for r in rows)  # the host's init is not shown
    custom = _json_lines(run("top", "procs", "-o", "pid,args"))
    assert {r["COMMAND"] for r in custom} >= {"sleep 300", "sleep 301"} and set(custom[0]) == {"PID", "COMMAND"}
    assert run("stop", "-t", "0", "procs").code == 0
    r = run("top", "procs")
    assert r.code == 1 and "is not running" in r.err
    r = run("top", "nosuch")
    assert r.code != 0 and "no such container" in r.err


class _Stream:
    """``ctk-run events`` running in the background; its stdout lines in a queue, its stderr in ``err``."""

    def __init__(self, run, containerd, ctd, *args: str, env: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
        full = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
        full.update(run.env)
        full.update(env or {})
        self.proc = subprocess.Popen(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace,
                                      "events", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err = ""
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err += line

    def until(self, pred, timeout: float = 30, probes: bool = False) -> list[dict]:  # type: ignore[no-untyped-def]
        """Records read until one satisfies ``pred`` (that one included); the probes' left out unless asked."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rec = json.loads(self.lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if not probes and rec["Actor"]["Attributes"].get("name", "").startswith("probe"):
                continue
            got.append(rec)
            if pred(rec):
                return got
        raise AssertionError(f"no matching event within {timeout}s; got {got}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(15)
        time.sleep(0.2)
        return self.err


def _live_stream(run, containerd, ctd, bb, *args: str, **kw) -> _Stream:  # type: ignore[no-untyped-def]
    """An events stream known to be subscribed: a probe container's start was seen (``{probe}`` in ``args`` is
    replaced by the probe's name, for filters that must let it through)."""
    probe = f"probe{time.monotonic_ns()}"
    s = _Stream(run, containerd, ctd, *(a.replace("{probe}", probe) for a in args), **kw)
    deadline = time.monotonic() + 30
    while True:
        assert run("--rm", "-q", "--network", "none", "--name", probe, bb, "true").code == 0
        try:
            s.until(lambda e: e["Action"] == "start" and e["Actor"]["Attributes"].get("name") == probe, timeout=3,
                    probes=True)
            return s
        except AssertionError:
            if time.monotonic() > deadline:
                s.stop()
                raise


def test_events_show_a_container_lifecycle_in_order(run, bb, containerd, ctd):
    s = _live_stream(run, containerd, ctd, bb, "--filter", "container=life", "--filter", "container=life2",
                     "--filter", "container={probe}")
    try:
        assert run("create", "--name", "life", "--label", "tier=web", "--network", "none", bb,
                   "sh", "-c", "sleep 300").code == 0
        assert run("start", "life").code == 0
        assert run("pause", "life").code == 0
        assert run("unpause", "life").code == 0
        assert run("rename", "life", "life2").code == 0
        assert run("kill", "life2").code == 0
        assert run("rm", "life2").code == 0
        got = s.until(lambda e: e["Action"] == "destroy")
    finally:
        s.stop()
    actions = [e["Action"] for e in got]
    assert actions == ["create", "start", "pause", "unpause", "rename", "die", "destroy"], actions
    cid = got[0]["id"]
    assert all(e["id"] == cid and e["Type"] == "container" for e in got)
    attrs = got[0]["Actor"]["Attributes"]
    assert attrs["name"] == "life" and attrs["tier"] == "web" and "busybox" in attrs["image"]
    assert got[4]["Actor"]["Attributes"]["name"] == "life2" and got[4]["Actor"]["Attributes"]["oldName"] == "/life"
    assert got[5]["Actor"]["Attributes"]["exitCode"] == "137"
    assert got[-1]["Actor"]["Attributes"]["name"] == "life2"  # still named after the container is gone


def test_events_since_replays_records_and_until_ends(run, bb):
    assert run("--name", "past", "--network", "none", bb, "sh", "-c", "exit 3").code == 3
    r = run("events", "--since", "5m", "--until", "0s", "--filter", "container=past")
    assert r.code == 0, r.err
    got = [json.loads(x) for x in r.lines]
    assert [e["Action"] for e in got] == ["create", "start", "die"]
    assert got[-1]["Actor"]["Attributes"]["exitCode"] == "3"
    assert got[0]["time"] <= got[1]["time"] <= got[2]["time"]
    text = run("events", "--since", "5m", "--until", "0s", "--filter", "event=die", "--format",
               "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert text.lines == ["die past 3"]
    assert run("events", "--since", "1m", "--until", "2m").code == 2  # --until before --since
    r = run("events", "--filter", "colour=red")
    assert r.code == 2 and "invalid filter" in r.err


def test_events_since_then_the_live_stream_without_gap_or_repeat(run, bb, containerd, ctd):
    assert run("--name", "again", "--network", "none", bb, "sh", "-c", "exit 4").code == 4
    s = _Stream(run, containerd, ctd, "--since", "10m", "--filter", "container=again")
    try:
        past = s.until(lambda e: e["Action"] == "die")
        assert run("start", "again").code == 0
        live = s.until(lambda e: e["Action"] == "die")
    finally:
        s.stop()
    assert [e["Action"] for e in past] == ["create", "start", "die"]
    assert [e["Action"] for e in live] == ["start", "die"] and live[-1]["Actor"]["Attributes"]["exitCode"] == "4"


def test_events_survive_a_containerd_restart(run, bb, containerd, ctd):
    s = _live_stream(run, containerd, ctd, bb, "--filter", "event=start")
    try:
        containerd.restart()
        assert wait_for(lambda: "reopened" in s.err, timeout=30), s.err
        assert run("-d", "--name", "after", "--network", "none", bb, "sleep", "300").code == 0
        got = s.until(lambda e: e["Actor"]["Attributes"].get("name") == "after")
        assert got[-1]["Action"] == "start"
        assert s.proc.poll() is None
    finally:
        err = s.stop()
    assert "reopened" in err


def test_events_end_with_a_clear_message_when_containerd_stays_away(run, bb, containerd, ctd):
    s = _live_stream(run, containerd, ctd, bb, env={"CTK_EVENTS_RECONNECT_TIMEOUT": "2"})
    try:
        containerd._terminate()
        code = s.proc.wait(30)
    finally:
        if containerd.proc is None:
            containerd.start()
        err = s.stop()
    assert code == 1
    assert "did not come back within 2s" in err and "Traceback" not in err


def test_port_lists_and_looks_up_like_docker(run, bb):
    r = run("-d", "--name", "pub", "-p", "127.0.0.1::80", "-p", "127.0.0.1::53/udp", bb, "sleep", "300")
    assert r.code == 0, r.err
    lines = run("port", "pub").lines
    assert [ln.split(" -> ")[0] for ln in lines] == ["53/udp", "80/tcp"]
    assert all(re.fullmatch(r"\d+/(tcp|udp) -> 127\.0\.0\.1:\d+", ln) for ln in lines), lines
    host = run("port", "pub", "80").lines
    assert host == [lines[1].split(" -> ")[1]]
    r = run("port", "pub", "81")
    assert r.code == 1 and "no public port '81' published for pub" in r.err
    r = run("port", "pub", "80/udp")
    assert r.code == 1 and "no public port '80/udp' published for pub" in r.err
    r = run("port", "pub", "http")
    assert r.code == 1 and "invalid port (http)" in r.err


def test_events_show_health_status_and_ignore_forged_health_events(run, bb, containerd, ctd):
    from ctk_run import health_events

    assert run("-d", "--name", "doc", "--network", "none", bb, "sleep", "300").code == 0
    cid = json.loads(run("inspect", "doc").out)[0]["Id"]
    s = _live_stream(run, containerd, ctd, bb)
    try:
        ctd.events.publish(health_events.TOPIC, health_events.TYPE_URL, b"{not json")
        ctd.events.publish(health_events.TOPIC, health_events.TYPE_URL, b'{"id": 5, "status": "healthy"}')
        ctd.events.publish(health_events.TOPIC, health_events.TYPE_URL, health_events.encode("f" * 64, "healthy"))
        ctd.events.publish(health_events.TOPIC, health_events.TYPE_URL, health_events.encode(cid, "pwned"))
        ctd.events.publish(health_events.TOPIC, health_events.TYPE_URL, health_events.encode(cid, "healthy"))
        got = s.until(lambda e: e["Action"].startswith("health_status"))
    finally:
        s.stop()
    assert got[-1]["Action"] == "health_status: healthy" and got[-1]["id"] == cid
    assert got[-1]["Actor"]["Attributes"]["name"] == "doc"
    assert all(not e["Action"].startswith("health_status") for e in got[:-1])  # the forged ones never showed


def test_events_end_quietly_on_ctrl_c(run, bb, containerd, ctd):
    import signal

    s = _live_stream(run, containerd, ctd, bb)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(15) == 130
    assert "error" not in s.stop()
