"""``ps`` and ``inspect``: containers as Docker shows them; other clients' containers are shown too."""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared.errors import UsageError

from . import labels as L
from .lookup import display_name
from .status import State, _time, state_of

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container

    from .options import PsOptions

PS_COLUMNS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
              ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]
# The keys of :func:`ps_record`: what ``ps --format '{{.Field}}'`` may name (checked before listing).
PS_FIELDS = ("ID", "Image", "Command", "CreatedAt", "RunningFor", "Status", "State", "Ports", "Names", "Labels",
             "RestartCount")


def _spec(c: Container) -> dict[str, Any]:
    try:
        doc = json.loads(c.spec or b"{}")
        return doc if isinstance(doc, dict) else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _image_name(c: Container) -> str:
    return _familiar(c.image)


@cache
def _familiar(image: str) -> str:
    """Docker's short form of a ref (``busybox``); parsed once per image, however many containers use it."""
    from ctk_shared import reference as refs

    try:
        r = refs.parse(image, default_tag=False)
        return refs.Reference(r.domain, r.path, r.tag, r.digest).familiar()
    except UsageError:
        return image


def _created(c: Container) -> datetime | None:
    return _time(c.labels.get(L.CREATED)) or c.created_at


def network_state(c: Container, st: State) -> dict[str, Any]:
    """What ctk-net's hook recorded for the running task; {} when stopped or not networked by ctk."""
    from pathlib import Path

    from .network import read_state

    log = c.labels.get(L.LOG_PATH)
    if not log or st.status not in ("running", "paused"):
        return {}
    return read_state(Path(log).parent)


def health_state(c: Container, st: State | bool) -> dict[str, Any] | None:
    """The container's health state (health.py) when it has a check, else None (``st``: its State, or
    whether it runs)."""
    import os

    from . import health
    from . import healthcheck as hcfg

    log = c.labels.get(L.LOG_PATH)
    hc = hcfg.from_label(c.labels.get(hcfg.LABEL))
    if hc is None or not log:
        return None
    running = st if isinstance(st, bool) else st.status == "running"
    return health.current(os.path.dirname(log), running)


def user_labels(c: Container) -> dict[str, str]:
    """The labels a user gave (``--label``), without the state ctk, containerd and nerdctl keep there."""
    return {k: v for k, v in c.labels.items() if not k.startswith(("ctk/", "containerd.io/", "nerdctl/"))}


def ps_record(c: Container, st: State, no_trunc: bool = False) -> dict[str, Any]:
    from .ports import format_ports

    args = (_spec(c).get("process") or {}).get("args") or []
    cmd = shlex.join(args)
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    created = _created(c)
    now = datetime.now(UTC)
    return {
        "ID": c.id if no_trunc else c.id[:12],
        "Image": _image_name(c),
        "Command": f'"{cmd}"',
        "CreatedAt": created.isoformat() if created else "",
        "RunningFor": output.human_duration_ago((now - created).total_seconds()) if created else "",
        "Status": st.human(now) + (_health_suffix(c, st) if st.status == "running" else ""),
        "State": st.status,
        "Ports": format_ports(network_state(c, st).get("Ports") or []),
        "Names": display_name(c),
        "Labels": user_labels(c),
        "RestartCount": st.restart_count,
    }


def _health_suffix(c: Container, st: State) -> str:
    from .health import ps_suffix

    return ps_suffix(health_state(c, st))


