"""Volumes of Docker's ``local`` driver: directories ``<data-root>/<namespace>/volumes/<name>/_data`` with a
``volume.json`` beside ``_data`` (CreatedAt, Labels, Options), written atomically.

A volume is created whole or not at all: its directory is built under a dot-name (no volume name starts with
a dot) and renamed into place. Volume operations, copy-up included, take one flock per namespace
(``volumes/.lock``); removals also take the container name lock, under which ``create`` records a container,
so a volume in use can never be removed between a container's mount set-up and its record.

Volumes made before ``volume.json`` existed (a bare ``<name>/_data``) are volumes too: their metadata is
read as empty, and a 64-hex name counts as anonymous (that is how they were named).

Which containers use which volume: the ``ctk/volumes`` label (JSON list of {Name, Destination, Anonymous}),
or, for containers made before that label, their spec's bind sources under the volumes directory.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctk_shared import dataroot
from ctk_shared.errors import Conflict, CtkError, NotFound
from ctk_shared.outputs import open_owned, rename_owned, write_owned

from . import labels as L
from .mounts import check_volume_name

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container, Mount

    from .mounts import MountSpec
    from .options import VolumeLsOptions

ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # Docker's marker of an anonymous volume ("" value)
META = "volume.json"
DATA = "_data"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _rmtree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """shutil.rmtree, imported when a volume is removed: shutil is ~1.5 ms of every run's start otherwise."""
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)


@dataclass(frozen=True)
class Volume:
    """A named volume: its directory under the data root and the metadata written beside it."""

    name: str
    dir: Path  # <volumes>/<name>
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def mountpoint(self) -> Path:
        return self.dir / DATA

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def record(self) -> dict[str, Any]:
        """``volume inspect``'s document, Docker's field names."""
        return {"CreatedAt": self.created_at, "Driver": "local", "Labels": dict(self.labels),
                "Mountpoint": str(self.mountpoint), "Name": self.name, "Options": dict(self.options),
                "Scope": "local"}


def volumes_dir(data_root: str, namespace: str) -> Path:
    return Path(data_root) / namespace / "volumes"


_held: dict[Path, int] = {}  # volumes dir -> the descriptor holding its lock in this process


