"""Docker's restart policies, decided by ctk itself on top of containerd 1.6's restart monitor.

The monitor only knows a desired state (``containerd.io/restart.status``): while it says ``running`` the
monitor recreates the task. ctk keeps that label ``running`` while the policy wants restarts, and the
container's logger (which sees every exit) flips it to ``stopped`` when the policy says no more.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

from ctk_shared.errors import UsageError

from . import labels as L

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the logger imports this module)
if TYPE_CHECKING:
    from ctk_shared.containerd import Client

NAMES = ("no", "always", "unless-stopped", "on-failure")


@dataclass(frozen=True)
class RestartPolicy:
    """A ``--restart`` value, as Docker spells it (``on-failure:3``), kept in the container's labels."""

    name: str = "no"
    max_retries: int = 0  # on-failure only; 0 = unlimited

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.name == "on-failure" and self.max_retries else self.name


def parse_policy(text: str) -> RestartPolicy:
    """``--restart`` as Docker reads it: ``no`` (also empty), ``always``, ``unless-stopped``, ``on-failure[:N]``."""
    name, sep, count = (text or "no").partition(":")
    if sep and not name:
        raise UsageError(f"invalid restart policy {text!r}: no policy provided before colon")
    if name not in NAMES:
        raise UsageError(f"invalid restart policy {text!r}: unknown policy; use one of 'no', 'always', "
                         "'on-failure' or 'unless-stopped'")
    retries = 0
    if count:
        try:
            retries = int(count)
        except ValueError:
            raise UsageError(f"invalid restart policy {text!r}: maximum retry count must be an integer") from None
    if retries and name != "on-failure":
        raise UsageError(f"invalid restart policy {text!r}: maximum retry count can only be used with 'on-failure'")
    if retries < 0:
        raise UsageError(f"invalid restart policy {text!r}: maximum retry count cannot be negative")
    return RestartPolicy(name, retries)


def should_restart(policy: RestartPolicy, exit_code: int, restart_count: int, explicitly_stopped: bool) -> bool:
    """Docker's restart manager: an explicit stop cancels every policy; ``always`` and ``unless-stopped``
    restart after any exit; ``on-failure[:N]`` after a non-zero exit while fewer than N restarts were done
    (N = 0: no limit)."""
    if explicitly_stopped or policy.name == "no":
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name != "on-failure" or exit_code == 0:
        return False
    return policy.max_retries == 0 or restart_count < policy.max_retries


def monitored(policy: RestartPolicy, labels: Mapping[str, str] | None = None) -> bool:
    """Policies containerd's restart monitor carries out (it restarts whatever is marked running).

    on-failure is not given to the monitor: its decision depends on the exit code, and the monitor could
    restart the task before the logger has read it. Nor is a container with a terminal (``labels`` say so):
    the monitor creates tasks without one, which runc refuses. The logger restarts those itself (:func:`relaunch`).
    """
    return policy.name in ("always", "unless-stopped") and (labels or {}).get(L.TTY) != "true"


def relaunch(client: Client, container_id: str, log_uri: str) -> bool:
    """Replace the exited task with a new one, as the restart monitor does (used for on-failure); False when
    containerd could not be reached (try again: its delete first clears a task a restart left unmade)."""
    try:
        c = client.containers.get(container_id)
        policy = parse_policy(c.labels.get(L.RESTART_POLICY, "no"))
        if monitored(policy, c.labels):
            return True  # on-failure only: the monitor restarts the others
        try:
            client.tasks.delete(container_id)
        except Exception:  # noqa: BLE001 - already gone
            pass
        mounts = client.snapshots(c.snapshotter).mounts(c.snapshot_key or container_id)
        tty = c.labels.get(L.TTY) == "true"
        stdin = ""
        if tty and c.labels.get(L.STDIN_OPEN) == "true" and c.labels.get(L.LOG_PATH):
            import os
            import stat

            path = os.path.join(os.path.dirname(c.labels[L.LOG_PATH]), "stdin")  # lifecycle.stdin_fifo's
            try:
                stdin = path if stat.S_ISFIFO(os.lstat(path).st_mode) else ""
            except OSError:
                pass  # gone: the new task runs without input rather than not at all
        uri = log_uri + "&tty=1" if tty and "&tty=1" not in log_uri else log_uri
        client.tasks.create(container_id, mounts, stdin=stdin, stdout=uri, stderr=uri, terminal=tty)
        client.tasks.start(container_id)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        if NOT_RUNNING in str(e):
            return False
        sys.stderr.write(f"ctk-run-logger: restarting {container_id[:12]} failed: {e}\n")
    return True


def relaunch_main(argv: list[str]) -> None:
    """Entry point of the short-lived process the logger spawns: address, namespace, container id, log URI.
    A containerd that stops meanwhile (even during the create) is waited for, up to :data:`RETRY_FOR`."""
    import time

    from ctk_shared.containerd import Client

    address, namespace, cid, uri = argv
    deadline = time.monotonic() + RETRY_FOR
    while True:
        client = Client(address, namespace)  # fresh each time: containerd may have restarted
        try:
            if relaunch(client, cid, uri):
                return
        finally:
            client.close()
        if time.monotonic() > deadline:
            sys.stderr.write(f"ctk-run-logger: restarting {cid[:12]} failed: containerd did not come back\n")
            return
        time.sleep(1.0)


