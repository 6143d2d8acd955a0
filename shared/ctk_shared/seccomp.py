"""Seccomp: Docker's default profile, and Docker-format profiles turned into the OCI form.

ctk-run applies it to containers (``--security-opt seccomp=``), ctk-build to ``RUN`` steps (as BuildKit does).

A Docker profile (``--security-opt seccomp=profile.json``) has ``defaultAction``, ``archMap`` (or the older
``architectures``) and ``syscalls`` whose entries may carry ``includes``/``excludes`` conditions on the
container's capabilities, the CPU architecture and the kernel version. The OCI runtime spec has no
conditions, so a profile is *resolved* for one container (its bounding capabilities) on one host
(architecture, kernel): entries whose conditions fail are dropped, and the rest are copied across.

The default profile is Docker's: deny with EPERM, allow about 350 syscalls, and open more of them as the
container gets capabilities (``--cap-add SYS_ADMIN`` allows ``mount``, ``unshare``, namespace flags in
``clone``...). It is written here as a compact table; ``docker_default_profile()`` expands it into Docker's
JSON format (write it to a file, edit it, pass it back with ``seccomp=``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ctk_shared.errors import UsageError

EPERM, ENOSYS = 1, 38

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
assert CLONE_NAMESPACE_FLAGS == 2114060288

# --------------------------------------------------------------------------------------------- the table


def _words(text: str) -> list[str]:
    return text.split()


# Allowed for every container, whatever its capabilities.
_ALLOWED = tuple(_words("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat
lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd
msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64
pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
"""))

# Allowed only when the container holds the capability (Docker's includes.caps).
_BY_CAPABILITY: dict[str, str] = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                     "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                     "sethostname setns syslog umount umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# Allowed on some architectures only (Docker's includes.arches, in Go's GOARCH names).
_BY_ARCH: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    (("amd64", "x32", "386", "x86"), "arch_prctl"),
    (("amd64", "x32", "386", "x86"), "modify_ldt"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)