def _match(rec: dict[str, Any], c: Container, filters: list[str]) -> bool:
    for f in filters:
        key, _, value = f.partition("=")
        if key == "name" and value not in rec["Names"]:
            return False
        if key == "status" and rec["State"] != value:
            return False
        if key == "id" and not c.id.startswith(value):
            return False
        if key == "label":
            k, _, v = value.partition("=")
            if k not in c.labels or (v and c.labels[k] != v):
                return False
        if key == "volume":  # Docker: a volume's name, or a mount's destination
            from .volumes import uses_of

            mounts = _mounts(c, _spec(c))
            if not any(value in (m.get("Name"), m["Destination"]) for m in mounts) and \
                    not any(value in (u.name, u.destination) for u in uses_of(c)):
                return False
        if key == "health":  # Docker's: starting | healthy | unhealthy | none
            if value not in ("starting", "healthy", "unhealthy", "none"):
                raise UsageError(f"invalid filter 'health={value}'", hint="starting, healthy, unhealthy or none")
            h = health_state(c, rec["State"] == "running")
            if (h.get("Status") if h else "none") != value:
                return False
        if key not in ("name", "status", "id", "label", "volume", "health"):
            raise UsageError(f"invalid filter {key!r} (supported: name, status, id, label, volume, health)")
    return True


@dataclass(frozen=True)
class ContainerRecords:
    """``ps``: one record per container, newest first (Docker's ``--format json`` fields); the cli prints them."""

    records: list[dict[str, Any]]


def ps(client: Client, gopts: GlobalOptions, opts: PsOptions) -> ContainerRecords:
    all_, filters, no_trunc, last = opts.all_, list(opts.filters), opts.no_trunc, opts.last
    output.parse_format(opts.fmt, PS_FIELDS)  # a bad template is a usage error before any containerd call
    containers = client.containers.list()
    tasks = {t.id: t for t in client.tasks.list()}
    rows = []
    for c in containers:
        st = state_of(c, tasks.get(c.id))
        # Docker: -n/--last N counts stopped containers too
        if not all_ and not filters and not last and st.status not in ("running", "paused", "restarting"):
            continue
        rec = ps_record(c, st, no_trunc)
        if _match(rec, c, filters):
            rows.append((_created(c) or datetime.min.replace(tzinfo=UTC), rec))
    rows.sort(key=lambda r: r[0], reverse=True)
    return ContainerRecords([r for _, r in rows][: last if last else None])


def _network_settings(c: Container, st: State) -> dict[str, Any]:
    from .network import inspect_networks

    ns = network_state(c, st)
    nets = ns.get("Networks") or {}
    first: dict[str, Any] = next(iter(nets.values()), {})
    ports: dict[str, Any] = {}
    for m in ns.get("Ports") or []:
        ports.setdefault(f"{m['containerPort']}/{m['protocol']}", []).append(
            {"HostIp": m.get("hostIP") or "0.0.0.0", "HostPort": str(m["hostPort"])})
    return {"Ports": ports, "IPAddress": first.get("IPAddress", ""), "IPPrefixLen": first.get("IPPrefixLen", 0),
            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", ""),
            "Networks": inspect_networks(c, _spec(c), nets)}


def _port_bindings(c: Container) -> dict[str, Any]:
    try:
        wanted = json.loads(c.labels.get(L.PORTS) or "[]")
    except json.JSONDecodeError:
        return {}
    out: dict[str, Any] = {}
    for m in wanted:
        out.setdefault(f"{m['containerPort']}/{m['protocol']}", []).append(
            {"HostIp": m.get("hostIP") or "", "HostPort": str(m["hostPort"]) if m.get("hostPort") else ""})
    return out


