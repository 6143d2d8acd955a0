"""Creating a container: make sure the image is here and unpacked, build the spec, take a name, and write the
container record with its snapshot — all or nothing (a lease holds the snapshot until the record roots it)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctk_shared import images as store
from ctk_shared import labels as SL
from ctk_shared import reference as refs
from ctk_shared.errors import AlreadyExists, NotFound
from ctk_shared.snapshotfs import layered_dirs, read_layered

from . import createguard, state
from . import labels as L
from .lookup import name_in_use
from .mounts import MountSpec
from .naming import random_name
from .network import NetOptions
from .restart import RestartPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container, Mount
    from ctk_shared.decryption_keys import KeySource
    from ctk_shared.images import LocalImage
    from ctk_shared.nethooks import NetworkInfo
    from ctk_shared.oci import Platform
    from ctk_shared.progress import Progress

    from .network import JoinTarget
    from .spec import SpecOptions
    from .volumes import Use, Volume

RUNTIME = "io.containerd.runc.v2"


@dataclass(frozen=True)
class CreateOptions:
    """What ``create`` and ``run`` were asked for: the image, the spec's flags and the record's own settings."""

    image: str
    spec: SpecOptions
    name: str | None = None
    pull: str = "missing"  # missing | always | never
    platform: Platform | None = None
    restart: RestartPolicy = field(default_factory=lambda: RestartPolicy("no"))
    auto_remove: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    stop_timeout: int | None = None
    net: NetOptions = field(default_factory=NetOptions)
    decryption_keys: tuple[KeySource, ...] = ()  # for encrypted images
    volumes_from: tuple[str, ...] = ()  # CONTAINER[:ro|:rw]
    healthcheck: dict[str, Any] | None = None  # the user's --health-* part (healthcheck.from_flags); None: the image's
    starting: bool = False  # ``run``: the task starts right after (its start labels go into the record)


def ensure_image(client: Client, gopts: GlobalOptions, text: str, pull: str, platform: Platform | None,
                 progress: Progress, decryption_keys: tuple[KeySource, ...] = ()) -> tuple[LocalImage, str]:
    """The image, pulled when missing (or always), through the shared library, and unpacked; with the value of
    the key-check label. An encrypted image is refused, before any unpacking, unless ``decryption_keys`` open
    its layers' wrapped keys: its layers may already be unpacked here by someone who had the key."""
    from .keycheck import authorize

    ref = refs.parse(text)
    have = True
    try:
        img = store.load_local(client, text, platform)
    except NotFound:
        have = False
    if pull == "always" or (not have and pull == "missing"):
        from ctk_shared import connect  # only here: the registry client and the puller cost ~10 ms to import
        from ctk_shared.pull import PullOptions
        from ctk_shared.pull import pull as do_pull

        do_pull(client, connect.registry(ref.domain, gopts), ref,
                PullOptions(platform=platform, snapshotter=gopts.snapshotter, decryption_keys=decryption_keys),
                progress)
        img = store.load_local(client, str(ref), platform)
    elif not have:
        raise NotFound(f"image {text!r} not found locally and --pull=never", hint=f"ctk-pull {text}")
    checked = authorize(img.image.name, img.manifest.layers, decryption_keys)
    if not store.is_unpacked(client, img.config, gopts.snapshotter):
        store.unpack(client, img, gopts.snapshotter, progress, decryption_keys)
    return img, checked


def _etc_files(rootfs: list[Mount]) -> tuple[str | None, str | None]:
    """/etc/passwd and /etc/group of the image, read straight from the directories of the container's new
    snapshot (its upper directory is still empty: the lower ones are the image's), with no mount and no view
    of the image of its own (issue 20: a view cost four RPCs per create)."""
    # a mount type other than bind/overlay gives no dirs: users then resolve numerically only
    dirs = layered_dirs(rootfs)
    return read_layered(dirs, "etc/passwd"), read_layered(dirs, "etc/group")


def _write_etc_files(cdir: Path, hostname: str, net: NetOptions, gateway: str) -> tuple[MountSpec, ...]:
    from ctk_shared.nethooks import hosts_text, resolv_text
    from ctk_shared.outputs import write_owned

    networked = net.mode == "cni"
    write_owned(cdir / "hostname", (hostname + "\n").encode())  # never through a link planted there
    write_owned(cdir / "hosts", hosts_text(hostname, list(net.add_hosts), gateway, networked).encode())
    write_owned(cdir / "resolv.conf", resolv_text(net.dns, net.dns_search, net.dns_options, networked).encode())
    return tuple(MountSpec("bind", str(cdir / f), f"/etc/{f}") for f in ("hostname", "hosts", "resolv.conf"))


