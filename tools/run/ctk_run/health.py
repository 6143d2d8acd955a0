"""A container's health state: the file ``ps``/``inspect`` read, and Docker's state machine that updates it.

There is no daemon: the checks are run by ``ctk_run.health_runner``, a child the container's logger starts
(see logger.py), and the state lives in ``health.json`` in the container's directory under the data root
(beside its log), replaced atomically on each probe, so ``ps`` reads one small file per container and no
containerd call. The runner holds an flock on ``health.lock`` there for as long as it runs: a reader that can
take the lock knows nobody is checking (the logger and runner were killed) and says so.

State (Docker's ``State.Health`` plus two ctk fields)::

    {"Status": "starting|healthy|unhealthy", "FailingStreak": 0,
     "Log": [{"Start": …, "End": …, "ExitCode": 0, "Output": "…"}],   # the last 5 probes
     "StartedAt": "<when the container's task started>", "Stopped": "<why checks stopped, or absent>"}

Docker's machine: every probe that exits 0 makes the container ``healthy`` and zeroes the streak; any other
result (a non-zero exit, a timeout, a command that cannot run) adds one to the failing streak, and at
``Retries`` failures in a row the container is ``unhealthy``; while it has never been healthy and is still in
its start period, failures do not count. Only small standard modules are imported (the logger resets the
state before the container starts).
"""
from __future__ import annotations

import json
import os
from typing import Any

STATE_FILE = "health.json"
LOCK_FILE = "health.lock"
MAX_LOG = 5  # Docker keeps the last 5 probes
MAX_OUTPUT = 4096  # …and 4 KiB of each one's output
MAX_STATE_FILE = 64 << 10
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
UNKNOWN = "unknown"  # ctk: the container runs but nothing checks it any more (see ``Stopped``)
STALE_GRACE = 2.0  # seconds a fresh state may go without a runner (the logger is starting it)


def state_path(cdir: str) -> str:
    return os.path.join(cdir, STATE_FILE)


def load(cdir: str) -> dict[str, Any] | None:
    """The stored state, or None (no file, unreadable, not ours): a bounded read of a file under the data root."""
    try:
        fd = os.open(state_path(cdir), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_STATE_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_STATE_FILE:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("Status"), str) else None


def save(cdir: str, doc: dict[str, Any]) -> None:
    """Replace the state file whole (a reader never sees half of it). OSErrors propagate."""
    from ctk_shared.outputs import write_owned

    write_owned(state_path(cdir), json.dumps(doc, separators=(",", ":")).encode())


def reset(cdir: str, started_at: str) -> None:
    """A task starts: ``starting`` with no failing streak, as Docker; the previous probes' log is kept.
    Called by the logger before the container runs, so ``ps`` never shows the last run's status."""
    old = load(cdir) or {}
    log = old.get("Log")
    log = log if isinstance(log, list) else []
    save(cdir, {"Status": STARTING, "FailingStreak": 0, "Log": log[-MAX_LOG:], "StartedAt": started_at})


def record_stop(cdir: str, why: str) -> None:
    """Checks stopped while the container runs (the runner failed repeatedly, cannot reach containerd …)."""
    doc = load(cdir) or {"Status": STARTING, "FailingStreak": 0, "Log": []}
    doc["Stopped"] = why
    try:
        save(cdir, doc)
    except OSError:
        pass


def apply(doc: dict[str, Any], result: dict[str, Any], retries: int, start_period: float, since_start: float) -> str | None:
    """Docker's state machine: fold one probe ``result`` (Start, End, ExitCode, Output) into ``doc``; the new
    status when it changed, else None. ``since_start``: seconds from the task's start to the probe's start."""
    old = doc.get("Status")
    if result["ExitCode"] == 0:
        doc["FailingStreak"] = 0
        doc["Status"] = HEALTHY
    elif not (old == STARTING and since_start < start_period):  # failures in the start period do not count
        doc["FailingStreak"] = int(doc.get("FailingStreak") or 0) + 1
        if doc["FailingStreak"] >= retries:
            doc["Status"] = UNHEALTHY
    log = [e for e in doc.get("Log") or [] if isinstance(e, dict)]
    log.append(result)
    doc["Log"] = log[-MAX_LOG:]
    return doc["Status"] if doc["Status"] != old else None


def bounded_output(data: bytes) -> str:
    """A probe's output as the log keeps it: at most :data:`MAX_OUTPUT` bytes, decoded leniently."""
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace")


def runner_alive(cdir: str) -> bool:
    """True when a health runner holds the lock (a non-blocking flock attempt that fails)."""
    import fcntl

    try:
        fd = os.open(os.path.join(cdir, LOCK_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops our lock, if we got it
    return False


def _age(text: str | None) -> float:
    from datetime import UTC, datetime

    if not text:
        return 1e9
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 1e9
    return (datetime.now(UTC) - (t if t.tzinfo else t.replace(tzinfo=UTC))).total_seconds()


def current(cdir: str, running: bool) -> dict[str, Any] | None:
    """The state as ``ps``/``inspect`` show it; None when the container has no health state. While the
    container runs but no runner holds the lock (the logger takes it before starting the runner and hands
    it over; a grace covers a task that is just starting), the status is ``unknown`` and ``Stopped`` says
    why, instead of a last status that nothing keeps true any more."""
    doc = load(cdir)
    if doc is None:
        return None
    if running and not doc.get("Stopped") and not runner_alive(cdir) and _age(doc.get("StartedAt")) > STALE_GRACE:
        doc["Stopped"] = ("the health check runner is not running (its logger and it were killed?); "
                          "checks resume when the container is started again")
    if running and doc.get("Stopped"):
        doc["Status"] = UNKNOWN
    if not running:
        doc["Status"] = UNHEALTHY  # Docker's: a container whose checks stopped with it reads as unhealthy
    return doc


def ps_suffix(doc: dict[str, Any] | None) -> str:
    """What ``ps`` appends to ``Up …``: `` (healthy)``, `` (health: starting)``, `` (unhealthy)``."""
    if not doc:
        return ""
    status = doc.get("Status")
    if status in (HEALTHY, UNHEALTHY):
        return f" ({status})"
    return f" (health: {status if status in (STARTING, UNKNOWN) else UNKNOWN})"


def inspect_value(doc: dict[str, Any]) -> dict[str, Any]:
    """``State.Health`` as Docker shows it (Status, FailingStreak, Log), plus ``Stopped`` when checks stopped."""
    out = {"Status": doc.get("Status", STARTING), "FailingStreak": int(doc.get("FailingStreak") or 0),
           "Log": [e for e in doc.get("Log") or [] if isinstance(e, dict)][-MAX_LOG:]}
    if doc.get("Stopped"):
        out["Stopped"] = doc["Stopped"]
    return out
