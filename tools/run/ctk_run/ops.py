"""What ctk-run's commands do, between parsed flags and containerd."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared.errors import CtkError, UsageError
from ctk_shared.keyvalues import key_values

from . import labels as L
from . import lifecycle
from .errors import run_errors

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.decryption_keys import KeySource
    from ctk_shared.oci import Platform

    from .create import CreateOptions
    from .network import NetOptions
    from .options import (
        AttachOptions,
        ContainerOptions,
        ExecOptions,
        InspectOptions,
        KillOptions,
        LogsOptions,
        PauseOptions,
        PortOptions,
        RenameOptions,
        RestartOptions,
        RmOptions,
        RunOptions,
        StartOptions,
        StopOptions,
        UnpauseOptions,
        UpdateOptions,
        VolumeCreateOptions,
        VolumeInspectOptions,
        VolumePruneOptions,
        VolumeRmOptions,
        WaitOptions,
    )


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


def build_create_options(gopts: GlobalOptions, opts: ContainerOptions) -> CreateOptions:
    """The container's flags checked and parsed into what ``create`` makes; every value is checked here,
    before anything is pulled or created."""
    from .create import CreateOptions, parse_volumes_from
    from .lifecycle import parse_signal
    from .mounts import parse_mount, parse_tmpfs, parse_volume
    from .restart import parse_policy
    from .spec import SpecOptions, parse_security_opts
    from .units import check_cpus, parse_bytes, parse_cpus

    if opts.auto_remove and opts.restart not in ("no", ""):
        raise UsageError("conflicting options: --restart and --rm")
    net = network_options(opts)
    if opts.name:
        from .state import validate_name

        validate_name(opts.name)
    if opts.stop_signal:
        parse_signal(opts.stop_signal)
    check_user(opts.user)
    for v in opts.volumes_from:
        parse_volumes_from(v)
    parse_security_opts(opts.security_opt)
    healthcheck = health_options(opts)
    platform = run_platform(opts.platform) if opts.platform else None
    entrypoint = None if opts.entrypoint is None else (opts.entrypoint,) if opts.entrypoint else ()
    mounts = tuple(parse_volume(v) for v in opts.volume) + tuple(parse_mount(m) for m in opts.mount) + \
        tuple(parse_tmpfs(t) for t in opts.tmpfs)
    spec = SpecOptions(
        command=opts.command or None, entrypoint=entrypoint, env=merge_env(opts.env, opts.env_file),
        workdir=opts.workdir, user=opts.user, hostname=opts.hostname or "", tty=opts.tty,
        stdin_open=opts.interactive, read_only=opts.read_only, cap_add=opts.cap_add, cap_drop=opts.cap_drop,
        privileged=opts.privileged, security_opt=opts.security_opt,
        cpus=check_cpus(parse_cpus(opts.cpus)) if opts.cpus else None,
        memory=parse_bytes(opts.memory) if opts.memory else None, pids_limit=opts.pids_limit,
        ulimits=opts.ulimit, shm_size=parse_bytes(opts.shm_size) if opts.shm_size else None, mounts=mounts,
        init=opts.init, init_path=init_binary() if opts.init else None, stop_signal=opts.stop_signal,
        network=net.mode)
    return CreateOptions(image=opts.image, spec=spec, name=opts.name, pull=opts.pull, platform=platform,
                         restart=parse_policy(opts.restart), auto_remove=opts.auto_remove,
                         labels=key_values(opts.label), stop_timeout=opts.stop_timeout, net=net,
                         decryption_keys=decryption_keys(opts.decryption_keys),
                         volumes_from=opts.volumes_from, healthcheck=healthcheck)


def health_options(opts: ContainerOptions) -> dict[str, Any] | None:
    """The ``--health-*``/``--no-healthcheck`` flags as the user's part of the check (see healthcheck.py)."""
    from .healthcheck import HealthConfigError, from_flags

    try:
        return from_flags(cmd=opts.health_cmd, interval=opts.health_interval, timeout=opts.health_timeout,
                          start_period=opts.health_start_period, start_interval=opts.health_start_interval,
                          retries=opts.health_retries, disabled=opts.no_healthcheck)
    except HealthConfigError as e:
        raise UsageError(str(e), hint="durations are Go durations such as 500ms, 2s or 1m30s") from None


def check_user(user: str | None) -> None:
    """``-u name|uid[:group|gid]``: an empty user or group beside a colon names nobody (``-u :``)."""
    if not user:
        return
    name, sep, group = user.partition(":")
    if not name or (sep and not group) or ":" in group:
        raise UsageError(f"invalid user {user!r}: expected name|uid[:group|gid]")