def _bind_missing_sources(mounts: tuple[MountSpec, ...]) -> None:
    for m in mounts:
        if m.type == "bind" and not os.path.exists(m.source):
            os.makedirs(m.source, exist_ok=True)  # Docker's -v creates a missing host directory


def _image_view(client: Client, img: LocalImage, snapshotter: str) -> Callable[[], AbstractContextManager[list[Mount]]]:
    """A factory of context managers giving the image's read-only snapshot mounts (for copy-up)."""
    from contextlib import contextmanager

    @contextmanager
    def view() -> Iterator[list[Mount]]:
        if not img.chain_ids:
            yield []
            return
        with client.lease_scope(labels=createguard.LEASE_LABELS) as leased:
            sn = leased.snapshots(snapshotter)
            key = f"ctk-copyup-{os.urandom(6).hex()}"
            try:
                yield sn.view(key, img.chain_ids[-1])
            finally:
                try:
                    sn.remove(key)
                except NotFound:
                    pass
    return view


def _volume_mounts(client: Client, gopts: GlobalOptions, img: LocalImage, mounts: tuple[MountSpec, ...],
                   inherited_anonymous: frozenset[str] = frozenset()
                   ) -> tuple[tuple[MountSpec, ...], list[Use], list[Volume]]:
    """Named, anonymous and image (``VOLUME``) volumes made or found, filled from the image where Docker
    fills them; the mounts with each volume resolved to its host directory, the ``ctk/volumes`` uses, and
    the anonymous volumes made now (to remove if the creation fails). ``inherited_anonymous``: targets of
    volumes taken from another container (--volumes-from) that stay anonymous when they were."""
    import posixpath

    from . import volumes
    from .mounts import NOCOPY, VOLUME

    cfg = img.config.config if isinstance(img.config.config, dict) else {}
    covered = {m.target for m in mounts}
    image_vols = [MountSpec(VOLUME, "", posixpath.normpath(p)) for p in sorted(cfg.get("Volumes") or {})
                  if isinstance(p, str) and p.startswith("/") and posixpath.normpath(p) not in covered]
    all_mounts = mounts + tuple(image_vols)
    wanted = [(m.source, m.target, NOCOPY in m.options, not m.source) for m in all_mounts if m.type == VOLUME]
    _bind_missing_sources(mounts)
    if not wanted:
        return mounts, [], []
    vols, made = volumes.prepare(gopts.data_root, client.namespace, wanted,
                                 _image_view(client, img, gopts.snapshotter))
    it = iter(vols)
    out, uses = [], []
    for m in all_mounts:
        if m.type == VOLUME:
            v = next(it)
            out.append(volumes.mount_of(v, m.target, m.readonly))
            # as Docker: -v NAME:… is never removed by rm -v; a --volumes-from copy of an anonymous one is
            anonymous = not m.source or (m.target in inherited_anonymous and v.anonymous)
            uses.append(volumes.Use(v.name, m.target, anonymous))
        else:
            out.append(m)
    return tuple(out), uses, made


def parse_volumes_from(text: str) -> tuple[str, bool | None]:
    """``--volumes-from CONTAINER[:ro|:rw]``: the container and the forced mode (None: each mount's own)."""
    from ctk_shared.errors import UsageError

    name, sep, mode = text.partition(":")
    if not name or (sep and mode not in ("ro", "rw")):
        raise UsageError(f"invalid --volumes-from {text!r}", hint="CONTAINER, CONTAINER:ro or CONTAINER:rw")
    return name, (mode == "ro") if sep else None


