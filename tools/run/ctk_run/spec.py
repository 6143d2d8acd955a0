"""The OCI runtime spec of a container, built from its image config and Docker-style flags.

``build_spec`` does what Docker's daemon does between ``docker run`` and runc: entrypoint/cmd merging, the
environment, user lookup in the image's ``/etc/passwd``, Docker's default capabilities, mounts, masked paths,
device rules and seccomp profile, and resource limits. The result is a plain dict for ``json.dumps``. The
generic defaults (shared with ctk-build's RUN steps) come from ``ctk_shared.ocispec`` and ``ctk_shared.seccomp``;
what depends on ctk-run's flags (--privileged, --cap-add, --security-opt, --ulimit …) is decided here.

It is pure apart from a few facts read from the host, each behind one small function that tests can replace:
the nofile hard limit (``ocispec.nofile_hard``), the capabilities this process can grant (``/proc/self/status``),
whether cgroups are v2, which sysctls exist, and the kernel version and CPU architecture (for seccomp).
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ctk_shared import ocispec, seccomp
from ctk_shared.errors import InvalidArgument, UsageError
from ctk_shared.ocispec import DEFAULT_CAPS, DEFAULT_PATH, MASKED_PATHS, OCI_VERSION, READONLY_PATHS

from .mounts import BIND, NOCOPY, NONRECURSIVE, TMPFS, VOLUME, MountSpec, merge_tmpfs_options
from .units import RLIM_INFINITY, parse_ulimit

INIT_TARGET = "/sbin/ctk-init"

# Every capability Linux knows, indexed by its number (linux/capability.h, 0 … 40).
ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# Sysctls a container may set: they are per network / IPC namespace (Docker's opts.ValidateSysctl).
_SYSCTL_NAMES = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                 "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
_SYSCTL_PREFIXES = ("fs.mqueue.", "net.")


@dataclass(frozen=True)
class SpecOptions:
    """What ``ctk-run`` flags say about the container's process, security, resources and mounts."""

    command: tuple[str, ...] | None = None  # args after the image (override the image's Cmd)
    entrypoint: tuple[str, ...] | None = None  # --entrypoint; () or ("",) clears it; None keeps the image's
    env: tuple[str, ...] = ()  # K=V, already merged from -e/--env-file; a bare K unsets K
    workdir: str | None = None
    user: str | None = None  # uid, name, uid:gid, name:group
    hostname: str = ""  # "" → the first 12 characters of the id (the host's name with --network host)
    tty: bool = False
    stdin_open: bool = False
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    cpus: float | None = None
    memory: int | None = None
    pids_limit: int | None = None
    ulimits: tuple[str, ...] = ()  # "nofile=1024:2048", "nproc=512"
    shm_size: int | None = None  # bytes; default 64 MiB
    mounts: tuple[MountSpec, ...] = ()  # -v/--mount/--tmpfs; volumes arrive resolved to a host dir (type bind)
    init: bool = False
    init_path: str | None = None  # the init binary bound at /sbin/ctk-init when init is True
    stop_signal: str | None = None  # not part of the OCI spec: the CLI keeps it in a label
    sysctls: tuple[str, ...] = ()
    extra_mounts: tuple[MountSpec, ...] = ()  # files ctk generates (/etc/hosts, resolv.conf, hostname)
    network: str = "none"  # "host" shares the host's netns; anything else gets a new one
    netns_path: str = ""  # join this network namespace instead (--network container:)
    hooks: dict[str, Any] | None = None  # the OCI "hooks" section, verbatim
    annotations: dict[str, str] | None = None


@dataclass(frozen=True)
class SecurityOptions:
    """The ``--security-opt`` choices (seccomp profile, no-new-privileges, systempaths) and writable cgroups."""

    seccomp: str = "default"  # "default" | "unconfined" | a profile path
    no_new_privileges: bool = False
    systempaths_unconfined: bool = False
    writable_cgroups: bool = False