_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def _mounts(c: Container, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Docker's ``Mounts``: the user's bind mounts and volumes (the /etc files ctk generates are left out)."""
    import re

    from .spec import INIT_TARGET
    from .volumes import uses_of

    by_dest = {u.destination: u.name for u in uses_of(c)}
    out = []
    for m in spec.get("mounts") or []:
        dest, src, opts = str(m.get("destination", "")), str(m.get("source", "")), m.get("options") or []
        if (m.get("type") != "bind" and dest not in by_dest) or \
                dest in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", INIT_TARGET):  # a tmpfs volume is in
            continue
        rw = "ro" not in opts
        propagation = next((o for o in opts if o in _PROPAGATIONS), "")
        legacy = re.search(r"/volumes/([a-zA-Z0-9][a-zA-Z0-9_.-]+)/_data$", src)
        name = by_dest.get(dest) or (legacy.group(1) if legacy else None)
        if name:
            out.append({"Type": "volume", "Name": name, "Source": src, "Destination": dest, "Driver": "local",
                        "Mode": "z", "RW": rw, "Propagation": ""})
        else:
            out.append({"Type": "bind", "Source": src, "Destination": dest, "Mode": "", "RW": rw,
                        "Propagation": propagation})
    return out


def _inspect_extras(c: Container, st: State, doc: dict[str, Any]) -> dict[str, Any]:
    """State.Health and Config.Healthcheck (with a check); LogWarning (lines the logger dropped)."""
    import os

    from . import health
    from .healthcheck import LABEL, from_label
    from .logger import read_drops

    hc = from_label(c.labels.get(LABEL))
    if hc is not None:
        doc["Config"]["Healthcheck"] = hc
        h = health_state(c, st)
        doc["State"]["Health"] = health.inspect_value(h) if h else {"Status": health.STARTING, "FailingStreak": 0,
                                                                    "Log": []}
    log = c.labels.get(L.LOG_PATH)
    drops = read_drops(os.path.dirname(log)) if log else None
    if drops:
        doc["LogWarning"] = f"{drops['Lines']} lines dropped: {drops.get('Reason') or 'write error'}"
    return doc


def inspect_record(c: Container, st: State) -> dict[str, Any]:
    return _inspect_extras(c, st, _inspect_base(c, st))


def _inspect_base(c: Container, st: State) -> dict[str, Any]:
    spec = _spec(c)
    proc = spec.get("process") or {}
    args = proc.get("args") or []
    policy = c.labels.get(L.RESTART_POLICY, "no") or "no"
    name, _, retries = policy.partition(":")
    user = proc.get("user") or {}
    return {
        "Id": c.id,
        "Created": (_created(c) or datetime.now(UTC)).isoformat(),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": st.status, "Running": st.running, "Paused": st.status == "paused",
            "Restarting": st.status == "restarting", "OOMKilled": False, "Dead": False, "Pid": st.pid,
            "ExitCode": st.exit_code,
            "StartedAt": st.started_at.isoformat() if st.started_at else "0001-01-01T00:00:00Z",
            "FinishedAt": st.finished_at.isoformat() if st.finished_at else "0001-01-01T00:00:00Z",
        },
        "Image": c.image,
        "Name": "/" + display_name(c),
        "RestartCount": st.restart_count,
        "LogPath": c.labels.get(L.LOG_PATH, ""),
        "HostConfig": {
            "RestartPolicy": {"Name": name, "MaximumRetryCount": int(retries or 0)},
            "AutoRemove": c.labels.get(L.AUTO_REMOVE) == "true",
            "NetworkMode": c.labels.get(L.NETWORK, ""),
            "PortBindings": _port_bindings(c),
            "ReadonlyRootfs": bool((spec.get("root") or {}).get("readonly")),
        },
        "Config": {
            "Hostname": spec.get("hostname", ""),
            "User": f"{user.get('uid', 0)}:{user.get('gid', 0)}",
            "Env": proc.get("env") or [],
            "Cmd": args,
            "Image": c.labels.get(L.IMAGE_REF, c.image),
            "WorkingDir": proc.get("cwd", ""),
            "Tty": bool(proc.get("terminal")),
            "OpenStdin": c.labels.get(L.STDIN_OPEN) == "true",
            "Labels": {k: v for k, v in c.labels.items()},
            "StopSignal": c.labels.get(L.STOP_SIGNAL, "SIGTERM"),
        },
        "Mounts": _mounts(c, spec),
        "Platform": c.labels.get(L.PLATFORM, ""),
        "NetworkSettings": _network_settings(c, st),
    }