@contextmanager
def lock(data_root: str, namespace: str) -> Iterator[Path]:
    """The namespace's volume lock (an flock: a killed holder never leaves it stale); yields the volumes dir.
    A copy-up child inherits the descriptor, so the lock lasts until the child ends even if we are killed."""
    d = volumes_dir(data_root, namespace)
    dataroot.makedirs(data_root, d, 0o700)
    fd = open_owned(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[d] = fd
        yield d
    finally:
        _held.pop(d, None)
        os.close(fd)


def _read(vdir: Path) -> Volume | None:
    try:
        st = os.lstat(vdir / DATA)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or os.path.islink(vdir):
        return None
    meta: dict[str, Any] = {}
    try:
        fd = open_owned(vdir / META, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            meta = json.loads(f.read() or b"{}")
    except (OSError, CtkError, ValueError):
        meta = {}
    name = vdir.name
    labels = meta.get("Labels")
    if not isinstance(labels, dict):
        labels = {ANONYMOUS_LABEL: ""} if _HEX64.match(name) else {}
    created = meta.get("CreatedAt") or datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
    return Volume(name, vdir, str(created), {str(k): str(v) for k, v in labels.items()},
                  {str(k): str(v) for k, v in (meta.get("Options") or {}).items()})


def get(data_root: str, namespace: str, name: str) -> Volume:
    check_volume_name(name)
    v = _read(volumes_dir(data_root, namespace) / name)
    if v is None:
        raise NotFound(f"no such volume: {name}", hint="ctk-run volume ls")
    return v


def list_all(data_root: str, namespace: str) -> list[Volume]:
    d = volumes_dir(data_root, namespace)
    try:
        names = sorted(n for n in os.listdir(d) if not n.startswith("."))
    except FileNotFoundError:
        return []
    return [v for v in (_read(d / n) for n in names) if v is not None]


def _create_locked(d: Path, name: str, labels: dict[str, str], options: dict[str, str]) -> tuple[Volume, bool]:
    """The volume ``name`` (caller holds the lock), made whole if missing; and whether it was made now."""
    existing = _read(d / name)
    if existing is not None:
        return existing, False
    if os.path.lexists(d / name):
        raise CtkError(f"creating volume {name}: {d / name} exists and is not a volume", hint="remove it")
    for n in os.listdir(d):  # what a killed create left behind
        if n.startswith(".new-"):
            _rmtree(d / n, ignore_errors=True)
    tmp = d / f".new-{os.urandom(6).hex()}"
    created = datetime.now(UTC).isoformat(timespec="seconds")
    os.mkdir(tmp, 0o700)
    try:
        os.mkdir(tmp / DATA, 0o755)
        meta = {"Name": name, "CreatedAt": created, "Labels": labels, "Options": options}
        write_owned(tmp / META, (json.dumps(meta, indent=1) + "\n").encode(), mode=0o600, fsync=True)
        rename_owned(tmp, d / name)
    except BaseException:
        _rmtree(tmp, ignore_errors=True)
        raise
    return Volume(name, d / name, created, dict(labels), dict(options)), True


def random_name() -> str:
    """An anonymous volume's name, as Docker's: 64 hex digits."""
    return os.urandom(32).hex()


def create(data_root: str, namespace: str, name: str, labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None) -> Volume:
    """``volume create``: a new volume, or the existing one of that name (as Docker's local driver)."""
    check_volume_name(name)
    options = dict(options or {})
    check_options(options)
    with lock(data_root, namespace) as d:
        return _create_locked(d, name, dict(labels or {}), options)[0]


# ------------------------------------------------------------------------------------- the local driver's -o

OPTION_KEYS = ("type", "device", "o")
_BIND_FLAGS = ("bind", "rbind", "ro", "rw", "private", "rprivate", "shared", "rshared", "slave", "rslave")


def check_options(options: dict[str, str]) -> None:
    """Docker's local driver options, as far as ctk carries them out: ``type=tmpfs`` (``device`` any name,
    ``o`` tmpfs options such as ``size=100m``) and ``type=none`` with ``o=bind`` (``device`` an existing host
    directory). Raises UsageError naming the first problem."""
    from ctk_shared.errors import UsageError

    from .mounts import merge_tmpfs_options

    if not options:
        return
    for k in options:
        if k not in OPTION_KEYS:
            raise UsageError(f'invalid option: "{k}"', hint="the local driver takes type=, device= and o=")
    kind, device, o = options.get("type", ""), options.get("device", ""), options.get("o", "")
    if not kind:
        raise UsageError('missing required option: "type"', hint="-o type=tmpfs or -o type=none")
    if not device:
        raise UsageError('missing required option: "device"', hint="-o device=tmpfs, or a host directory for a bind")
    flags = [f for f in o.split(",") if f]
    if kind == "tmpfs":
        try:
            merge_tmpfs_options(flags)
        except UsageError as e:
            raise UsageError(f"invalid option o={o!r}: {e.message}") from None
    elif kind == "none":
        bad = [f for f in flags if f not in _BIND_FLAGS]
        if bad:
            raise UsageError(f"invalid option o={o!r}: {bad[0]!r} is not a bind mount flag")
        if not {"bind", "rbind"} & set(flags):
            raise UsageError(f"invalid option o={o!r}: type=none needs o=bind (or rbind)")
        if not device.startswith("/"):
            raise UsageError(f"invalid option device={device!r}: a bind needs an absolute host path")
        if not os.path.isdir(device):
            raise UsageError(f"invalid option device={device!r}: no such directory on the host")
    else:
        raise UsageError(f"volume type {kind!r} is not supported", hint="-o type=tmpfs or -o type=none,o=bind")


def mount_of(v: Volume, target: str, readonly: bool) -> MountSpec:
    """The mount of volume ``v`` at ``target``: a bind of its ``_data``, or what its driver options say (a
    tmpfs with those options; a bind of the device)."""
    from .mounts import BIND, NONRECURSIVE, PROPAGATIONS, TMPFS, MountSpec

    kind = v.options.get("type")
    flags = [f for f in v.options.get("o", "").split(",") if f]
    if kind == "tmpfs":
        # Docker's local driver mounts the tmpfs with the user's flags only: none of --tmpfs's noexec & co
        return MountSpec(TMPFS, "", target, readonly, ("exec", "suid", "dev", *flags))
    if kind == "none":
        device = v.options.get("device", "")
        if not os.path.isdir(device):
            raise NotFound(f"volume {v.name}: its device {device} is not a directory on the host",
                           hint=f"create it, or remove the volume (ctk-run volume rm {v.name})")
        extra = tuple(f for f in flags if f in PROPAGATIONS) + (() if "rbind" in flags else (NONRECURSIVE,))
        return MountSpec(BIND, device, target, readonly or "ro" in flags, extra)
    return MountSpec(BIND, str(v.mountpoint), target, readonly)


# ---------------------------------------------------------------------------------------- volumes of containers


@dataclass(frozen=True)
class Use:
    """One volume mount of a container, as recorded in its ``ctk/volumes`` label."""
    name: str
    destination: str
    anonymous: bool


def prepare(data_root: str, namespace: str, wanted: list[tuple[str, str, bool, bool]],
            image_mounts: Callable[[], AbstractContextManager[list[Mount]]]) -> tuple[list[Volume], list[Volume]]:
    """Make (or find) each volume of ``wanted`` = [(name or "", destination, nocopy, anonymous)] and copy the
    image's content in where Docker would: a volume whose ``_data`` is empty and that nocopy does not exclude.
    ``image_mounts`` is a context manager factory giving the image's read-only snapshot mounts (only entered
    when a copy-up may be needed). Anonymous volumes made here are removed again if a step fails here; the
    caller gets the list of those it must remove if it fails later."""
    from contextlib import ExitStack

    from .copyup import copy_up, recover

    out: list[Volume] = []
    made: list[Volume] = []
    with lock(data_root, namespace) as d, ExitStack() as stack:
        mounts = None
        try:
            for name, dest, nocopy, anonymous in wanted:
                if not name:
                    name = random_name()
                labels = {ANONYMOUS_LABEL: ""} if anonymous else {}
                vol, new = _create_locked(d, name, labels, {})
                if new and anonymous:
                    made.append(vol)
                recover(str(vol.dir))
                if not nocopy and not vol.options and not os.listdir(vol.mountpoint):
                    if mounts is None:
                        mounts = stack.enter_context(image_mounts())
                    if mounts:
                        copy_up(mounts, dest, str(vol.dir), lock_fd=_held[d])
                out.append(vol)
        except BaseException:
            for v in made:
                _rmtree(v.dir, ignore_errors=True)
            raise
    return out, made


def discard(vols: list[Volume]) -> None:
    """Remove volumes just made for a container whose creation failed."""
    for v in vols:
        _rmtree(v.dir, ignore_errors=True)


def uses_label(uses: list[Use]) -> str:
    return json.dumps([{"Name": u.name, "Destination": u.destination, "Anonymous": u.anonymous} for u in uses],
                      separators=(",", ":"))


def uses_of(c: Container, vdir: Path | None = None) -> list[Use]:
    """The volumes container ``c`` mounts: its label, else (older containers) its spec's sources in ``vdir``."""
    raw = c.labels.get(L.VOLUMES)
    if raw:
        try:
            return [Use(str(u["Name"]), str(u.get("Destination", "")), bool(u.get("Anonymous")))
                    for u in json.loads(raw)]
        except (ValueError, KeyError, TypeError):
            return []
    if vdir is None:
        return []
    try:
        spec = json.loads(c.spec or b"{}")
    except ValueError:
        return []
    out = []
    prefix = str(vdir) + "/"
    for m in spec.get("mounts") or []:
        src = str(m.get("source") or "")
        if src.startswith(prefix) and src.endswith("/" + DATA):
            name = src[len(prefix):-len(DATA) - 1]
            if "/" not in name:
                out.append(Use(name, str(m.get("destination", "")), bool(_HEX64.match(name))))
    return out


def users(client: Client, vdir: Path) -> dict[str, list[str]]:
    """Volume name -> names of the containers (any state) that use it."""
    out: dict[str, list[str]] = {}
    for c in client.containers.list():
        for u in uses_of(c, vdir):
            out.setdefault(u.name, []).append(c.labels.get(L.NAME) or c.id[:12])
    return out


def _remove_dir(v: Volume) -> None:
    # rename first, so a half-removed volume is never seen as one
    gone = v.dir.parent / f".rm-{os.urandom(6).hex()}"
    rename_owned(v.dir, gone)
    _rmtree(gone, ignore_errors=True)


def remove(client: Client, data_root: str, namespace: str, names: list[str],
           force: bool) -> tuple[list[CtkError], list[str]]:
    """``volume rm``: each volume unless a container uses it (a Conflict). ``force``: a missing volume is no
    error, and one in use is removed all the same (as issue 15 asks; Docker refuses it even with -f).
    Returns the failures and the names removed."""
    from .state import name_lock

    failures: list[CtkError] = []
    removed: list[str] = []
    with name_lock(data_root, namespace), lock(data_root, namespace) as d:
        used = users(client, d)
        for name in names:
            try:
                v = get(data_root, namespace, name)
            except NotFound as e:
                if not force:
                    failures.append(e)
                continue
            except CtkError as e:
                failures.append(e)
                continue
            if name in used and not force:
                failures.append(Conflict(f"remove {name}: volume is in use - [{', '.join(used[name])}]",
                                         hint="remove those containers first (ctk-run rm)"))
                continue
            _remove_dir(v)
            removed.append(name)
    return failures, removed


def prune(client: Client, data_root: str, namespace: str, all_: bool) -> list[str]:
    """``volume prune``: unused anonymous volumes (``all_``: every unused one); the names removed."""
    from .state import name_lock

    removed = []
    with name_lock(data_root, namespace), lock(data_root, namespace) as d:
        used = users(client, d)
        for v in list_all(data_root, namespace):
            if v.name in used or not (all_ or v.anonymous):
                continue
            _remove_dir(v)
            removed.append(v.name)
    return removed


def remove_anonymous(client: Client, ns_dir: Path, c: Container) -> None:
    """After container ``c`` is deleted (``rm -v``, ``--rm``): its anonymous volumes that no other container
    uses. ``ns_dir`` is ``<data-root>/<namespace>``. Problems are warnings, as Docker's."""
    import sys

    vdir = ns_dir / "volumes"
    anon = [u.name for u in uses_of(c, vdir) if u.anonymous]
    if not anon:
        return
    data_root, namespace = str(ns_dir.parent), ns_dir.name
    try:
        from .state import name_lock

        with name_lock(data_root, namespace), lock(data_root, namespace):
            used = users(client, vdir)
            for name in anon:
                v = _read(vdir / name)
                if v is None or name in used:
                    continue
                _remove_dir(v)
    except (OSError, CtkError) as e:
        sys.stderr.write(f"ctk-run: warning: removing the anonymous volumes of {c.id[:12]}: {e}\n")


# ------------------------------------------------------------------------------------------------- volume ls

LS_COLUMNS = (("DRIVER", "Driver"), ("VOLUME NAME", "Name"))
LS_FIELDS = ("Driver", "Labels", "Links", "Mountpoint", "Name", "Scope", "Size", "CreatedAt", "Availability",
             "Group", "Status")


def _filters(texts: list[str]) -> dict[str, list[str]]:
    from ctk_shared.errors import UsageError

    out: dict[str, list[str]] = {}
    for t in texts:
        key, sep, value = t.partition("=")
        if not sep or key not in ("dangling", "name", "label", "driver"):
            raise UsageError(f"invalid filter {t!r}", hint="dangling=true|false, name=…, label=KEY[=VALUE], driver=…")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter 'dangling={value}'")
        out.setdefault(key, []).append(value)
    return out


def _matches(v: Volume, f: dict[str, list[str]], used: dict[str, list[str]] | None) -> bool:
    if "name" in f and not any(re.search(p, v.name) for p in f["name"]):
        return False
    if "driver" in f and "local" not in f["driver"]:
        return False
    for want in f.get("label", []):
        k, sep, val = want.partition("=")
        if k not in v.labels or (sep and v.labels[k] != val):
            return False
    for d in f.get("dangling", []):
        dangling = d.lower() in ("true", "1")
        if used is not None and (v.name not in used) != dangling:
            return False
    return True


@dataclass(frozen=True)
class VolumeRecords:
    """``volume ls``: one record per volume (Docker's ``--format json`` fields); the cli prints them."""

    records: list[dict[str, str]]


def volume_ls(client: Callable[[], Client], gopts: GlobalOptions, opts: VolumeLsOptions) -> VolumeRecords:
    """``volume ls``. ``client`` is a factory: volumes live in the data root, so only ``dangling=`` needs
    containerd, and only then are grpc and the client loaded (a plain ``volume ls`` starts as fast as ``ls``)."""
    from ctk_shared import output

    output.parse_format(opts.fmt, LS_FIELDS)  # a bad template is refused before anything is read
    f = _filters(list(opts.filters))
    data_root, namespace = gopts.data_root, gopts.namespace
    used = users(client(), volumes_dir(data_root, namespace)) if "dangling" in f else None
    records = []
    for v in list_all(data_root, namespace):
        if not _matches(v, f, used):
            continue
        records.append({"Availability": "N/A", "CreatedAt": v.created_at, "Driver": "local", "Group": "N/A",
                        "Labels": ",".join(f"{k}={val}" for k, val in v.labels.items()), "Links": "N/A",
                        "Mountpoint": str(v.mountpoint), "Name": v.name, "Scope": "local", "Size": "N/A",
                        "Status": "N/A"})
    return VolumeRecords(records)