def release_main(argv: list[str]) -> None:
    """After the exit of a networked container that stays down: delete its task, so that ctk-net's postStop
    hook frees its address and host ports at once, as Docker does when a container stops (its exit code is
    already in the labels)."""
    import time

    from ctk_shared.containerd import Client

    address, namespace, cid = argv
    client = Client(address, namespace)
    for _ in range(100):  # the shim finishes with the logger first
        try:
            info = client.tasks.get(cid)
            if info.status != "stopped":
                return  # started again in between (ctk-run start): not ours to touch
            client.tasks.delete(cid)
            return
        except Exception as e:  # noqa: BLE001 - a background process: report and carry on
            if "not found" in str(e).lower():
                return
            time.sleep(0.1)
    sys.stderr.write(f"ctk-run-logger: releasing the network of {cid[:12]} failed\n")


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
            cdir = os.path.dirname(c.labels[L.LOG_PATH])  # <data-root>/<namespace>/containers/<id>
            shutil.rmtree(cdir, ignore_errors=True)
            if c.labels.get(L.VOLUMES):
                from pathlib import Path

                from .volumes import remove_anonymous

                remove_anonymous(client, Path(cdir).parent.parent, c)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        sys.stderr.write(f"ctk-run-logger: removing {cid[:12]} failed: {e}\n")


def _exit_code(client: Client, container_id: str, labels: dict[str, str], wait: bool = True) -> int | None:
    """How the task ended: Wait (at once once it has exited; Timeout if it still runs), else what whoever
    deleted the task recorded, else None. ``wait=False``: only the recorded code (the task is being deleted,
    and its shim answers no Wait until the logger has exited)."""
    from ctk_shared.errors import NotFound, Timeout, Unavailable

    try:
        if not wait:
            raise NotFound("not asked")
        return int(client.tasks.wait(container_id, timeout=5).exit_status)
    except Timeout:
        raise
    except NotFound:
        pass  # the task was deleted already (rm -f, or our own delete of a policy-less foreground run)
    except Exception as e:  # noqa: BLE001 - try the next source
        if isinstance(e, Unavailable) and NOT_RUNNING in str(e):
            raise  # containerd itself is down: the recorded code would be the last run's (decide_when_reachable)
        code = _stopped_status(client, container_id, e)
        if code is not None:
            return code
    recorded = labels.get(L.EXIT_CODE, "")
    return int(recorded) if recorded.lstrip("-").isdigit() else None


NOT_RUNNING = "containerd is not running"  # ctk_shared.containerd.address.not_running's words


def _stopped_status(client: Client, container_id: str, e: Exception) -> int | None:
    """The task's exit status from its state when its Wait failed (``e``: the shim going away), else None."""
    sys.stderr.write(f"ctk-run-logger: waiting for {container_id[:12]}: {e}\n")
    try:
        info = client.tasks.get(container_id)
        if info.status == "stopped":
            return int(info.exit_status)
    except Exception:  # noqa: BLE001
        pass
    return None


def decide_exit(client: Client, container_id: str, exit_code: int | None = None,
                wait: bool = True) -> tuple[bool, dict[str, str]] | None:
    """:func:`on_exit`, also returning the container's labels as they were (the logger's next steps need
    them); None when no decision could be made (the task still runs, containerd unreachable). Never raises."""
    try:
        return _decide_exit(client, container_id, exit_code, wait)
    except Exception as e:  # noqa: BLE001 - a background process: report and carry on
        _no_decision(container_id, e)
        return None


def _no_decision(container_id: str, e: Exception) -> None:
    from ctk_shared.errors import Timeout

    why = "it is still running" if isinstance(e, Timeout) else str(e)
    sys.stderr.write(f"ctk-run-logger: no restart decision for {container_id[:12]}: {why}\n")


RETRY_FOR = 300.0  # how long an exit's decision waits for an unreachable containerd (a restart, an upgrade)


