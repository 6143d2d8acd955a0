"""What ctk-run's commands do, between parsed flags and containerd."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared.cli import key_values
from ctk_shared.errors import CtkError, UsageError, raise_failures

from . import labels as L
from . import lifecycle

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container


def merge_env(env: tuple[str, ...], env_files: tuple[str, ...]) -> tuple[str, ...]:
    """-e and --env-file as Docker merges them: files first, a bare KEY takes this environment's value."""
    out: list[str] = []
    for path in env_files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UsageError(f"cannot read env file {path}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise UsageError(f"env file {path}: not UTF-8 text (byte {e.start})",
                             hint="an env file holds KEY=VALUE lines of text") from None
        out += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    out += list(env)
    resolved = []
    for item in out:
        if "=" not in item:
            if item in os.environ:
                resolved.append(f"{item}={os.environ[item]}")
            continue
        resolved.append(item)
    return tuple(resolved)


def init_binary() -> str:
    """A static init for --init (Debian's tini-static), bind-mounted into the container."""
    import shutil

    for cand in (shutil.which("tini-static"), "/usr/bin/tini-static", shutil.which("docker-init")):
        if cand and os.path.isfile(cand):
            return cand
    raise UsageError("--init needs a static init binary (tini-static)", hint="apt-get install tini")


def build_create_options(gopts: GlobalOptions, image: str, command: tuple[str, ...], kw: dict[str, Any]):  # type: ignore[no-untyped-def]
    from .create import CreateOptions, parse_volumes_from
    from .lifecycle import parse_signal
    from .mounts import parse_mount, parse_tmpfs, parse_volume
    from .restart import parse_policy
    from .spec import SpecOptions, parse_security_opts
    from .units import check_cpus, parse_bytes, parse_cpus

    # every value is checked here, before anything is pulled or created
    net = network_options(kw)
    if kw["name"]:
        from .state import validate_name

        validate_name(kw["name"])
    if kw["stop_signal"]:
        parse_signal(kw["stop_signal"])
    check_user(kw["user"])
    for v in kw.get("volumes_from") or ():
        parse_volumes_from(v)
    parse_security_opts(kw["security_opt"])
    healthcheck = health_options(kw)
    platform = run_platform(kw["platform"]) if kw["platform"] else None
    entrypoint = None if kw["entrypoint"] is None else (kw["entrypoint"],) if kw["entrypoint"] else ()
    mounts = tuple(parse_volume(v) for v in kw["volume"]) + tuple(parse_mount(m) for m in kw["mount"]) + \
        tuple(parse_tmpfs(t) for t in kw["tmpfs"])
    spec = SpecOptions(
        command=command or None, entrypoint=entrypoint, env=merge_env(kw["env"], kw["env_file"]),
        workdir=kw["workdir"], user=kw["user"], hostname=kw["hostname"] or "", tty=kw["tty"],
        stdin_open=kw["interactive"], read_only=kw["read_only"], cap_add=kw["cap_add"], cap_drop=kw["cap_drop"],
        privileged=kw["privileged"], security_opt=kw["security_opt"],
        cpus=check_cpus(parse_cpus(kw["cpus"])) if kw["cpus"] else None,
        memory=parse_bytes(kw["memory"]) if kw["memory"] else None, pids_limit=kw["pids_limit"],
        ulimits=kw["ulimit"], shm_size=parse_bytes(kw["shm_size"]) if kw["shm_size"] else None, mounts=mounts,
        init=kw["init"], init_path=init_binary() if kw["init"] else None, stop_signal=kw["stop_signal"],
        network=net.mode)
    return CreateOptions(image=image, spec=spec, name=kw["name"], pull=kw["pull"],
                         platform=platform,
                         restart=parse_policy(kw["restart"]), auto_remove=kw["auto_remove"],
                         labels=key_values(kw["label"]), stop_timeout=kw["stop_timeout"], net=net,
                         decryption_keys=decryption_keys(kw.get("decryption_keys") or ()),
                         volumes_from=tuple(kw.get("volumes_from") or ()), healthcheck=healthcheck)


def health_options(kw: dict[str, Any]) -> dict | None:
    """The ``--health-*``/``--no-healthcheck`` flags as the user's part of the check (see healthcheck.py)."""
    from .healthcheck import HealthConfigError, from_flags

    try:
        return from_flags(cmd=kw.get("health_cmd"), interval=kw.get("health_interval"),
                          timeout=kw.get("health_timeout"), start_period=kw.get("health_start_period"),
                          start_interval=kw.get("health_start_interval"), retries=kw.get("health_retries"),
                          disabled=bool(kw.get("no_healthcheck")))
    except HealthConfigError as e:
        raise UsageError(str(e), hint="durations are Go durations such as 500ms, 2s or 1m30s") from None


