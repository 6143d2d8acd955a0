"""Resource figures of a running container read straight from the kernel: its cgroup files and its netns.

Why files and not containerd's ``Tasks.Metrics``: one RPC per container through the shim costs more than a
handful of small reads, and ``stats`` must stay fast with many containers. The cgroup of a container is taken
from ``/proc/PID/cgroup`` of its init process, so it is right whatever ``linux.cgroupsPath`` or cgroup driver
made it; the files are found under the host's cgroup mounts (``/proc/self/mountinfo``), cgroup v1 controllers
first (a hybrid host such as this project's keeps its controllers on v1), else the unified v2 hierarchy.

What is read (Docker's choices):

- CPU: ``cpuacct.usage`` (v1) or ``usage_usec`` of ``cpu.stat`` (v2), in ns; the percentage needs two samples.
- memory: usage minus the inactive page cache (``total_inactive_file`` v1, ``inactive_file`` v2), as Docker's
  CLI does; the limit is ``memory.limit_in_bytes``/``memory.max``, capped at the host's ``MemTotal``.
- block I/O: ``blkio.throttle.io_service_bytes_recursive`` (v1) or ``rbytes``/``wbytes`` of ``io.stat`` (v2).
- PIDs: ``pids.current``; network: ``/proc/PID/net/dev`` of the container's netns without ``lo`` (nothing for a
  container in the host's netns).

Every read is bounded and a missing or odd file gives 0, never an error: a container may stop between reads.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache

_MAX_READ = 1 << 20  # a cgroup or /proc file this size is not one we know


@dataclass(frozen=True)
class Sample:
    """One reading of a container; ``at`` is a monotonic time in seconds."""

    at: float
    cpu_ns: int = 0
    mem_usage: int = 0
    mem_limit: int = 0
    net_rx: int = 0
    net_tx: int = 0
    blk_read: int = 0
    blk_write: int = 0
    pids: int = 0


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_READ).decode("utf-8", "replace")
    except OSError:
        return ""


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


# -- parsers (pure) --------------------------------------------------------------------------------------------
def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` → {controller: path}; the v2 entry (``0::/path``) is under the key ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            out[name.removeprefix("name=") if name.startswith("name=") else name] = path
    return out


def parse_mountinfo(text: str) -> dict[str, tuple[str, str]]:
    """``/proc/self/mountinfo`` → {controller: (root, mount point)} for v1 hierarchies, ``""`` for cgroup2."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if tail[0] == "cgroup2":
            out.setdefault("", (root, point))
        elif tail[0] == "cgroup":
            for opt in tail[2].split(","):
                if opt not in ("rw", "ro") and "=" not in opt:
                    out.setdefault(opt, (root, point))
    return out


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``memory.stat``/``cpu.stat`` lines ``key value`` → dict (other lines skipped)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """(read, write) bytes of ``blkio.throttle.io_service_bytes_recursive`` (``MAJ:MIN Read N`` lines)."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            op = parts[1].lower()
            if op == "read":
                read += int(parts[2])
            elif op == "write":
                write += int(parts[2])
    return read, write


def parse_io_stat(text: str) -> tuple[int, int]:
    """(read, write) bytes of v2 ``io.stat`` (``MAJ:MIN rbytes=N wbytes=N …``), summed over devices."""
    read = write = 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if value.isdigit():
                if key == "rbytes":
                    read += int(value)
                elif key == "wbytes":
                    write += int(value)
    return read, write


def parse_net_dev(text: str) -> tuple[int, int]:
    """(received, sent) bytes over every interface of ``/proc/PID/net/dev`` except loopback."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        cols = rest.split()
        if not sep or name.strip() == "lo" or len(cols) < 9:
            continue
        if cols[0].isdigit() and cols[8].isdigit():
            rx += int(cols[0])
            tx += int(cols[8])
    return rx, tx


# -- the host --------------------------------------------------------------------------------------------------
@cache
def _mounts() -> dict[str, tuple[str, str]]:
    return parse_mountinfo(_read("/proc/self/mountinfo"))


@cache
def host_memory() -> int:
    """The host's MemTotal in bytes: the limit Docker shows for a container without one."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return 0


def _host_netns(pid: int) -> bool:
    """Whether the process shares our network namespace (``--network host``): Docker shows no network figures
    then, rather than the host's totals."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def _dir(groups: dict[str, str], controller: str) -> str | None:
    """The directory of the container's cgroup for a v1 ``controller`` (``""``: the v2 unified one)."""
    mount = _mounts().get(controller)
    path = groups.get(controller)
    if mount is None or path is None:
        return None
    root, point = mount
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    full = os.path.normpath(point + "/" + path.lstrip("/"))
    return full if full == point or full.startswith(point.rstrip("/") + "/") else None


def sample(pid: int) -> Sample:
    """Read the figures of the container whose init process is ``pid`` (zeros for what cannot be read)."""
    at = time.monotonic()
    groups = parse_proc_cgroup(_read(f"/proc/{pid}/cgroup")) if pid > 0 else {}
    if not groups:
        return Sample(at)
    rx, tx = parse_net_dev(_read(f"/proc/{pid}/net/dev")) if not _host_netns(pid) else (0, 0)
    cpu = mem = limit = read = write = pids = 0
    v2 = _dir(groups, "")
    if (d := _dir(groups, "cpuacct")) is not None:
        cpu = _int(_read(f"{d}/cpuacct.usage"))
    elif v2 is not None:
        cpu = parse_flat_keyed(_read(f"{v2}/cpu.stat")).get("usage_usec", 0) * 1000
    if (d := _dir(groups, "memory")) is not None:
        stat = parse_flat_keyed(_read(f"{d}/memory.stat"))
        mem = _int(_read(f"{d}/memory.usage_in_bytes"))
        mem -= min(mem, stat.get("total_inactive_file", stat.get("inactive_file", 0)))
        limit = _int(_read(f"{d}/memory.limit_in_bytes"))
    elif v2 is not None:
        stat = parse_flat_keyed(_read(f"{v2}/memory.stat"))
        mem = _int(_read(f"{v2}/memory.current"))
        mem -= min(mem, stat.get("inactive_file", 0))
        limit = _int(_read(f"{v2}/memory.max"))  # "max" reads as 0: no limit
    total = host_memory()
    if total and (limit <= 0 or limit > total):
        limit = total
    if (d := _dir(groups, "blkio")) is not None:
        read, write = parse_blkio_v1(_read(f"{d}/blkio.throttle.io_service_bytes_recursive"))
    elif v2 is not None:
        read, write = parse_io_stat(_read(f"{v2}/io.stat"))
    if (d := _dir(groups, "pids")) is not None or (d := v2) is not None:
        pids = _int(_read(f"{d}/pids.current"))
    return Sample(at, cpu, mem, limit, rx, tx, read, write, pids)


def cpu_percent(before: Sample, after: Sample) -> float:
    """CPU use between two samples as Docker shows it: 100 % is one CPU busy (so up to N × 100 %)."""
    wall = (after.at - before.at) * 1e9
    used = after.cpu_ns - before.cpu_ns
    if wall <= 0 or used <= 0:
        return 0.0
    return used / wall * 100.0