def build_spec(container_id: str, namespace: str, image_config: dict[str, Any], opts: SpecOptions, *,
               passwd: str | None = None, group: str | None = None) -> dict[str, Any]:
    """The OCI runtime spec (a dict) for container ``container_id`` of containerd namespace ``namespace``.

    ``image_config`` is the image's config JSON or just its ``config`` object (Env, Cmd, Entrypoint,
    WorkingDir, User). ``passwd``/``group`` are the texts of the image's ``/etc/passwd`` and ``/etc/group``
    (None when the image has none) for resolving user and group names.
    """
    cfg = _config_section(image_config)
    sec = parse_security_opts(opts.security_opt)
    host_net = opts.network == "host"

    args = _process_args(cfg, opts)
    if opts.init:
        if not opts.init_path:
            raise UsageError("--init: no init binary found", hint="install tini or docker-init, or pass its path")
        args = [INIT_TARGET, "--", *args]
    hostname = opts.hostname or (os.uname().nodename if host_net else container_id[:12])
    uid, gid, gids = resolve_user(opts.user or cfg.get("User") or "", passwd, group)
    caps = list(capabilities(opts.cap_add, opts.cap_drop, privileged=opts.privileged))

    process: dict[str, Any] = {
        "terminal": bool(opts.tty),
        "user": {"uid": uid, "gid": gid, **({"additionalGids": gids} if gids else {})},
        "args": args,
        "env": merge_env(cfg.get("Env") or [], opts.env, hostname=hostname, tty=opts.tty),
        "cwd": _cwd(opts.workdir, cfg.get("WorkingDir")),
        "capabilities": ocispec.capabilities(caps),
        "rlimits": _rlimits(opts.ulimits),
        "noNewPrivileges": sec.no_new_privileges,
        "oomScoreAdj": 0,
    }

    namespaces = ["pid", "ipc", "uts", "mount"]
    if not host_net:
        namespaces.append("network")
    if _cgroup_v2():  # Docker's default cgroupns is private on cgroup v2 and the host's on v1
        namespaces.append("cgroup")

    linux: dict[str, Any] = {
        "namespaces": [{"type": t, "path": opts.netns_path} if t == "network" and opts.netns_path else {"type": t}
                       for t in namespaces],
        "cgroupsPath": f"/{namespace}/{container_id}",
        "resources": _resources(opts),
        "devices": ocispec.device_nodes(),
    }
    sysctl = _sysctls(opts.sysctls, host_net)
    if sysctl:
        linux["sysctl"] = sysctl
    if not (opts.privileged or sec.systempaths_unconfined):
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if not opts.privileged and sec.seccomp != "unconfined":
        if sec.seccomp == "default":
            linux["seccomp"] = seccomp.default_profile(caps)
        else:
            linux["seccomp"] = seccomp.load_profile(sec.seccomp, caps)

    mounts = _mounts(opts, sec)
    propagation = _rootfs_propagation(mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(opts.read_only)},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if opts.hooks:
        spec["hooks"] = opts.hooks
    if opts.annotations:
        spec["annotations"] = dict(opts.annotations)
    return spec


# ---------------------------------------------------------------------------------------------------- process


def _config_section(image_config: dict[str, Any]) -> dict[str, Any]:
    inner = image_config.get("config") if isinstance(image_config, dict) else None
    if isinstance(inner, dict) and not {"Cmd", "Entrypoint", "Env"} & image_config.keys():
        return inner
    return image_config or {}


def _process_args(cfg: dict[str, Any], opts: SpecOptions) -> list[str]:
    """Docker's matrix: entrypoint + (command or Cmd); ``--entrypoint`` drops the image's Cmd."""
    if opts.entrypoint is not None:
        entrypoint = [a for a in opts.entrypoint] if opts.entrypoint != ("",) else []
        cmd = list(opts.command or ())
    else:
        entrypoint = list(cfg.get("Entrypoint") or ())
        cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or ())
    args = entrypoint + cmd
    if not args:
        raise UsageError("no command specified")
    return args