def run_platform(text: str) -> Platform:
    """``--platform`` for a container: it must be a Linux one, as ctk runs Linux containers only."""
    from ctk_shared.oci import Platform

    p = Platform.parse(text)
    if p.os != "linux":
        raise UsageError(f'unsupported platform "{text}": image operating system "{p.os}" cannot be used on '
                         "this platform", hint="ctk runs Linux images only (--platform linux/ARCH)")
    return p


def decryption_keys(specs: tuple[str, ...]) -> tuple[KeySource, ...]:
    if not specs:
        return ()
    from ctk_shared.decryption_keys import read_key_specs

    return tuple(read_key_specs(specs))


def network_options(opts: ContainerOptions) -> NetOptions:
    from .network import build_net_options
    from .ports import parse_all

    return build_net_options(
        networks=opts.network, network_aliases=opts.network_alias, publish=tuple(parse_all(opts.publish)),
        publish_all=opts.publish_all, ip=opts.ip, hostname=opts.hostname, dns=opts.dns, dns_search=opts.dns_search,
        dns_options=opts.dns_option, add_hosts=opts.add_host)


@dataclass(frozen=True)
class Created:
    """What ``create`` made: the cli prints its ID."""

    container_id: str


@dataclass(frozen=True)
class RunResult:
    """How a ``run`` ended. ``exit_code`` is the container's status (0 when it was left running: ``-d``, or
    detached from with the detach keys); ``detached`` says it runs on, and with ``-d`` the cli prints its ID."""

    container_id: str
    exit_code: int
    detached: bool = False


def create(client: Client, gopts: GlobalOptions, opts: ContainerOptions) -> Created:
    """``ctk-run create``: the container record and its snapshot, no task (every failure a RunError, 125)."""
    with run_errors(lambda: gopts.data_root):
        return Created(_create(client, gopts, opts).id)


def _create(client: Client, gopts: GlobalOptions, opts: ContainerOptions, starting: bool = False) -> Container:
    from dataclasses import replace

    from ctk_shared.progress import make_progress

    from . import create as creating

    parsed = build_create_options(gopts, opts)
    if starting:
        parsed = replace(parsed, starting=True)
    progress = make_progress(opts.quiet)
    try:
        return creating.create(client, gopts, parsed, progress)
    finally:
        progress.close()


def run(client: Client, gopts: GlobalOptions, opts: RunOptions) -> RunResult:
    """``ctk-run run``: create, start, and (without ``-d``) stream its output until it exits. A failure of ctk
    itself is a RunError (125, Docker's code); the container's own status is the result's ``exit_code``."""
    with run_errors(lambda: gopts.data_root):
        return _run(client, gopts, opts)


def _run(client: Client, gopts: GlobalOptions, opts: RunOptions) -> RunResult:
    from . import detachkeys
    from .attach import run_attached, run_logged

    keys = detachkeys.parse(opts.detach_keys)  # checked before anything is made
    c = _create(client, gopts, opts, starting=True)
    if opts.detach:
        try:
            lifecycle.start_task(client, gopts, c)
        except CtkError:
            if opts.auto_remove:
                lifecycle.remove(client, gopts, c, True)
            raise
        return RunResult(c.id, 0, detached=True)
    try:
        if opts.tty:
            from .attach import run_terminal

            code = run_terminal(client, gopts, c, detach_keys=keys, sig_proxy=opts.sig_proxy)
            if code is None:
                return RunResult(c.id, 0, detached=True)  # it runs on (its logger removes it at the exit with --rm)
        elif opts.interactive:
            code = run_attached(client, gopts, c, stdin_open=opts.interactive, tty=opts.tty)
        else:
            code = run_logged(client, gopts, c)
    except BaseException:
        if opts.auto_remove:
            _cleanup(client, gopts, c)
        raise
    if opts.auto_remove:
        _cleanup(client, gopts, c, exited=True)
    elif c.labels.get(L.RESTART_POLICY, "no") in ("no", ""):
        lifecycle.delete_task(client, c.id)  # keep the exit for ps; let the shim go
    return RunResult(c.id, code)


def _cleanup(client: Client, gopts: GlobalOptions, c: Container, exited: bool = False) -> None:
    from ctk_shared.errors import NotFound

    try:
        lifecycle.remove(client, gopts, c, True, exited=exited)
    except NotFound:
        pass  # its logger removed it first (a container with a terminal has one that does)
    except CtkError as e:
        sys.stderr.write(f"ctk-run: warning: removing {c.id[:12]}: {e}\n")


@dataclass(frozen=True)
class Outcome:
    """One target of a multi-target command: done (the cli prints ``target``, as Docker does) or failed."""

    target: str
    error: CtkError | None = None


