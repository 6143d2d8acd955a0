"""Docker's defaults for an OCI runtime spec, in one place for every tool that starts processes.

ctk-run builds a full container spec; ctk-build runs ``RUN`` steps. Both want the same baseline as Docker:
the default capability set, the standard mounts (/proc, /dev, /sys …), masked and read-only paths, device
nodes and device-cgroup rules. Only the generic parts live here; policy (which user, which network, which
flags) stays in the tools. Values are plain dicts and lists, ready for ``json.dumps``.
"""
from __future__ import annotations

import resource
from collections.abc import Iterable
from typing import Any

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 << 20
DEFAULT_NOFILE = 1048576

# Docker's default set (moby oci/caps/defaults.go), in Docker's order.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Device nodes every container gets (path, major, minor), and the device-cgroup allow rules
# (containerd's WithDefaultUnixDevices; minor None = any).
DEVICE_NODES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3), ("/dev/random", 1, 8), ("/dev/full", 1, 7), ("/dev/tty", 5, 0), ("/dev/zero", 1, 5),
    ("/dev/urandom", 1, 9),
)
DEVICE_RULES: tuple[tuple[int, int | None], ...] = (
    (1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, None), (5, 2),
)


def default_mounts(*, shm_size: int = DEFAULT_SHM_SIZE, sys_readonly: bool = True,
                   cgroup_readonly: bool = True) -> list[dict[str, Any]]:
    """Docker's default mounts (moby oci/defaults.go), in the order runc must mount them."""
    ro = ["ro"] if sys_readonly else []
    cgroup_ro = ["ro"] if cgroup_readonly else []
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*cgroup_ro, "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


def device_nodes() -> list[dict[str, Any]]:
    return [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
            for p, ma, mi in DEVICE_NODES]


def device_rules() -> list[dict[str, Any]]:
    """Deny all, allow mknod of any device, allow the default nodes and ptys."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"},
                                   {"allow": True, "type": "c", "access": "m"},
                                   {"allow": True, "type": "b", "access": "m"}]
    for major, minor in DEVICE_RULES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules


def nofile_hard() -> int | None:
    """This process's hard RLIMIT_NOFILE (None when unlimited): runc cannot grant a container more."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def default_nofile() -> int:
    """Docker's RLIMIT_NOFILE, capped by what this process may grant."""
    hard = nofile_hard()
    return DEFAULT_NOFILE if hard is None else min(DEFAULT_NOFILE, hard)


def default_rlimits() -> list[dict[str, Any]]:
    """RLIMIT_NOFILE as Docker sets it, capped by what this process may grant."""
    n = default_nofile()
    return [{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}]


def capabilities(caps: Iterable[str] = DEFAULT_CAPS) -> dict[str, list[str]]:
    """The process's capability sets: ``caps`` bounding, effective and permitted; nothing inheritable."""
    c = list(caps)
    return {"bounding": c, "effective": c, "permitted": c, "inheritable": [], "ambient": []}