def merge_env(image_env: Iterable[str], user_env: Iterable[str], *, hostname: str, tty: bool) -> list[str]:
    """Docker's order: PATH, HOSTNAME, TERM (with a TTY), then the image's and the user's variables.

    A later ``K=V`` replaces an earlier ``K`` where it stands; a bare ``K`` from the user removes ``K``.
    """
    env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        env.append("TERM=xterm")
    for item in [*image_env, *user_env]:
        key, sep, _ = item.partition("=")
        index = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
        if not sep:
            if index is not None:
                del env[index]
        elif index is None:
            env.append(item)
        else:
            env[index] = item
    return env


def _cwd(workdir: str | None, image_workdir: str | None) -> str:
    if workdir:
        if not workdir.startswith("/"):
            raise UsageError(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
        return posixpath.normpath(workdir)
    if image_workdir:
        return posixpath.normpath(posixpath.join("/", image_workdir))
    return "/"


def resolve_user(user: str | None, passwd: str | None, group: str | None) -> tuple[int, int, list[int]]:
    """``(uid, gid, additional gids)`` for ``user`` (``name``, ``uid``, ``name:group``, ``uid:gid``…), like runc.

    Names are looked up in the image's passwd/group texts; a numeric id needs no entry. Without a group in
    ``user``, the gid is the user's and the additional gids are the groups listing the user as a member.
    """
    user = (user or "").strip()
    user_arg, _, group_arg = user.partition(":")
    users = list(_parse_db(passwd, 7))
    uid, gid = 0, 0
    matched_name = ""
    if user_arg == "":
        match = next((u for u in users if _int(u[2]) == 0), None)
    elif user_arg.isdigit():
        match = next((u for u in users if _int(u[2]) == int(user_arg)), None)
    else:
        match = next((u for u in users if u[0] == user_arg), None)
    if match:
        matched_name = match[0]
        uid, gid = _int(match[2]), _int(match[3])
    elif user_arg:
        if not user_arg.isdigit():
            raise UsageError(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = _id_in_range(user_arg)

    additional: list[int] = []
    if group_arg or matched_name:
        groups = list(_parse_db(group, 4))
        if group_arg:
            if group_arg.isdigit():
                found = next((g for g in groups if _int(g[2]) == int(group_arg)), None)
            else:
                found = next((g for g in groups if g[0] == group_arg), None)
            if found:
                gid = _int(found[2])
            elif not group_arg.isdigit():
                raise UsageError(f"unable to find group {group_arg}: no matching entries in group file")
            else:
                gid = _id_in_range(group_arg)
        else:
            additional = [_int(g[2]) for g in groups if matched_name in g[3].split(",")]
    return uid, gid, additional


def _parse_db(text: str | None, nfields: int) -> Iterable[list[str]]:
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (nfields - len(parts))
        yield parts


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _id_in_range(text: str) -> int:
    value = int(text)
    if value > 2**31 - 1:
        raise UsageError(f"uids and gids must be in range 0-{2**31 - 1}")
    return value


# --------------------------------------------------------------------------------------------- capabilities


def normalize_cap(name: str) -> str:
    """``sys_admin`` / ``CAP_SYS_ADMIN`` → ``CAP_SYS_ADMIN``; ``all`` → ``ALL``; unknown → UsageError."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in ALL_CAPS:
        raise UsageError(f'unknown capability: "{full}"')
    return full


def capabilities(add: Iterable[str] = (), drop: Iterable[str] = (), *, privileged: bool = False) -> tuple[str, ...]:
    """Docker's TweakCapabilities: defaults minus drops plus adds; ``ALL`` on either side; privileged → all."""
    if privileged:
        return host_capabilities()
    adds = _dedup(normalize_cap(c) for c in add)
    drops = _dedup(normalize_cap(c) for c in drop)
    if "ALL" in adds:
        return tuple(c for c in host_capabilities() if c not in drops)
    if "ALL" in drops:
        return tuple(adds)
    return tuple(_dedup([*(c for c in DEFAULT_CAPS if c not in drops), *adds]))


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def host_capabilities() -> tuple[str, ...]:
    """ALL_CAPS limited to this process's bounding set: runc cannot grant a capability it does not hold."""
    mask = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
    except OSError:
        pass
    if mask is None:
        return ALL_CAPS
    return tuple(c for i, c in enumerate(ALL_CAPS) if mask >> i & 1)


# ----------------------------------------------------------------------------------------- security options


def parse_security_opts(items: Iterable[str]) -> SecurityOptions:
    """``--security-opt``: seccomp=, no-new-privileges[=bool], systempaths=unconfined;
    apparmor=unconfined and label=disable (ctk has neither AppArmor nor SELinux support: other values are refused)."""
    seccomp_mode, nnp, systempaths, writable_cgroups = "default", False, False, False
    for item in items:
        if item == "no-new-privileges":
            nnp = True
            continue
        key, sep, value = _split_opt(item)
        if not sep:
            raise UsageError(f"invalid --security-opt: {item!r}")
        if key == "seccomp":
            seccomp_mode = "default" if value in ("builtin", "default", "") else value
        elif key == "no-new-privileges":
            nnp = _parse_bool(item, value)
        elif key == "systempaths":
            if value != "unconfined":
                raise UsageError(f"invalid --security-opt: {item!r}: systempaths only accepts 'unconfined'")
            systempaths = True
        elif key == "writable-cgroups":
            writable_cgroups = _parse_bool(item, value)
        elif key == "apparmor":
            # ctk applies no AppArmor profile: "unconfined" says just that; asking for a profile is refused
            # rather than ignored, since the container would run without the confinement it was asked for
            if value != "unconfined":
                raise UsageError(f"invalid --security-opt {item!r}: ctk has no AppArmor support, so profile "
                                 f"{value!r} cannot be applied",
                                 hint="drop the option, or say apparmor=unconfined (what ctk containers run as)")
        elif key == "label":
            if value != "disable":  # the same for SELinux labels
                raise UsageError(f"invalid --security-opt {item!r}: ctk has no SELinux support, so labels cannot "
                                 "be applied", hint="drop the option, or say label=disable")
        else:
            raise UsageError(f"invalid --security-opt: {item!r}")
    return SecurityOptions(seccomp_mode, nnp, systempaths, writable_cgroups)


def _split_opt(item: str) -> tuple[str, str, str]:
    key, sep, value = item.partition("=")
    if not sep:  # Docker's legacy "seccomp:unconfined"
        key, sep, value = item.partition(":")
    return key.strip(), sep, value.strip()


def _parse_bool(item: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise UsageError(f"invalid --security-opt {item!r}: {value!r} is not a boolean")


# ------------------------------------------------------------------------------------------ limits, sysctls


def _rlimits(ulimits: Iterable[str]) -> list[dict[str, Any]]:
    nofile = ocispec.default_nofile()
    limits: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (nofile, nofile)}
    for text in ulimits:
        u = parse_ulimit(text)
        limits[u.oci_type] = (_rlim(u.soft), _rlim(u.hard))
    return [{"type": t, "hard": h, "soft": s} for t, (s, h) in limits.items()]


def _rlim(v: int) -> int:
    return RLIM_INFINITY if v == -1 else v


def _resources(opts: SpecOptions) -> dict[str, Any]:
    devices = [{"allow": True, "access": "rwm"}] if opts.privileged else ocispec.device_rules()
    res: dict[str, Any] = {"devices": devices}
    if opts.memory is not None:
        if opts.memory < 6 * 1024 * 1024 and opts.memory != 0:
            raise UsageError("Minimum memory limit allowed is 6MB")
        if opts.memory > 0:
            res["memory"] = {"limit": opts.memory}
    if opts.cpus:
        period = 100000
        res["cpu"] = {"period": period, "quota": int(round(opts.cpus * period))}
    if opts.pids_limit is not None and opts.pids_limit > 0:
        res["pids"] = {"limit": opts.pids_limit}
    return res


def _sysctls(items: Iterable[str], host_net: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if not host_net:  # Docker, in a private netns: ports < 1024 and ping for any user
        if _sysctl_exists("net.ipv4.ping_group_range"):
            out["net.ipv4.ping_group_range"] = "0 2147483647"
        if _sysctl_exists("net.ipv4.ip_unprivileged_port_start"):
            out["net.ipv4.ip_unprivileged_port_start"] = "0"
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"invalid argument {item!r} for \"--sysctl\": sysctl must be key=value")
        if not (key in _SYSCTL_NAMES or key.startswith(_SYSCTL_PREFIXES)):
            raise UsageError(f"invalid argument {item!r} for \"--sysctl\": sysctl '{item}' is not allowed")
        if host_net and key.startswith("net."):
            raise UsageError(f"sysctl {key!r} not allowed in host network namespace")
        out[key] = value
    return out


def _sysctl_exists(name: str) -> bool:
    return os.path.exists("/proc/sys/" + name.replace(".", "/"))


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


# ------------------------------------------------------------------------------------------------------ mounts


def default_mounts(*, shm_size: int | None = None, privileged: bool = False,
                   writable_cgroups: bool = False) -> list[dict[str, Any]]:
    """Docker's default mounts (moby oci/defaults.go), /dev/shm as a tmpfs of ``shm_size`` bytes; privileged
    containers get /sys and /sys/fs/cgroup writable, ``writable-cgroups`` only the latter."""
    return ocispec.default_mounts(shm_size=ocispec.DEFAULT_SHM_SIZE if shm_size is None else shm_size,
                                  sys_readonly=not privileged, cgroup_readonly=not (privileged or writable_cgroups))


def _mounts(opts: SpecOptions, sec: SecurityOptions) -> list[dict[str, Any]]:
    if opts.shm_size is not None and opts.shm_size <= 0:
        raise UsageError("invalid --shm-size: it must be greater than 0")
    user: dict[str, MountSpec] = {}
    for m in opts.mounts:
        if m.target in user:
            raise UsageError(f"duplicate mount point: {m.target}")
        user[m.target] = m
    generated: dict[str, MountSpec] = {m.target: m for m in opts.extra_mounts}
    if opts.init and opts.init_path:
        generated[INIT_TARGET] = MountSpec(BIND, opts.init_path, INIT_TARGET, readonly=True)
    generated.update(user)  # the user's mount wins at a destination ctk also wants
    chosen = list(generated.values())

    destinations = set(generated)
    over_dev = "/dev" in destinations
    defaults = [d for d in default_mounts(shm_size=opts.shm_size, privileged=opts.privileged,
                                          writable_cgroups=sec.writable_cgroups)
                if d["destination"] not in destinations
                and not (over_dev and d["destination"].startswith("/dev/"))]
    # parents before children, whatever order the flags came in (Docker sorts by depth too)
    chosen.sort(key=lambda m: len([p for p in m.target.split("/") if p]))
    return defaults + [to_oci_mount(m) for m in chosen]


def to_oci_mount(m: MountSpec) -> dict[str, Any]:
    """A user or generated mount in OCI form (bind: rbind + ro + propagation; tmpfs: Docker's defaults)."""
    if m.type == VOLUME:
        if not m.source.startswith("/"):
            raise InvalidArgument(f"volume mount at {m.target} has no host directory (ctk bug: unresolved volume)")
        m = MountSpec(BIND, m.source, m.target, m.readonly, m.options)
    if m.type == BIND:
        recursive = NONRECURSIVE not in m.options
        options = ["rbind" if recursive else "bind"]
        if m.readonly:
            options.append("ro")
        options.append(m.propagation or "rprivate")
        return {"destination": m.target, "type": "bind", "source": m.source, "options": options}
    if m.type == TMPFS:
        options = merge_tmpfs_options(["noexec", "nosuid", "nodev", "rprivate", *(["ro"] if m.readonly else []),
                                       *(o for o in m.options if o != NOCOPY)])
        return {"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options}
    raise InvalidArgument(f"unknown mount type {m.type!r} at {m.target}")


def _rootfs_propagation(mounts: list[dict[str, Any]]) -> str | None:
    props = {o for m in mounts if m["type"] == "bind" for o in m["options"]}
    if props & {"shared", "rshared"}:
        return "rshared"
    if props & {"slave", "rslave"}:
        return "rslave"
    return None