# personality(2) only for these personas: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def docker_default_profile() -> dict[str, Any]:
    """Docker's default seccomp profile, in Docker's own JSON format (``archMap``, ``includes``/``excludes``)."""
    allow = "SCMP_ACT_ALLOW"
    syscalls: list[dict[str, Any]] = [{"names": list(_ALLOWED), "action": allow}]
    # socket(2) for every address family but AF_VSOCK (40): vsock reaches the host outside any namespace.
    syscalls.append({"names": ["socket"], "action": allow, "args": [_arg(0, 40, "SCMP_CMP_NE")]})
    syscalls += [{"names": ["personality"], "action": allow, "args": [_arg(0, p, "SCMP_CMP_EQ")]}
                 for p in _PERSONALITIES]
    # ptrace and process_vm_* became safe with kernel 4.8 (seccomp checks after the ptrace stop).
    syscalls.append({"names": ["process_vm_readv", "process_vm_writev", "ptrace"], "action": allow,
                     "includes": {"minKernel": "4.8"}})
    syscalls += [{"names": _words(names), "action": allow, "includes": {"arches": list(arches)}}
                 for arches, names in _BY_ARCH]
    syscalls += [{"names": _words(names), "action": allow, "includes": {"caps": [cap]}}
                 for cap, names in _BY_CAPABILITY.items()]
    # Without CAP_SYS_ADMIN: clone without namespace flags (the flags are arg 0, arg 1 on s390), and clone3
    # fails with ENOSYS so that libcs fall back to clone, whose flags seccomp can see.
    syscalls.append({"names": ["clone"], "action": allow,
                     "args": [_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
                     "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
    syscalls.append({"names": ["clone"], "action": allow,
                     "args": [_arg(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
                     "includes": {"arches": ["s390", "s390x"]}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
                     "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": native, "subArchitectures": list(subs)} for native, subs in _ARCH_MAP.items()],
        "syscalls": syscalls,
    }


# -------------------------------------------------------------------------------------------- architectures

# Native libseccomp arch → the 32-bit/ABI variants a process on it may also use.
_ARCH_MAP: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPS64N32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "SCMP_ARCH_MIPSEL64N32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_RISCV64": (),
}

# Go's GOARCH (what Docker profiles use in includes.arches) → libseccomp's native name.
_GO_TO_SCMP = {
    "386": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM", "arm64": "SCMP_ARCH_AARCH64",
    "mips": "SCMP_ARCH_MIPS", "mips64": "SCMP_ARCH_MIPS64", "mips64le": "SCMP_ARCH_MIPSEL64",
    "mipsle": "SCMP_ARCH_MIPSEL", "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64", "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X",
}

# uname -m → GOARCH
_MACHINE_TO_GO = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm", "armv8l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
    "riscv64": "riscv64", "mips64": "mips64", "mips": "mips",
}


def go_arch(arch: str | None = None) -> str:
    """The GOARCH name of ``arch`` (a ``uname -m`` or GOARCH name); the host's when None."""
    machine = (arch or os.uname().machine).lower()  # platform's, without its import
    if machine in _GO_TO_SCMP or machine == "x32":
        return machine
    return _MACHINE_TO_GO.get(machine, machine)


# ------------------------------------------------------------------------------------------------ resolving


def default_profile(caps: Iterable[str], arch: str | None = None, *, kernel: str | None = None) -> dict[str, Any]:
    """Docker's default profile resolved for a container with bounding capabilities ``caps`` (OCI form)."""
    return to_oci(docker_default_profile(), caps, arch, kernel=kernel)


def load_profile(path: str | os.PathLike[str], caps: Iterable[str], arch: str | None = None, *,
                 kernel: str | None = None) -> dict[str, Any]:
    """``--security-opt seccomp=PATH``: a Docker-format (or already OCI-format) JSON profile, resolved."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"opening seccomp profile ({path}) failed: {e.strerror or e}") from None
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise UsageError(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise UsageError("decoding seccomp profile failed: the profile is not a JSON object")
    return to_oci(profile, caps, arch, kernel=kernel)


def to_oci(profile: dict[str, Any], caps: Iterable[str], arch: str | None = None, *, kernel: str | None = None) -> dict[str, Any]:
    """Resolve a Docker-format profile into ``linux.seccomp`` of the OCI spec, as Docker's daemon does."""
    caps = set(caps)
    goarch = go_arch(arch)
    release = kernel if kernel is not None else os.uname().release
    if profile.get("architectures") and profile.get("archMap"):
        raise UsageError("'architectures' and 'archMap' were specified in the seccomp profile, "
                         "use either 'architectures' or 'archMap'")
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO")}
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags"):
        if profile.get(key) is not None:
            out[key] = profile[key]

    if profile.get("architectures"):
        arches = list(profile["architectures"])
    else:
        arches = []
        native = _GO_TO_SCMP.get(goarch)
        for arch_entry in profile.get("archMap") or ():
            if arch_entry.get("architecture") == native:
                arches += [arch_entry["architecture"], *(arch_entry.get("subArchitectures") or ())]
    if arches:
        out["architectures"] = arches

    syscalls = []
    for call in profile.get("syscalls") or ():
        names = list(call.get("names") or ())
        if call.get("name"):
            if names:
                raise UsageError("syscall 'name' and 'names' were specified in the seccomp profile, "
                                 "use either 'name' or 'names'")
            names = [call["name"]]
        if not _applies(call, caps, goarch, release):
            continue
        entry: dict[str, Any] = {"names": names, "action": call.get("action", "SCMP_ACT_ALLOW")}
        if call.get("args"):
            entry["args"] = [{"index": a.get("index", 0), "value": a.get("value", 0),
                              "valueTwo": a.get("valueTwo", 0), "op": a["op"]} for a in call["args"]]
        if call.get("errnoRet") is not None:
            entry["errnoRet"] = call["errnoRet"]
        syscalls.append(entry)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _applies(call: dict[str, Any], caps: set[str], goarch: str, release: str) -> bool:
    excl = call.get("excludes") or {}
    if goarch in (excl.get("arches") or ()):
        return False
    if any(c in caps for c in excl.get("caps") or ()):
        return False
    if excl.get("minKernel") and _kernel_at_least(release, excl["minKernel"]):
        return False
    incl = call.get("includes") or {}
    if incl.get("arches") and goarch not in incl["arches"]:
        return False
    if not all(c in caps for c in incl.get("caps") or ()):
        return False
    return not (incl.get("minKernel") and not _kernel_at_least(release, incl["minKernel"]))


def _kernel_at_least(release: str, minimum: str) -> bool:
    return _version(release) >= _version(minimum)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts) + (0,) * (3 - len(parts))
