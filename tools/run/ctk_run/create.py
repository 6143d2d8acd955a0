"""Creating a container: make sure the image is here and unpacked, build the spec, take a name, and write the
container record with its snapshot — all or nothing (a lease holds the snapshot until the record roots it)."""
from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ctk_shared import images as store
from ctk_shared import labels as SL
from ctk_shared import reference as refs
from ctk_shared.errors import AlreadyExists, NotFound
from ctk_shared.snapshotfs import layered_dirs, read_layered

from . import labels as L
from . import state
from .lookup import name_in_use
from .mounts import MountSpec
from .naming import random_name
from .network import NetOptions
from .restart import RestartPolicy

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.images import LocalImage
    from ctk_shared.oci import Platform
    from ctk_shared.progress import Progress

    from .spec import SpecOptions

RUNTIME = "io.containerd.runc.v2"


@dataclass(frozen=True)
class CreateOptions:
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
    decryption_keys: tuple = ()  # ctk_shared.decryption_keys.KeySource, for encrypted images


def ensure_image(client: Client, gopts: GlobalOptions, text: str, pull: str, platform: Platform | None,
                 progress: Progress, decryption_keys: tuple = ()) -> tuple[LocalImage, str]:
    """The image, pulled when missing (or always), through the shared library, and unpacked; with the value of
    the key-check label. An encrypted image is refused, before any unpacking, unless ``decryption_keys`` open
    its layers' wrapped keys: its layers may already be unpacked here by someone who had the key."""
    from ctk_shared import connect
    from ctk_shared.pull import PullOptions
    from ctk_shared.pull import pull as do_pull

    from .keycheck import authorize

    ref = refs.parse(text)
    have = True
    try:
        img = store.load_local(client, text, platform)
    except NotFound:
        have = False
    if pull == "always" or (not have and pull == "missing"):
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


def _etc_files(client: Client, img: LocalImage, snapshotter: str) -> tuple[str | None, str | None]:
    """/etc/passwd and /etc/group of the image, read straight from the snapshot's directories (no mount)."""
    with client.lease_scope() as leased:
        sn = leased.snapshots(snapshotter)
        key = f"ctk-etc-{secrets.token_hex(6)}"
        try:
            # a mount type other than bind/overlay gives no dirs: users then resolve numerically only
            dirs = layered_dirs(sn.view(key, img.chain_ids[-1]))
            return read_layered(dirs, "etc/passwd"), read_layered(dirs, "etc/group")
        finally:
            try:
                sn.remove(key)
            except NotFound:
                pass


def _write_etc_files(cdir: Path, hostname: str, net: NetOptions, gateway: str) -> tuple[MountSpec, ...]:
    from .network import hosts_text, resolv_text

    from ctk_shared.outputs import write_owned

    networked = net.mode == "cni"
    write_owned(cdir / "hostname", (hostname + "\n").encode())  # never through a link planted there
    write_owned(cdir / "hosts", hosts_text(hostname, list(net.add_hosts), gateway, networked).encode())
    write_owned(cdir / "resolv.conf", resolv_text(net.dns, net.dns_search, net.dns_options, networked).encode())
    return tuple(MountSpec("bind", str(cdir / f), f"/etc/{f}") for f in ("hostname", "hosts", "resolv.conf"))


def _volume_mounts(gopts: GlobalOptions, namespace: str, mounts: tuple[MountSpec, ...]) -> tuple[MountSpec, ...]:
    """Named and anonymous volumes become bind mounts of directories under the data root."""
    out = []
    for m in mounts:
        if m.type == "volume":
            name = m.source or secrets.token_hex(32)
            d = state.namespace_dir(gopts.data_root, namespace) / "volumes" / name / "_data"
            from ctk_shared import dataroot

            dataroot.makedirs(gopts.data_root, d)  # the data root 0710 first: volumes are nobody else's
            out.append(replace(m, type="bind", source=str(d)))
        elif m.type == "bind" and not os.path.exists(m.source):
            os.makedirs(m.source, exist_ok=True)  # Docker's -v creates a missing host directory
            out.append(m)
        else:
            out.append(m)
    return tuple(out)


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