def each(client: Client, texts: Iterable[str], action: Callable[[Client, Container], object]) -> Iterator[Outcome]:
    """Apply ``action`` to each container in turn, yielding each outcome as it is known (every target is
    tried; the cli prints the done ones and raises the failures at the end)."""
    from .lookup import find_container

    for text in texts:
        try:
            action(client, find_container(client, text))
        except CtkError as e:
            yield Outcome(text, e)
            continue
        yield Outcome(text)


def check_first_start(client: Client, c: Container, keys: tuple[KeySource, ...] = ()) -> None:
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


@dataclass(frozen=True)
class Started:
    """``start``: without -a/-i the outcome per container; attached, the container's exit status."""

    outcomes: tuple[Outcome, ...] = ()
    exit_code: int | None = None


def start(client: Client, gopts: GlobalOptions, opts: StartOptions) -> Started:
    from . import detachkeys

    if opts.attach or opts.interactive:
        from .attach import start_attached

        if len(opts.containers) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        dkeys = detachkeys.parse(opts.detach_keys)
        return Started(exit_code=start_attached(client, gopts, opts.containers[0], interactive=opts.interactive,
                                                detach_keys=dkeys, keys=decryption_keys(opts.decryption_keys)))
    keys = decryption_keys(opts.decryption_keys)

    def one(cl: Client, c: Container) -> None:
        check_first_start(cl, c, keys)
        lifecycle.start_task(cl, gopts, c)

    return Started(tuple(each(client, opts.containers, one)))


def restart(client: Client, gopts: GlobalOptions, opts: RestartOptions) -> Iterator[Outcome]:
    from .lookup import find_container

    def one(cl: Client, c: Container) -> None:
        check_first_start(cl, c)
        lifecycle.stop(cl, c, opts.timeout)
        lifecycle.start_task(cl, gopts, find_container(cl, c.id))

    return each(client, opts.containers, one)


def stop(client: Client, gopts: GlobalOptions, opts: StopOptions) -> Iterator[Outcome]:
    return each(client, opts.containers, lambda cl, c: lifecycle.stop(cl, c, opts.timeout, opts.sig))


def kill(client: Client, gopts: GlobalOptions, opts: KillOptions) -> Iterator[Outcome]:
    return each(client, opts.containers, lambda cl, c: lifecycle.kill(cl, c, opts.sig))


def rm(client: Client, gopts: GlobalOptions, opts: RmOptions) -> Iterator[Outcome]:
    return each(client, opts.containers, lambda cl, c: lifecycle.remove(cl, gopts, c, opts.force, opts.volumes))


def pause(client: Client, gopts: GlobalOptions, opts: PauseOptions) -> Iterator[Outcome]:
    from .pause import pause as do_pause

    return each(client, opts.containers, do_pause)


def unpause(client: Client, gopts: GlobalOptions, opts: UnpauseOptions) -> Iterator[Outcome]:
    from .pause import unpause as do_unpause

    return each(client, opts.containers, do_unpause)


def update(client: Client, gopts: GlobalOptions, opts: UpdateOptions) -> Iterator[Outcome]:
    """Every value is checked before any container changes (here, not at the first ``next``)."""
    from .update import parse_update, update_container

    change = parse_update(memory=opts.memory, memory_swap=opts.memory_swap, cpus=opts.cpus,
                          pids_limit=opts.pids_limit, restart=opts.restart)
    return each(client, opts.containers, lambda cl, c: update_container(cl, gopts, c, change))


def wait(client: Client, gopts: GlobalOptions, opts: WaitOptions) -> Iterator[int | None]:
    """Each container's exit code once the condition holds (None for ``healthy``), in the order given."""
    from .health_wait import wait as wait_for
    from .lookup import find_container

    for text in opts.containers:
        yield wait_for(client, find_container(client, text), opts.condition)


@dataclass(frozen=True)
class Documents:
    """``inspect``: the documents to print (a JSON array, or the ``--format`` template per document)."""

    docs: list[dict[str, Any]]


def inspect(client: Client, gopts: GlobalOptions, opts: InspectOptions) -> Documents:
    from .listing import inspect_record
    from .lookup import find_container
    from .status import state_of

    output.parse_format(opts.fmt)  # a syntax error before any work
    docs = []
    for text in opts.containers:
        c = find_container(client, text)
        docs.append(inspect_record(c, state_of(c, lifecycle.task_of(client, c.id))))
    return Documents(docs)


