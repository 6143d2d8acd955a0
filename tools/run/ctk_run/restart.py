"""Docker's restart policies, decided by ctk itself on top of containerd 1.6's restart monitor.

The monitor only knows a desired state (``containerd.io/restart.status``): while it says ``running`` the
monitor recreates the task. ctk keeps that label ``running`` while the policy wants restarts, and the
container's logger (which sees every exit) flips it to ``stopped`` when the policy says no more.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from ctk_shared.errors import UsageError

from . import labels as L

NAMES = ("no", "always", "unless-stopped", "on-failure")


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    max_retries: int = 0  # on-failure only; 0 = unlimited

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.name == "on-failure" and self.max_retries else self.name


def parse_policy(text: str) -> RestartPolicy:
    name, sep, count = (text or "no").partition(":")
    if name not in NAMES:
        raise UsageError(f"invalid restart policy {text!r} (no, always, unless-stopped, on-failure[:N])")
    if sep and name != "on-failure":
        raise UsageError(f"invalid restart policy {text!r}: maximum retry count only applies to on-failure")
    if sep:
        if not count.isdigit():
            raise UsageError(f"invalid restart policy {text!r}: maximum retry count must be a number")
        return RestartPolicy(name, int(count))
    return RestartPolicy(name)


def should_restart(policy: RestartPolicy, exit_code: int, restart_count: int, explicitly_stopped: bool) -> bool:
    if explicitly_stopped or policy.name == "no":
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if exit_code == 0:
        return False
    return policy.max_retries == 0 or restart_count < policy.max_retries


def monitored(policy: RestartPolicy) -> bool:
    """Policies containerd's restart monitor carries out (it restarts whatever is marked running).

    on-failure is not given to the monitor: its decision depends on the exit code, and the monitor could
    restart the task before the logger has read it. The logger restarts those tasks itself (:func:`relaunch`).
    """
    return policy.name in ("always", "unless-stopped")


def relaunch(client, container_id: str, log_uri: str) -> None:  # type: ignore[no-untyped-def]
    """Replace the exited task with a new one, as the restart monitor does (used for on-failure)."""
    try:
        c = client.containers.get(container_id)
        policy = parse_policy(c.labels.get(L.RESTART_POLICY, "no"))
        if monitored(policy):
            return
        try:
            client.tasks.delete(container_id)
        except Exception:  # noqa: BLE001 - already gone
            pass
        mounts = client.snapshots(c.snapshotter).mounts(c.snapshot_key or container_id)
        client.tasks.create(container_id, mounts, stdout=log_uri, stderr=log_uri)
        client.tasks.start(container_id)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        sys.stderr.write(f"ctk-run-logger: restarting {container_id[:12]} failed: {e}\n")


def relaunch_main(argv: list[str]) -> None:
    """Entry point of the short-lived process the logger spawns: address, namespace, container id, log URI."""
    from ctk_shared.containerd import Client

    address, namespace, cid, uri = argv
    relaunch(Client(address, namespace), cid, uri)


def remove_main(argv: list[str]) -> None:
    """After the exit of a container run with ``--rm`` (detached too, as Docker allows): remove it whole."""
    import os
    import shutil
    import time

    from ctk_shared.containerd import Client

    address, namespace, cid = argv
    client = Client(address, namespace)
    try:
        c = client.containers.get(cid)
        if c.labels.get(L.AUTO_REMOVE) != "true":
            return
        for _ in range(100):  # the shim finishes with the logger first
            try:
                client.tasks.delete(cid)
                break
            except Exception as e:  # noqa: BLE001
                if "not found" in str(e).lower():
                    break
                time.sleep(0.1)
        client.containers.delete(cid)
        try:
            client.snapshots(c.snapshotter).remove(c.snapshot_key or cid)
        except Exception:  # noqa: BLE001 - the container record roots it; GC takes it anyway
            pass
        if c.labels.get(L.LOG_PATH):
            shutil.rmtree(os.path.dirname(c.labels[L.LOG_PATH]), ignore_errors=True)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        sys.stderr.write(f"ctk-run-logger: removing {cid[:12]} failed: {e}\n")


def on_exit(client, container_id: str, exit_code: int | None = None) -> bool:  # type: ignore[no-untyped-def]
    """Record the exit and apply the policy; never raises (it runs in the background logger)."""
    from datetime import datetime, timezone

    try:
        c = client.containers.get(container_id)
        if exit_code is None:
            exit_code = client.tasks.wait(container_id, timeout=5).exit_status
        policy = parse_policy(c.labels.get(L.RESTART_POLICY, "no"))
        count = int(c.labels.get(L.RESTART_COUNT, "0") or 0)
        stopped = c.labels.get(L.EXPLICITLY_STOPPED) == "true"
        restart = should_restart(policy, exit_code, count, stopped)
        update = {L.EXIT_CODE: str(exit_code),
                  L.FINISHED_AT: datetime.now(timezone.utc).isoformat(timespec="microseconds")}
        if restart:
            update[L.RESTART_COUNT] = str(count + 1)
        elif L.RESTART_STATUS in c.labels:
            update[L.RESTART_STATUS] = "stopped"
        client.containers.update_labels(container_id, update)
        return restart
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        sys.stderr.write(f"ctk-run-logger: restart decision for {container_id[:12]} failed: {e}\n")
        return False