def create(client: Client, gopts: GlobalOptions, opts: CreateOptions, progress: Progress) -> Container:
    from ctk_shared.containerd import Container

    from . import network
    from .ports import exposed
    from .spec import build_spec

    img, key_check = ensure_image(client, gopts, opts.image, opts.pull, opts.platform, progress,
                                  opts.decryption_keys)
    if opts.name:
        state.validate_name(opts.name)
    net = opts.net
    nets: list[network.NetworkInfo] = []
    if net.mode == "cni":
        need_gw = any(h.endswith(":host-gateway") for h in net.add_hosts)
        nets = network.resolve(gopts, list(net.networks), need_gw)
    elif net.publish or net.publish_all:
        sys.stderr.write(f"ctk-run: warning: published ports are discarded with --network {net.mode}\n")
    ports = list(net.publish)
    if net.publish_all and net.mode == "cni":
        have = {(m["containerPort"], m["protocol"]) for m in ports}
        # ImageConfig.config is already the image config's "config" object, where ExposedPorts lives
        ports += [m for m in exposed(img.config.config) if (m["containerPort"], m["protocol"]) not in have]
    cid = secrets.token_hex(32)
    hostname = opts.spec.hostname or cid[:12]
    cdir = state.container_dir(gopts.data_root, client.namespace, cid)
    try:
        state.make_container_dir(gopts.data_root, client.namespace, cid)
        passwd, group = _etc_files(client, img, gopts.snapshotter) if img.chain_ids else (None, None)
        extra = _write_etc_files(cdir, hostname, net, nets[0].gateway if nets else "") \
            if net.mode != "host" else ()
        spec_opts = replace(opts.spec, hostname=hostname, extra_mounts=extra + opts.spec.extra_mounts,
                            mounts=_volume_mounts(gopts, client.namespace, opts.spec.mounts),
                            network="host" if net.mode == "host" else opts.spec.network)
        import json

        labels = dict(opts.labels)
        labels.update({
            L.CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
            L.IMAGE_REF: img.image.name,
            L.PLATFORM: str(img.config.platform),
            L.RESTART_POLICY: str(opts.restart),
            L.LOG_PATH: str(state.log_path(gopts.data_root, client.namespace, cid)),
            L.HOSTNAME: hostname,
            L.NETWORK: net.mode if net.mode != "cni" else ",".join(net.networks),
            L.RESTART_COUNT: "0",
            L.KEY_CHECK: key_check,
        })
        if opts.auto_remove:
            labels[L.AUTO_REMOVE] = "true"
        # --stop-signal, else the image's STOPSIGNAL (nginx: SIGQUIT), as Docker keeps it in Config.StopSignal
        stop_signal = opts.spec.stop_signal or _image_stop_signal(img.config.config)
        if stop_signal:
            labels[L.STOP_SIGNAL] = stop_signal
        if opts.stop_timeout is not None:
            labels[L.STOP_TIMEOUT] = str(opts.stop_timeout)
        if opts.restart.name != "no":
            labels[L.RESTART_POLICY_CTD] = str(opts.restart)
        with state.name_lock(gopts.data_root, client.namespace):
            name = opts.name
            if name:
                other = name_in_use(client, name)
                if other is not None:
                    raise AlreadyExists(f'the container name "{name}" is already in use by container {other.id[:12]}',
                                        hint="remove that container (ctk-run rm) or choose another --name")
            else:
                name = random_name()
                while name_in_use(client, name) is not None:
                    name = random_name()
            labels[L.NAME] = name
            if nets:
                spec_opts = replace(spec_opts, hooks=network.hooks(gopts), annotations={
                    **(spec_opts.annotations or {}),
                    **network.annotations(client.namespace, [n.name for n in nets], ports, name, hostname,
                                          cdir, net.ip)})
                labels[SL.NETWORKS] = json.dumps([n.name for n in nets])
                if ports:
                    labels[L.PORTS] = json.dumps(ports)
            spec = build_spec(cid, client.namespace, img.config.config, spec_opts, passwd=passwd, group=group)
            with client.lease_scope() as leased:
                leased.snapshots(gopts.snapshotter).prepare(cid, img.chain_ids[-1] if img.chain_ids else "")
                return leased.containers.create(Container(
                    id=cid, image=img.image.name, labels=labels, runtime=RUNTIME,
                    spec=json.dumps(spec).encode(), snapshotter=gopts.snapshotter, snapshot_key=cid))
    except BaseException:
        shutil.rmtree(cdir, ignore_errors=True)
        raise