def logs(client: Client, gopts: GlobalOptions, opts: LogsOptions) -> Iterator[tuple[str, bytes]]:
    """The container's log as ``(stream, bytes)`` records, "stdout" or "stderr", as they come (with
    ``follow``, until the container stops); a warning about dropped lines goes to stderr at the end."""
    from . import state
    from .logfile import follow_records, format_record, parse_since, read_records
    from .lookup import find_container
    from .status import state_of

    c = find_container(client, opts.container)
    path = c.labels.get(L.LOG_PATH) or str(state.log_path(gopts.data_root, client.namespace, c.id))
    tail = opts.tail
    n = None if tail == "all" else int(tail) if tail.lstrip("-").isdigit() else None
    if tail != "all" and n is None:
        raise UsageError(f"invalid --tail {tail!r}")
    t_since = parse_since(opts.since) if opts.since else None
    t_until = parse_since(opts.until) if opts.until else None

    def running() -> bool:
        try:
            cur = client.containers.get(c.id)
        except CtkError:
            return False
        return state_of(cur, lifecycle.task_of(client, c.id)).status in ("running", "restarting", "paused")

    records = follow_records(path, tail=n, since=t_since, until=t_until, is_running=running) if opts.follow \
        else read_records(path, tail=n, since=t_since, until=t_until)
    for rec in records:
        yield format_record(rec, opts.timestamps)
    from .logger import read_drops

    drops = read_drops(os.path.dirname(path))
    if drops:
        sys.stderr.write(f"ctk-run: warning: {drops['Lines']} lines of this log were dropped: "
                         f"{drops.get('Reason') or 'write error'}\n")


@dataclass(frozen=True)
class Ports:
    """``port``: the lines to print (``80/tcp -> 0.0.0.0:8080``, or only the host side for one port)."""

    lines: list[str]


def port(client: Client, gopts: GlobalOptions, opts: PortOptions) -> Ports:
    from .listing import network_state
    from .lookup import find_container
    from .status import state_of

    text, private = opts.container, opts.private_port
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
        return Ports([host(m) for m in mappings])
    return Ports([f"{m['containerPort']}/{m['protocol']} -> {host(m)}" for m in mappings])


@dataclass(frozen=True)
class Exited:
    """An attached command ended (``exec``, ``attach``): its exit status, which the cli exits with."""

    exit_code: int


def exec_(client: Client, gopts: GlobalOptions, opts: ExecOptions) -> Exited:
    """``exec``: a command in a running container, its stdio on ours (a ctk failure is a RunError, 125)."""
    from .execs import exec_in

    with run_errors(lambda: gopts.data_root):
        return Exited(exec_in(client, gopts, opts.container, opts.command, detach=opts.detach,
                              interactive=opts.interactive, tty=opts.tty, env=merge_env(opts.env, opts.env_file),
                              workdir=opts.workdir, user=opts.user, privileged=opts.privileged))


def attach(client: Client, gopts: GlobalOptions, opts: AttachOptions) -> Exited:
    from . import detachkeys
    from .attach import attach_to

    keys = detachkeys.parse(opts.detach_keys)
    return Exited(attach_to(client, gopts, opts.container, no_stdin=opts.no_stdin, sig_proxy=opts.sig_proxy,
                            detach_keys=keys))


def rename(client: Client, gopts: GlobalOptions, opts: RenameOptions) -> None:
    """``rename`` prints nothing (as Docker): no result."""
    from .rename import rename as do_rename

    do_rename(client, gopts, opts.container, opts.new_name)


@dataclass(frozen=True)
class Volumes:
    """The volumes a ``volume`` command made or removed, by name; and a failure per volume that was not."""

    names: list[str]
    failures: list[CtkError] = field(default_factory=list)


def volume_create(client: Client | None, gopts: GlobalOptions, opts: VolumeCreateOptions) -> Volumes:
    """A directory under the data root (no containerd: ``client`` may be None)."""
    from . import volumes

    if opts.driver != "local":
        raise UsageError(f"volume driver {opts.driver!r} is not supported", hint="only the local driver exists")
    options = key_values(opts.opt, "--opt", bare="error")
    v = volumes.create(gopts.data_root, gopts.namespace, opts.name or volumes.random_name(),
                       key_values(opts.label), options)
    return Volumes([v.name])


def volume_inspect(client: Client | None, gopts: GlobalOptions, opts: VolumeInspectOptions) -> Documents:
    from . import volumes

    output.parse_format(opts.fmt)
    return Documents([volumes.get(gopts.data_root, gopts.namespace, n).record() for n in opts.names])


def volume_rm(client: Client, gopts: GlobalOptions, opts: VolumeRmOptions) -> Volumes:
    from . import volumes

    failures, removed = volumes.remove(client, gopts.data_root, gopts.namespace, list(opts.names), opts.force)
    return Volumes(list(removed), list(failures))


def volume_prune(client: Client, gopts: GlobalOptions, opts: VolumePruneOptions) -> Volumes:
    from . import volumes

    return Volumes(list(volumes.prune(client, gopts.data_root, gopts.namespace, opts.all_)))
