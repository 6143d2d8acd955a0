"""``update``: change a container's resource limits and restart policy, running or not.

Every value is parsed before anything is touched, so a bad one changes nothing. Limits go to the running task
through containerd's task Update (runc update: the cgroup files) and into the stored spec, so the next start
keeps them; the restart policy goes into the labels the restart machinery reads (restart.py): ``ctk/…`` for
ctk's own decision at each exit, and containerd's restart monitor's ``status``/``loguri`` for the policies it
carries out. All record changes are one Containers.Update (a cut-short update leaves the old record whole).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctk_shared.errors import Conflict, UsageError

from . import labels as L
from . import lifecycle

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container

    from .restart import RestartPolicy

MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum
CPU_PERIOD = 100000


@dataclass(frozen=True)
class Change:
    """The flags of ``ctk-run update``, parsed and checked; None leaves that setting as it is."""

    memory: int | None = None  # bytes; 0 = no limit
    memory_swap: int | None = None  # memory + swap, bytes; -1 = unlimited swap
    cpus: float | None = None  # 0 = no limit
    pids_limit: int | None = None  # <= 0 = no limit
    restart: RestartPolicy | None = None

    def empty(self) -> bool:
        return all(v is None for v in (self.memory, self.memory_swap, self.cpus, self.pids_limit, self.restart))


def parse_update(*, memory: str | None, memory_swap: str | None, cpus: str | None, pids_limit: str | None,
                 restart: str | None) -> Change:
    """The flags, checked as Docker checks them; UsageError (nothing changed) for a bad one."""
    from .restart import parse_policy
    from .units import check_cpus, parse_bytes, parse_cpus

    mem = parse_bytes(memory) if memory is not None else None
    if mem is not None and 0 < mem < MIN_MEMORY:
        raise UsageError("Minimum memory limit allowed is 6MB")
    swap = None
    if memory_swap is not None:
        swap = -1 if memory_swap.strip() == "-1" else parse_bytes(memory_swap)
        if mem and swap != -1 and swap < mem:
            raise UsageError("Minimum memoryswap limit should be larger than memory limit, see usage")
    cpu = check_cpus(parse_cpus(cpus)) if cpus is not None else None
    pids = None
    if pids_limit is not None:
        try:
            pids = int(pids_limit)
        except ValueError:
            raise UsageError(f'invalid argument "{pids_limit}" for "--pids-limit": not an integer') from None
    change = Change(mem, swap, cpu, pids, parse_policy(restart) if restart is not None else None)
    if change.empty():
        raise UsageError("you must provide one or more flags when using this command",
                         hint="--memory, --memory-swap, --cpus, --pids-limit or --restart")
    return change


def _resources(current: dict[str, Any], ch: Change) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the spec's new ``linux.resources``, the part to hand to the running task)."""
    res = json.loads(json.dumps(current))
    task: dict[str, Any] = {}
    if ch.memory is not None or ch.memory_swap is not None:
        mem = dict(res.get("memory") or {})
        limit = ch.memory if ch.memory is not None else int(mem.get("limit") or 0)  # 0: none
        swap = ch.memory_swap if ch.memory_swap is not None else int(mem.get("swap") or 0)  # 0: unset, -1: no cap
        if swap > 0 and limit <= 0:
            raise UsageError("You should always set the Memory limit when using Memoryswap limit, see usage")
        if ch.memory_swap is None and 0 < swap < limit:
            raise UsageError("Memory limit should be smaller than already set memoryswap limit, update the "
                             "memoryswap at the same time")
        res["memory"] = {**{k: v for k, v in mem.items() if k not in ("limit", "swap")},
                         **({"limit": limit} if limit > 0 else {}), **({"swap": swap} if swap else {})}
        task["memory"] = {"limit": limit if limit > 0 else -1, **({"swap": swap} if swap else {})}
    if ch.cpus is not None:
        cpu = {"period": CPU_PERIOD, "quota": int(round(ch.cpus * CPU_PERIOD)) if ch.cpus else -1}
        res["cpu"] = {**(res.get("cpu") or {}), **cpu}
        task["cpu"] = cpu
    if ch.pids_limit is not None:
        pids = {"limit": ch.pids_limit if ch.pids_limit > 0 else -1}
        res["pids"] = pids
        task["pids"] = pids
    return res, task


def update_container(client: Client, gopts: GlobalOptions, c: Container, ch: Change) -> None:
    from ctk_shared.containerd import Container

    from .restart import monitored

    spec = json.loads(c.spec or b"{}")
    linux = spec.setdefault("linux", {})
    resources, for_task = _resources(linux.get("resources") or {}, ch)
    labels: dict[str, str] = {}
    if ch.restart is not None:
        if ch.restart.name != "no" and c.labels.get(L.AUTO_REMOVE) == "true":
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
        labels.update({L.RESTART_POLICY: str(ch.restart),
                       L.RESTART_POLICY_CTD: str(ch.restart) if ch.restart.name != "no" else ""})
    task = lifecycle.task_of(client, c.id)
    alive = task is not None and task.status in ("running", "paused", "pausing", "created")
    if ch.restart is not None:
        if monitored(ch.restart, c.labels) and alive and c.labels.get(L.EXPLICITLY_STOPPED) != "true":
            # containerd's restart monitor brings it back from now on, with the log it has now
            new = Container(c.id, labels={**c.labels, **labels}, spec=c.spec)
            uri = lifecycle.logger_uri(client, gopts, new) + ("&tty=1" if lifecycle.has_terminal(c) else "")
            labels.update({L.RESTART_STATUS: "running", L.RESTART_LOGURI: uri})
        elif L.RESTART_STATUS in c.labels and not monitored(ch.restart, c.labels):
            labels[L.RESTART_STATUS] = ""  # "stopped" would make the monitor stop a running task
    if for_task and alive:
        client.tasks.update(c.id, for_task)
    fields = [f"labels.{k}" for k in labels]
    values = {k: v for k, v in labels.items() if v != ""}
    if for_task:
        linux["resources"] = resources
        fields.append("spec")
    if fields:
        client.containers.update(Container(c.id, labels=values, spec=json.dumps(spec).encode() if for_task else b""),
                                 fields)