def check_user(user: str | None) -> None:
    """``-u name|uid[:group|gid]``: an empty user or group beside a colon names nobody (``-u :``)."""
    if not user:
        return
    name, sep, group = user.partition(":")
    if not name or (sep and not group) or ":" in group:
        raise UsageError(f"invalid user {user!r}: expected name|uid[:group|gid]")


def run_platform(text: str):  # type: ignore[no-untyped-def]
    """``--platform`` for a container: it must be a Linux one, as ctk runs Linux containers only."""
    from ctk_shared.oci import Platform

    p = Platform.parse(text)
    if p.os != "linux":
        raise UsageError(f'unsupported platform "{text}": image operating system "{p.os}" cannot be used on '
                         "this platform", hint="ctk runs Linux images only (--platform linux/ARCH)")
    return p


def decryption_keys(specs: tuple[str, ...]) -> tuple:
    if not specs:
        return ()
    from ctk_shared.decryption_keys import read_key_specs

    return tuple(read_key_specs(specs))


def network_options(kw: dict[str, Any]):  # type: ignore[no-untyped-def]
    from .network import build_net_options
    from .ports import parse_all

    return build_net_options(
        networks=kw.get("network") or (), network_aliases=kw.get("network_alias") or (),
        publish=tuple(parse_all(kw.get("publish") or ())), publish_all=bool(kw.get("publish_all")),
        ip=kw.get("ip"), hostname=kw.get("hostname"), dns=kw.get("dns") or (), dns_search=kw.get("dns_search") or (),
        dns_options=kw.get("dns_option") or (), add_hosts=kw.get("add_host") or ())


def create_container(gopts: GlobalOptions, image: str, command: tuple[str, ...],
                     kw: dict[str, Any]) -> tuple[Client, Container]:
    """``create``, and the first half of ``run``: the container record and its snapshot, no task."""
    from ctk_shared import connect
    from ctk_shared.progress import make_progress

    from .create import create

    if image == "-":
        image = next((r for r in (output.ref_from_line(line) for line in sys.stdin) if r), "")
        if not image:
            raise UsageError("no image ref on stdin")
    if kw["auto_remove"] and kw["restart"] not in ("no", ""):
        raise UsageError("conflicting options: --restart and --rm")
    opts = build_create_options(gopts, image, command, kw)
    client = connect.containerd(gopts)
    progress = make_progress(kw["quiet"])
    try:
        return client, create(client, gopts, opts, progress)
    finally:
        progress.close()


def run_container(gopts: GlobalOptions, image: str, command: tuple[str, ...], kw: dict[str, Any]) -> int:
    from . import detachkeys
    from .attach import run_attached, run_logged

    keys = detachkeys.parse(kw.get("detach_keys"))  # checked before anything is made
    client, c = create_container(gopts, image, command, kw)
    if kw["detach"]:
        try:
            lifecycle.start_task(client, gopts, c)
        except CtkError:
            if kw["auto_remove"]:
                lifecycle.remove(client, gopts, c, True)
            raise
        output.emit_line(c.id)
        return 0
    try:
        if kw["tty"]:
            from .attach import run_terminal

            code = run_terminal(client, gopts, c, detach_keys=keys, sig_proxy=kw.get("sig_proxy", True))
            if code is None:
                return 0  # detached: it runs on (its logger removes it at the exit with --rm)
        elif kw["interactive"]:
            code = run_attached(client, gopts, c, stdin_open=kw["interactive"], tty=kw["tty"])
        else:
            code = run_logged(client, gopts, c)
    except BaseException:
        if kw["auto_remove"]:
            _cleanup(client, gopts, c)
        raise
    if kw["auto_remove"]:
        _cleanup(client, gopts, c)
    elif c.labels.get(L.RESTART_POLICY, "no") in ("no", ""):
        lifecycle.delete_task(client, c.id)  # keep the exit for ps; let the shim go
    return code


def _cleanup(client: Client, gopts: GlobalOptions, c: Container) -> None:
    from ctk_shared.errors import NotFound

    try:
        lifecycle.remove(client, gopts, c, True)
    except NotFound:
        pass  # its logger removed it first (a container with a terminal has one that does)
    except CtkError as e:
        sys.stderr.write(f"ctk-run: warning: removing {c.id[:12]}: {e}\n")


def for_each(client: Client, texts: Iterable[str], action: Callable[[Client, Container], None]) -> None:
    """Apply ``action`` to each container, printing each name as Docker does; report all failures."""
    from .lookup import find_container

    failures: list[CtkError] = []
    for text in texts:
        try:
            action(client, find_container(client, text))
            output.emit_line(text)
        except CtkError as e:
            failures.append(e)
    raise_failures(failures)




