"""Which process made a lease, and whether that process is still running.

A lease expires after a day, so a crashed ``ctk-pull`` pins what it made (an ``extract-*`` snapshot of a
few hundred MiB) until then. To reclaim that sooner without ever touching the work of a pull that is still
going, every lease ctk creates carries its maker's identity, and only a lease whose maker is provably gone
is reclaimed:

* the pid alone is not enough: pids are reused, so the process's start time (``/proc/PID/stat`` field 22,
  clock ticks since boot) is recorded too;
* after a reboot pids and start times restart, so the boot id is recorded;
* a ctk in another pid namespace (in a container, talking to the host's containerd) sees other pids, so its
  pid namespace is recorded, and a lease from another namespace is never judged: it waits for its expiry.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache

OWNER_PID = "ctk/owner.pid"
OWNER_START = "ctk/owner.start"
OWNER_BOOT = "ctk/owner.boot"
OWNER_PIDNS = "ctk/owner.pidns"


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks after boot); None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read(4096)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""  # exists but unreadable: treat as alive (unknown), never as gone
    # the command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'
    fields = data.rpartition(b")")[2].split()
    return fields[19].decode() if len(fields) > 19 else ""


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read(64).strip()
    except OSError:
        return ""


@cache
def _pidns() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def owner_labels() -> dict[str, str]:
    """The labels that name this process as a lease's owner."""
    pid = os.getpid()
    return {OWNER_PID: str(pid), OWNER_START: _start_ticks(pid) or "", OWNER_BOOT: _boot_id(),
            OWNER_PIDNS: _pidns()}


def owner_gone(labels: Mapping[str, str]) -> bool:
    """True only when the owner named by ``labels`` certainly no longer runs: same boot and pid namespace as
    ours, and the pid is free or belongs to a process started at another time. A lease without owner labels
    (an older ctk, another tool) or from another pid namespace is never judged gone."""
    pid = labels.get(OWNER_PID, "")
    if not pid.isdigit() or labels.get(OWNER_PIDNS) != _pidns() or not _pidns():
        return False
    if labels.get(OWNER_BOOT) != _boot_id():
        return bool(_boot_id() and labels.get(OWNER_BOOT))  # made before a reboot: its process is gone
    ticks = _start_ticks(int(pid))
    if ticks is None:
        return True
    return bool(ticks and labels.get(OWNER_START) and ticks != labels[OWNER_START])