def volumes_from(client: Client, specs: tuple[str, ...], covered: set[str]
                 ) -> tuple[tuple[MountSpec, ...], frozenset[str]]:
    """The volumes and bind mounts of the containers named by ``--volumes-from`` (Docker: the user's own
    ``-v``/``--mount`` win at the same destination; tmpfs mounts and ctk's generated files are not taken),
    as mounts to add; and the targets of those that are anonymous volumes there. A volume is mounted as it
    is (no copy-up: it is another container's data)."""
    import json

    from .lookup import find_container
    from .mounts import BIND, NOCOPY, NONRECURSIVE, PROPAGATIONS, VOLUME
    from .spec import INIT_TARGET
    from .volumes import uses_of

    out: dict[str, MountSpec] = {}
    anonymous: set[str] = set()
    for text in specs:
        name, force_ro = parse_volumes_from(text)
        c = find_container(client, name)
        try:
            spec = json.loads(c.spec or b"{}")
        except ValueError:
            spec = {}
        vols = {u.destination: u for u in uses_of(c)}
        for m in spec.get("mounts") or []:
            dest = str(m.get("destination", ""))
            opts = [str(o) for o in m.get("options") or []]
            ro = ("ro" in opts) if force_ro is None else force_ro
            if dest in covered or dest in out:
                continue
            if dest in vols:
                out[dest] = MountSpec(VOLUME, vols[dest].name, dest, ro, (NOCOPY,))
                if vols[dest].anonymous:
                    anonymous.add(dest)
            elif m.get("type") == "bind" and dest not in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
                                                          INIT_TARGET):
                extra = tuple(o for o in opts if o in PROPAGATIONS) + (() if "rbind" in opts else (NONRECURSIVE,))
                out[dest] = MountSpec(BIND, str(m.get("source", "")), dest, ro, extra)
    return tuple(out.values()), frozenset(anonymous)


def _image_stop_signal(config: object) -> str | None:
    """The image config's StopSignal when it names a signal (one that does not would make every later
    ``stop`` fail: then the default, SIGTERM)."""
    from ctk_shared.errors import UsageError

    from .lifecycle import parse_signal

    value = config.get("StopSignal") if isinstance(config, dict) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        parse_signal(value)
    except UsageError:
        return None
    return value


def _health_labels(user: dict[str, Any] | None, config: object) -> dict[str, str]:
    """The merged health check (the image's HEALTHCHECK and the flags, Docker's rules) as labels."""
    from ctk_shared.errors import UsageError

    from . import healthcheck as hcfg

    hc = hcfg.merge(user, config)
    if hc is None:
        return {}
    try:
        out = {hcfg.LABEL: hcfg.label_value(hc)}
    except hcfg.HealthConfigError as e:
        raise UsageError(str(e), hint="put a long check in a script in the image") from None
    shell = hcfg.image_shell(config)
    if shell and hc["Test"][0] == "CMD-SHELL":
        import json

        out[hcfg.SHELL_LABEL] = json.dumps(shell)
    return out


class _NetPlan:
    """Where the container's network comes from: the CNI networks it joins (``nets``), or the container
    whose namespace it shares (``join``, ``--network container:``), and the ports it publishes. (A plain
    class: a dataclass would be built at every ctk-run start, issue 20.)"""

    __slots__ = ("join", "nets", "ports")

    def __init__(self, nets: list[NetworkInfo], join: JoinTarget | None, ports: list[dict[str, Any]]) -> None:
        self.nets, self.join, self.ports = nets, join, ports


def _plan_network(client: Client, gopts: GlobalOptions, opts: CreateOptions, img: LocalImage) -> _NetPlan:
    """The networks resolved (the default one made on first use), the container to join, the ports with
    ``-P``'s exposed ones added; a warning for ports published on a mode that has none."""
    net = opts.net
    nets: list[NetworkInfo] = []
    join = None
    if net.mode == "container":
        from .network import join_target

        join = join_target(client, gopts.data_root, net.container)
    if net.mode == "cni":
        from ctk_shared import nethooks

        need_gw = any(h.endswith(":host-gateway") for h in net.add_hosts)
        nets = nethooks.resolve(gopts, list(net.networks), need_gw)
    elif net.publish or net.publish_all:
        sys.stderr.write(f"ctk-run: warning: published ports are discarded with --network {net.mode}\n")
    ports = list(net.publish)
    if net.publish_all and net.mode == "cni":
        from .ports import exposed

        have = {(m["containerPort"], m["protocol"]) for m in ports}
        # ImageConfig.config is already the image config's "config" object, where ExposedPorts lives
        ports += [m for m in exposed(img.config.config) if (m["containerPort"], m["protocol"]) not in have]
    return _NetPlan(nets, join, ports)


def _etc_mounts(cdir: Path, hostname: str, net: NetOptions, plan: _NetPlan) -> tuple[MountSpec, ...]:
    """/etc/hostname, hosts and resolv.conf: the joined container's own (none for a host-mode target, as
    Docker shares them), none with ``--network host``, else files written for this container."""
    join = plan.join
    if join is not None:
        return tuple(MountSpec("bind", str(join.etc_dir / f), f"/etc/{f}")
                     for f in ("hostname", "hosts", "resolv.conf")) if join.etc_dir else ()
    if net.mode == "host":
        return ()
    return _write_etc_files(cdir, hostname, net, plan.nets[0].gateway if plan.nets else "")