def decide_when_reachable(address: str, namespace: str, container_id: str, wait: bool = True,
                          retry_for: float = RETRY_FOR) -> tuple[bool, dict[str, str]] | None:
    """:func:`decide_exit` for the logger, tried again while containerd cannot be reached.

    An exit while containerd restarts must still count: with ``always`` the restart monitor restarts the task
    once containerd is back, but the restart count (ours) and the exit code would not move, and an
    ``on-failure`` container (restarted by us, not the monitor) would stay down for good. A fresh client per
    try: a channel that failed to connect backs off for longer than containerd takes to come back. Never
    raises but what the caller's signal handler raises (the shim deleting the task sends SIGTERM)."""
    import time

    from ctk_shared.containerd import Client
    from ctk_shared.errors import Unavailable

    deadline = time.monotonic() + retry_for
    pause = 0.2
    while True:
        client = Client(address, namespace)
        try:
            return _decide_exit(client, container_id, None, wait)
        except Unavailable as e:
            if time.monotonic() + pause > deadline:
                _no_decision(container_id, e)
                return None
        except Exception as e:  # noqa: BLE001 - a background process: report and carry on
            _no_decision(container_id, e)
            return None
        finally:
            client.close()
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _decide_exit(client: Client, container_id: str, exit_code: int | None,
                 wait: bool) -> tuple[bool, dict[str, str]]:
    """:func:`decide_exit`'s work; raises what containerd answers (Unavailable: try again later)."""
    from datetime import datetime

    labels = dict(client.containers.get(container_id).labels)
    if exit_code is None:
        exit_code = _exit_code(client, container_id, labels, wait)
    try:
        policy = parse_policy(labels.get(L.RESTART_POLICY) or "no")
    except UsageError:
        policy = RestartPolicy("no")  # a label someone else wrote: do not resurrect on a guess
    try:
        count = int(labels.get(L.RESTART_COUNT) or 0)
    except ValueError:
        count = 0
    stopped = labels.get(L.EXPLICITLY_STOPPED) == "true"
    # an unknown exit code (the task was deleted under us) never counts as a failure
    restart = should_restart(policy, 0 if exit_code is None else exit_code, count, stopped)
    update = {L.FINISHED_AT: datetime.now(UTC).isoformat(timespec="microseconds")}
    if exit_code is not None:
        update[L.EXIT_CODE] = str(exit_code)
    if restart:
        update[L.RESTART_COUNT] = str(count + 1)  # restart.status stays "running": the monitor restarts it
    elif L.RESTART_STATUS in labels:
        update[L.RESTART_STATUS] = "stopped"
    client.containers.update_labels(container_id, update)
    return restart, labels


NOT_CREATED = "container not created"  # a runc shim's answer about a task it holds no container for


def clear_unmade_task(client: Client, container_id: str) -> bool:
    """Delete the task containerd lists for the container although its shim never made it; True if there was one.

    It is left when containerd stops while a task is being created (the shim is started, runc's create has
    not finished): on its return containerd 1.6 reloads that shim as the container's task, whose Get answers
    NotFound "container not created" while a new task's Create answers "already exists". Its restart monitor
    then retries that Create forever, and ``ctk-run start`` fails the same way. Delete reaps the shim and its
    bundle (it too answers NotFound, after doing so)."""
    from ctk_shared.errors import NotFound

    try:
        client.tasks.get(container_id)
        return False
    except NotFound as e:
        if NOT_CREATED not in str(e):
            return False  # no task at all
    try:
        client.tasks.delete(container_id)
    except NotFound:
        pass
    return True


WATCH_FOR = 300.0  # how long a restart by the monitor is watched (containerd may be restarting meanwhile)
WATCH_EVERY = 0.5


def watch_restart(address: str, namespace: str, container_id: str, watch_for: float = WATCH_FOR) -> None:
    """Follow a restart that containerd's monitor is to carry out until the new task runs, clearing a task
    left unmade by a containerd restart in between (:func:`clear_unmade_task`), which would otherwise keep
    the container down for good. The logger that decided the restart cannot do this itself: deleting the
    old task (the monitor's first step) ends it. Ends too when the container is stopped, removed, or its
    policy no longer wants it running. Never raises."""
    import time

    from ctk_shared.containerd import Client
    from ctk_shared.errors import NotFound

    deadline = time.monotonic() + watch_for
    client: Client | None = None
    try:
        while time.monotonic() < deadline:
            time.sleep(WATCH_EVERY)
            client = client or Client(address, namespace)
            try:
                if client.containers.get(container_id).labels.get(L.RESTART_STATUS) != "running":
                    return
                try:
                    if client.tasks.get(container_id).status in ("running", "paused", "pausing"):
                        return  # restarted (a "created" one is not yet: containerd may stop before its start)
                except NotFound:
                    if clear_unmade_task(client, container_id):
                        sys.stderr.write(f"ctk-run-logger: {container_id[:12]}: cleared a task containerd left "
                                         "unmade across its restart\n")
            except NotFound:
                return  # the container was removed
            except Exception:  # noqa: BLE001 - containerd down or restarting: look again, on a new channel
                client.close()
                client = None
    finally:
        if client is not None:
            client.close()


def watch_main(argv: list[str]) -> None:
    """Entry point of the short-lived process the logger spawns: address, namespace, container id."""
    address, namespace, cid = argv
    watch_restart(address, namespace, cid)


def on_exit(client: Client, container_id: str, exit_code: int | None = None) -> bool:
    """Record the exit of the container's task (exit code, time) and apply its restart policy: True when it
    is to be restarted (the count is incremented; ``restart.status`` stays ``running`` for the monitor),
    False otherwise (``restart.status`` becomes ``stopped`` if present). Never raises: it runs in the logger."""
    decision = decide_exit(client, container_id, exit_code)
    return bool(decision and decision[0])