def check_first_start(client: Client, c: Container, keys: tuple = ()) -> None:
    """Before a container's first start, the key check ``create`` makes, unless ctk-run made it already (the
    label says so): a container made by another tool, or before the check existed, from an encrypted image
    runs only with a key for its layers. Later starts are not checked (imgcrypt checks at create only)."""
    if c.labels.get(L.KEY_CHECK) or c.labels.get(L.STARTED_AT) or not c.image:
        return
    from ctk_shared import images as store
    from ctk_shared.errors import NotFound
    from ctk_shared.oci import Platform

    from .keycheck import authorize

    plat = c.labels.get(L.PLATFORM)
    try:
        img = store.load_local(client, c.image, Platform.parse(plat) if plat else None)
    except NotFound:
        return  # the image is gone: nothing tells whether it was encrypted (Docker starts such containers)
    verdict = authorize(c.image, img.manifest.layers, keys)
    client.containers.update_labels(c.id, {L.KEY_CHECK: verdict})


def start_containers(client: Client, gopts: GlobalOptions, texts: Iterable[str], keys: tuple = ()) -> None:
    def start(cl: Client, c: Container) -> None:
        check_first_start(cl, c, keys)
        lifecycle.start_task(cl, gopts, c)

    for_each(client, texts, start)


def restart_containers(client: Client, gopts: GlobalOptions, texts: Iterable[str], timeout: int | None) -> None:
    from .lookup import find_container

    def restart(cl: Client, c: Container) -> None:
        check_first_start(cl, c)
        lifecycle.stop(cl, c, timeout)
        lifecycle.start_task(cl, gopts, find_container(cl, c.id))

    for_each(client, texts, restart)


def inspect_containers(client: Client, texts: Iterable[str], fmt: str | None) -> None:
    from .listing import inspect_record
    from .lookup import find_container
    from .status import state_of

    output.parse_format(fmt)  # a syntax error before any work
    docs = []
    for text in texts:
        c = find_container(client, text)
        docs.append(inspect_record(c, state_of(c, lifecycle.task_of(client, c.id))))
    output.emit_inspect(docs, fmt)


def show_logs(client: Client, gopts: GlobalOptions, text: str, *, follow: bool, tail: str, since: str | None,
              until: str | None, timestamps: bool) -> None:
    from . import state
    from .logfile import follow_records, format_record, parse_since, read_records
    from .lookup import find_container
    from .status import state_of

    c = find_container(client, text)
    path = c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id))
    n = None if tail == "all" else int(tail) if tail.lstrip("-").isdigit() else None
    if tail != "all" and n is None:
        raise UsageError(f"invalid --tail {tail!r}")
    t_since = parse_since(since) if since else None
    t_until = parse_since(until) if until else None

    def running() -> bool:
        try:
            cur = client.containers.get(c.id)
        except CtkError:
            return False
        return state_of(cur, lifecycle.task_of(client, c.id)).status in ("running", "restarting", "paused")

    records = follow_records(path, tail=n, since=t_since, until=t_until, is_running=running) if follow else \
        read_records(path, tail=n, since=t_since, until=t_until)
    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for rec in records:
        stream, data = format_record(rec, timestamps)
        target = out.get(stream, sys.stdout.buffer)
        target.write(data)
        target.flush()
    from .logger import read_drops

    drops = read_drops(os.path.dirname(path))
    if drops:
        sys.stderr.write(f"ctk-run: warning: {drops['Lines']} lines of this log were dropped: "
                         f"{drops.get('Reason') or 'write error'}\n")


def show_ports(client: Client, text: str, private: str | None) -> None:
    from .listing import network_state
    from .lookup import find_container
    from .status import state_of

    c = find_container(client, text)
    st = state_of(c, lifecycle.task_of(client, c.id))
    mappings = network_state(c, st).get("Ports") or []
    # Docker's order and form: by container port, then protocol and host side; an IPv6 host in brackets
    mappings = sorted(mappings, key=lambda m: (int(m["containerPort"]), m["protocol"], m.get("hostIP") or "",
                                               int(m["hostPort"])))

    def host(m: dict[str, Any]) -> str:
        ip = m.get("hostIP") or "0.0.0.0"
        return f"[{ip}]:{m['hostPort']}" if ":" in ip else f"{ip}:{m['hostPort']}"

    if private:
        num, _, proto = private.partition("/")
        if not num.isdigit() or int(num) > 65535:
            raise CtkError(f"invalid port ({num})", hint="give PRIVATE_PORT[/PROTO], e.g. 80 or 53/udp")
        mappings = [m for m in mappings if int(m["containerPort"]) == int(num) and m["protocol"] == (proto or "tcp")]
        if not mappings:
            raise CtkError(f"no public port '{private}' published for {text}")
        for m in mappings:
            output.emit_line(host(m))
        return
    for m in mappings:
        output.emit_line(f"{m['containerPort']}/{m['protocol']} -> {host(m)}")