def _labels(client: Client, gopts: GlobalOptions, opts: CreateOptions, img: LocalImage, key_check: str, cid: str,
            hostname: str, join: JoinTarget | None, vol_uses: list[Any]) -> dict[str, str]:
    """The container's labels but its name and network attachment (see :mod:`ctk_run.labels`)."""
    net = opts.net
    labels = dict(opts.labels)
    labels.update({
        L.CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
        L.IMAGE_REF: img.image.name,
        L.PLATFORM: str(img.config.platform),
        L.RESTART_POLICY: str(opts.restart),
        L.LOG_PATH: str(state.log_path(gopts.data_root, client.namespace, cid)),
        L.HOSTNAME: hostname,
        L.NETWORK: join.network_label if join else net.mode if net.mode != "cni" else ",".join(net.networks),
        L.RESTART_COUNT: "0",
        L.KEY_CHECK: key_check,
    })
    if opts.auto_remove:
        labels[L.AUTO_REMOVE] = "true"
    if opts.spec.stdin_open:
        labels[L.STDIN_OPEN] = "true"
    if opts.spec.tty:
        labels[L.TTY] = "true"
    if vol_uses:
        from .volumes import uses_label

        labels[L.VOLUMES] = uses_label(vol_uses)
    # --stop-signal, else the image's STOPSIGNAL (nginx: SIGQUIT), as Docker keeps it in Config.StopSignal
    stop_signal = opts.spec.stop_signal or _image_stop_signal(img.config.config)
    if stop_signal:
        labels[L.STOP_SIGNAL] = stop_signal
    if opts.stop_timeout is not None:
        labels[L.STOP_TIMEOUT] = str(opts.stop_timeout)
    labels.update(_health_labels(opts.healthcheck, img.config.config))
    if opts.restart.name != "no":
        labels[L.RESTART_POLICY_CTD] = str(opts.restart)
    return labels


def _take_name(client: Client, wanted: str | None) -> str:
    """``--name``, refused when another container has it; else a random free name. Called under the
    namespace's name lock."""
    if wanted:
        other = name_in_use(client, wanted)
        if other is not None:
            raise AlreadyExists(f'the container name "{wanted}" is already in use by container {other.id[:12]}',
                                hint="remove that container (ctk-run rm) or choose another --name")
        return wanted
    name = random_name()
    while name_in_use(client, name) is not None:
        name = random_name()
    return name


def _check_volumes_kept(gopts: GlobalOptions, namespace: str, vol_uses: list[Any]) -> None:
    """A ``volume rm`` may have run since the mounts were set up (it takes the name lock, as we do now)."""
    for u in vol_uses:
        if not os.path.isdir(state.namespace_dir(gopts.data_root, namespace) / "volumes" / u.name / "_data"):
            raise NotFound(f"volume {u.name} was removed while the container was being created")


def _attach_networks(gopts: GlobalOptions, namespace: str, spec_opts: SpecOptions, labels: dict[str, str],
                     plan: _NetPlan, net: NetOptions, name: str, hostname: str, cdir: Path) -> SpecOptions:
    """ctk-net's hooks and annotations in the spec, the networks and ports in the labels (CNI mode only)."""
    import json

    from ctk_shared import nethooks

    names = [n.name for n in plan.nets]
    labels[SL.NETWORKS] = json.dumps(names)
    if plan.ports:
        labels[L.PORTS] = json.dumps(plan.ports)
    return replace(spec_opts, hooks=nethooks.hooks(gopts), annotations={
        **(spec_opts.annotations or {}),
        **nethooks.hook_annotations(namespace, names, plan.ports, name, hostname, cdir, net.ip,
                                    endpoints=net.endpoints(names))})


def _prepare_rootfs(leased: Client, gopts: GlobalOptions, cid: str, img: LocalImage) -> list[Mount]:
    """The container's own snapshot, made first (under the create's lease, which holds it until the record
    roots it): /etc/passwd is read from its directories and its first start needs no Mounts call."""
    return leased.snapshots(gopts.snapshotter).prepare(cid, img.chain_ids[-1] if img.chain_ids else "")


def _commit(leased: Client, gopts: GlobalOptions, cid: str, img: LocalImage, labels: dict[str, str],
            spec: dict[str, Any]) -> Container:
    """The container record, made under the lease that holds its snapshot."""
    import json

    from ctk_shared.containerd import Container

    return leased.containers.create(Container(
        id=cid, image=img.image.name, labels=labels, runtime=RUNTIME,
        spec=json.dumps(spec).encode(), snapshotter=gopts.snapshotter, snapshot_key=cid))


def _drop_snapshot(leased: Client, gopts: GlobalOptions, cid: str) -> None:
    """A failed create's snapshot goes at once (its lease's deletion alone leaves it to the next GC)."""
    from ctk_shared.errors import CtkError

    try:
        leased.snapshots(gopts.snapshotter).remove(cid)
    except CtkError:
        pass


def create(client: Client, gopts: GlobalOptions, opts: CreateOptions, progress: Progress) -> Container:
    """The container record and its snapshot, all or nothing: its directory, generated files and new
    anonymous volumes go again when anything fails (a guard file lets a later create reclaim what a killed
    one left)."""
    img, key_check = ensure_image(client, gopts, opts.image, opts.pull, opts.platform, progress,
                                  opts.decryption_keys)
    if opts.name:
        state.validate_name(opts.name)
    plan = _plan_network(client, gopts, opts, img)
    join = plan.join
    cid = os.urandom(32).hex()  # secrets.token_hex's own source, without importing it
    hostname = opts.spec.hostname or (join.hostname if join and join.hostname else cid[:12])
    cdir = state.container_dir(gopts.data_root, client.namespace, cid)
    new_anon: list[Any] = []
    createguard.reclaim(client, cdir.parent)  # what creates killed half-way left
    guard = -1
    try:
        state.make_container_dir(gopts.data_root, client.namespace, cid)
        guard = createguard.hold(cdir)
        # one lease from the snapshot to the record: nothing is left if anything between fails
        with client.lease_scope(labels=createguard.LEASE_LABELS) as leased:
            rootfs = _prepare_rootfs(leased, gopts, cid, img)
            try:
                c = _define(client, leased, gopts, opts, img, key_check, plan, cid, hostname, cdir, rootfs,
                            new_anon)
            except BaseException:
                _drop_snapshot(leased, gopts, cid)
                raise
        from .lifecycle import created_here

        created_here(c.id, rootfs)
        return c
    except BaseException:
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        from .volumes import discard

        discard(new_anon)
        raise
    finally:
        if guard >= 0:
            createguard.release(cdir, guard)


def _define(client: Client, leased: Client, gopts: GlobalOptions, opts: CreateOptions, img: LocalImage,
            key_check: str, plan: _NetPlan, cid: str, hostname: str, cdir: Path, rootfs: list[Mount],
            new_anon: list[Any]) -> Container:
    """The /etc files, volumes, labels, name and spec of the container whose snapshot ``rootfs`` is, and its
    record. Anonymous volumes made here are added to ``new_anon`` (the caller removes them on failure)."""
    from .spec import build_spec

    net, join = opts.net, plan.join
    passwd, group = _etc_files(rootfs) if img.chain_ids else (None, None)
    extra = _etc_mounts(cdir, hostname, net, plan)
    from_mounts, inherited = volumes_from(client, opts.volumes_from, {m.target for m in opts.spec.mounts})
    vol_mounts, vol_uses, made = _volume_mounts(client, gopts, img, opts.spec.mounts + from_mounts, inherited)
    new_anon.extend(made)
    spec_opts = replace(opts.spec, hostname=hostname, extra_mounts=extra + opts.spec.extra_mounts,
                        mounts=vol_mounts,
                        network="host" if net.mode == "host" or (join and join.mode == "host")
                        else opts.spec.network,
                        netns_path=_joined_netns(gopts, client.namespace, join))
    labels = _labels(client, gopts, opts, img, key_check, cid, hostname, join, vol_uses)
    with state.name_lock(gopts.data_root, client.namespace):
        name = labels[L.NAME] = _take_name(client, opts.name)
        _check_volumes_kept(gopts, client.namespace, vol_uses)
        if plan.nets:
            spec_opts = _attach_networks(gopts, client.namespace, spec_opts, labels, plan, net, name, hostname,
                                         cdir)
        spec = build_spec(cid, client.namespace, img.config.config, spec_opts, passwd=passwd, group=group)
        if opts.starting:
            from .lifecycle import now_label

            # the start's own labels in the record: its start then needs no update before the task runs
            labels.update({L.STARTED_AT: now_label(), L.NEVER_STARTED: "true"})
        return _commit(leased, gopts, cid, img, labels, spec)


def _joined_netns(gopts: GlobalOptions, namespace: str, join: JoinTarget | None) -> str:
    """The pinned network namespace of a ``--network container:`` target on a CNI network ("" otherwise)."""
    if join is None or join.mode != "cni":
        return ""
    from ctk_shared.nethooks import pinned_netns

    return str(pinned_netns(gopts.data_root, namespace, join.id))
