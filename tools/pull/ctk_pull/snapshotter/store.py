"""Overlay snapshots on disk, with the semantics of containerd's overlayfs snapshotter.

Layout under ROOT::

    metadata.json            {"next_id": N, "snapshots": {key: {id, kind, parent, labels, created, updated, ...}}}
    snapshots/<id>/fs        the snapshot's own files (an overlay upperdir, later a lowerdir)
    snapshots/<id>/work      the overlay workdir of an active snapshot

Keys and names share one namespace (containerd's metastore does the same): an active or view snapshot is
known by its key, a committed one by the name given at Commit, and ``parent`` is always a committed name.
``metadata.json`` is rewritten atomically after every change, so a restarted daemon serves the same
snapshots; a directory is created before its record and deleted after it, and ``cleanup`` removes
directories no record names (left by a crash).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctk_shared import labels as L
from ctk_shared.containerd import Mount, SnapshotInfo
from ctk_shared.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

from .premount import Premounts
from .remote import LazyMounter, MountError, RemoteLayer

log = logging.getLogger("ctk.snapshotter")

METADATA = "metadata.json"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated, inodes) below ``path``, counting each hard-linked inode once (like containerd's fs.DiskUsage)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    paths: list[str] = [str(path)]
    for dirpath, dirnames, filenames in os.walk(path):
        paths.extend(os.path.join(dirpath, n) for n in (*dirnames, *filenames))
    for p in paths:
        try:
            st = os.lstat(p)
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident not in seen:
            seen.add(ident)
            size += st.st_blocks * 512
    return size, len(seen)


class _Filter:
    """containerd's filter syntax, the part snapshot listing uses: ``field==v``, ``!=``, ``~=`` (regexp), or a bare
    field (present), AND-ed with ``,``; fields ``name``, ``parent``, ``kind``, ``labels.KEY`` / ``labels."KEY"``."""

    _TERM = re.compile(r'^\s*(?P<field>[A-Za-z_]+(?:\.(?:"(?:[^"\\]|\\.)*"|[^=!~,\s]+))?)\s*'
                       r'(?:(?P<op>==|!=|~=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,]*?))?\s*$')

    def __init__(self, text: str) -> None:
        self.terms: list[tuple[list[str], str | None, str]] = []
        for part in self._split(text):
            m = self._TERM.match(part)
            if not m:
                raise InvalidArgument(f"invalid filter {text!r}")
            field, op, value = m.group("field"), m.group("op"), m.group("value") or ""
            head, _, rest = field.partition(".")
            path = [head] + ([json.loads(rest) if rest.startswith('"') else rest] if rest else [])
            if value.startswith('"'):
                value = json.loads(value)
            self.terms.append((path, op, value))

    @staticmethod
    def _split(text: str) -> list[str]:
        parts, cur, quoted = [], "", False
        for ch in text:
            if ch == '"' and not cur.endswith("\\"):
                quoted = not quoted
            if ch == "," and not quoted:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return [p for p in parts if p.strip()]

    def match(self, info: SnapshotInfo) -> bool:
        for path, op, value in self.terms:
            if path[0] == "labels" and len(path) == 2:
                actual: str | None = info.labels.get(path[1])
            elif len(path) == 1 and path[0] in ("name", "parent", "kind"):
                actual = getattr(info, path[0])
            else:
                actual = None
            if op is None:
                ok = actual is not None and actual != ""
            elif op == "==":
                ok = actual == value
            elif op == "!=":
                ok = actual != value
            else:
                ok = actual is not None and re.search(value, actual) is not None
            if not ok:
                return False
        return True


class SnapshotStore:
    """Thread-safe; every public method is one atomic step on the metadata."""

    def __init__(self, root: Path | str, *, overlay_options: Sequence[str] = ("index=off",),
                 lazy: LazyMounter | None = None, premount: bool = False) -> None:
        self.root = Path(root).resolve()
        self.overlay_options = tuple(overlay_options)
        self.lazy = lazy  # serves eStargz layers from their registry; None: every layer is unpacked
        self._mounting: set[str] = set()  # snapshot dirs of lazy mounts in progress (no record yet)
        # the layers that follow a lazily prepared one, mounted ahead in parallel
        self.premounts = (Premounts(lazy, self._allocate_dir, self._release_dir, self._serves,
                                    insecure=lazy.insecure, hosts_dirs=lazy.hosts_dirs)
                          if lazy is not None and premount else None)
        self._lock = threading.RLock()
        (self.root / "snapshots").mkdir(parents=True, exist_ok=True)
        self._meta = self._load()

    # -- persistence --------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / METADATA).read_text())
        except FileNotFoundError:
            return {"next_id": 1, "snapshots": {}}
        data.setdefault("next_id", 1)
        data.setdefault("snapshots", {})
        return data

    def _save(self) -> None:
        from ctk_shared.outputs import write_owned

        data = json.dumps(self._meta, indent=1, sort_keys=True).encode()
        write_owned(self.root / METADATA, data, mode=0o644, fsync=True)  # whole, never through a planted link

    # -- helpers ----------------------------------------------------------------------------------------
    @property
    def _snaps(self) -> dict[str, dict[str, Any]]:
        snaps: dict[str, dict[str, Any]] = self._meta["snapshots"]  # the metadata document's own section
        return snaps

    def _get(self, key: str) -> dict[str, Any]:
        rec = self._snaps.get(key)
        if rec is None:
            raise NotFound(f"snapshot {key} does not exist")
        return rec

    def _dir(self, rec: dict[str, Any]) -> Path:
        return self.root / "snapshots" / str(rec["id"])

    def fs_dir(self, key: str) -> Path:
        with self._lock:
            return self._dir(self._get(key)) / "fs"

    def _parent_dirs(self, parent: str) -> list[str]:
        """fs dirs of ``parent`` and its ancestors, nearest first (overlay's lowerdir order)."""
        out: list[str] = []
        while parent:
            rec = self._get(parent)
            out.append(str(self._dir(rec) / "fs"))
            parent = rec["parent"]
        return out

    def _info(self, key: str, rec: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(key, rec["parent"], rec["kind"], dict(rec["labels"]), _dt(rec["created"]),
                            _dt(rec["updated"]))

    def _mounts(self, rec: dict[str, Any]) -> list[Mount]:
        own = self._dir(rec)
        lowers = self._parent_dirs(rec["parent"])
        if not lowers:
            return [Mount("bind", str(own / "fs"), options=("ro" if rec["kind"] == "view" else "rw", "rbind"))]
        if rec["kind"] == "active":
            opts = [*self.overlay_options, f"workdir={own / 'work'}", f"upperdir={own / 'fs'}"]
        elif len(lowers) == 1:
            return [Mount("bind", lowers[0], options=("ro", "rbind"))]
        else:
            opts = list(self.overlay_options)
        opts.append("lowerdir=" + ":".join(lowers))
        return [Mount("overlay", "overlay", options=tuple(opts))]

    def _create(self, kind: str, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        if not key:
            raise InvalidArgument("a snapshot key is required")
        with self._lock:
            if key in self._snaps:
                raise AlreadyExists(f"snapshot {key} already exists")
            if parent:
                prec = self._get(parent)
                if prec["kind"] != "committed":
                    raise InvalidArgument(f"parent {parent} is not a committed snapshot")
            sid = self._meta["next_id"]
            self._meta["next_id"] = sid + 1
            d = self.root / "snapshots" / str(sid)
            if d.exists():
                shutil.rmtree(d)
            (d / "fs").mkdir(parents=True)
            if kind == "active":
                (d / "work").mkdir()
            now = _now()
            rec = {"id": sid, "kind": kind, "parent": parent, "labels": dict(labels), "created": now, "updated": now}
            self._snaps[key] = rec
            try:
                self._save()
            except BaseException:
                del self._snaps[key]
                shutil.rmtree(d, ignore_errors=True)
                raise
            return self._mounts(rec)

    # -- lazily served layers -------------------------------------------------------------------------
    def _prepare_remote(self, parent: str, labels: dict[str, str], layer: RemoteLayer) -> None:
        """The remote-snapshot protocol: mount the layer lazily and commit it under the ``snapshot.ref`` name,
        then raise AlreadyExists so containerd (or ctk's unpacker) skips downloading it. Returns only when the
        layer cannot be served lazily, and the caller prepares an ordinary snapshot for a full download."""
        target = labels[L.SNAPSHOT_REF]
        with self._lock:
            if target in self._snaps:
                raise AlreadyExists(f"snapshot {target} already exists")
            if parent:
                self._get(parent)
        d = None
        if self.premounts is not None:  # (the daemon's loop sweeps out mounts nobody adopted)
            self.premounts.start(layer, labels)
            d = self.premounts.take(layer)
        if d is None:
            d = self._allocate_dir()
            assert self.lazy is not None
            try:
                self.lazy.mount(layer, d / "fs", d / "lazyfs.log")
            except MountError as e:
                log.warning("layer %s cannot be served lazily (%s): it will be downloaded", layer.digest, e)
                self._release_dir(d)
                return
        try:
            self._commit_remote(d, target, parent, labels, layer)
        finally:
            with self._lock:
                self._mounting.discard(d.name)

    def _serves(self, layer_digest: str) -> bool:
        with self._lock:
            return any((r.get("remote") or {}).get("digest") == layer_digest for r in self._snaps.values())

    def _allocate_dir(self) -> Path:
        """A fresh snapshot dir for a lazy mount, kept from clean-up until its record exists or it is released.
        The id is not saved here (a synced metadata write per layer, all under the lock, cost a pull up to
        ~50 ms per layer on a busy disk): the record's commit saves it, and after a crash before that the dir
        is one no record names, which ``cleanup`` unmounts and removes at start, before any id is handed out."""
        with self._lock:
            sid = self._meta["next_id"]
            self._meta["next_id"] = sid + 1
            self._mounting.add(str(sid))
        d = self.root / "snapshots" / str(sid)
        (d / "fs").mkdir(parents=True, exist_ok=True)
        return d

    def _release_dir(self, d: Path) -> None:
        try:
            self._drop_dir(d)
        finally:
            with self._lock:
                self._mounting.discard(d.name)

    def _commit_remote(self, d: Path, target: str, parent: str, labels: dict[str, str], layer: RemoteLayer) -> None:
        with self._lock:
            lost = target in self._snaps or (parent and parent not in self._snaps)
            if not lost:
                now = _now()
                kept = {k: v for k, v in labels.items() if k.startswith(L.SNAPSHOT_LABEL_PREFIX)}
                self._snaps[target] = {"id": int(d.name), "kind": "committed", "parent": parent, "created": now,
                                       "updated": now, "remote": layer.record(),
                                       "labels": {**kept, L.SNAPSHOT_REF: target,
                                                  L.REMOTE_SNAPSHOT: "remote snapshot"}}
                self._save()
        if lost:  # a concurrent Prepare of the same layer won, or the parent went away meanwhile
            self._drop_dir(d)
        raise AlreadyExists(f"snapshot {target} already exists")

    def _drop_dir(self, d: Path) -> None:
        if self.lazy is not None:
            self.lazy.unmount(d / "fs")
        shutil.rmtree(d, ignore_errors=True)

    def remount(self) -> int:
        """Mount again every lazily served layer whose lazyfs process is gone (after a reboot or a kill);
        returns how many were mounted. A layer that fails stays unreadable and is logged."""
        if self.lazy is None:
            return 0
        with self._lock:
            remote = [(k, self._dir(r), RemoteLayer.from_record(r["remote"])) for k, r in self._snaps.items()
                      if r.get("remote")]
        n = 0
        for key, d, layer in remote:
            if self.lazy.alive(d / "fs"):
                continue
            try:
                self.lazy.unmount(d / "fs")
                self.lazy.mount(layer, d / "fs", d / "lazyfs.log")
                n += 1
            except (MountError, OSError) as e:
                log.error("snapshot %s (layer %s) cannot be mounted again: %s", key, layer.digest, e)
        return n

    # -- the Snapshots API ----------------------------------------------------------------------------
    def prepare(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        if self.lazy is not None:
            layer = RemoteLayer.from_labels(labels)
            if layer is not None:
                self._prepare_remote(parent, labels, layer)
        return self._create("active", key, parent, labels)

    def view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        return self._create("view", key, parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            rec = self._get(key)
            if rec["kind"] == "committed":
                raise InvalidArgument(f"snapshot {key} is committed: mount a view or an active snapshot of it")
            return self._mounts(rec)

    def commit(self, name: str, key: str, labels: dict[str, str]) -> None:
        if not name:
            raise InvalidArgument("a name is required to commit")
        with self._lock:
            rec = self._get(key)
            if rec["kind"] != "active":
                raise Conflict(f"snapshot {key} is {rec['kind']}, only an active snapshot can be committed")
            if name in self._snaps:
                raise AlreadyExists(f"snapshot {name} already exists")
            d = self._dir(rec)
            size, inodes = disk_usage(d / "fs")
            shutil.rmtree(d / "work", ignore_errors=True)
            new = dict(rec, kind="committed", labels=dict(labels), updated=_now(), size=size, inodes=inodes)
            del self._snaps[key]
            self._snaps[name] = new
            self._save()

    def remove(self, key: str) -> None:
        with self._lock:
            rec = self._get(key)
            if any(r["parent"] == key for r in self._snaps.values()):
                raise Conflict(f"cannot remove snapshot {key}: it has children")
            if rec.get("remote") and self.lazy is not None:
                try:
                    self.lazy.unmount(self._dir(rec) / "fs")
                except OSError as e:
                    raise Conflict(f"cannot remove snapshot {key}: {e.strerror or e}") from None
            del self._snaps[key]
            self._save()
            shutil.rmtree(self._dir(rec), ignore_errors=True)

    def stat(self, key: str) -> SnapshotInfo:
        with self._lock:
            return self._info(key, self._get(key))

    def update(self, name: str, labels: dict[str, str], paths: Sequence[str]) -> SnapshotInfo:
        with self._lock:
            rec = self._get(name)
            new_labels = dict(rec["labels"])
            if not paths or "labels" in paths:
                new_labels = dict(labels)
            for p in paths:
                if p == "labels":
                    continue
                if not p.startswith("labels."):
                    raise InvalidArgument(f"cannot update {p!r} of snapshot {name}: only labels can change")
                k = p.removeprefix("labels.")
                if labels.get(k):
                    new_labels[k] = labels[k]
                else:
                    new_labels.pop(k, None)
            rec["labels"] = new_labels
            rec["updated"] = _now()
            self._save()
            return self._info(name, rec)

    def usage(self, key: str) -> tuple[int, int]:
        with self._lock:
            rec = self._get(key)
            if rec["kind"] == "committed" and "size" in rec:
                return int(rec["size"]), int(rec["inodes"])
            d = self._dir(rec) / "fs"
        return disk_usage(d)

    def walk(self, filters: Sequence[str]) -> Iterable[SnapshotInfo]:
        parsed = [_Filter(f) for f in filters if f.strip()]
        with self._lock:
            infos = [self._info(k, r) for k, r in self._snaps.items()]
        return [i for i in infos if not parsed or any(f.match(i) for f in parsed)]

    def cleanup(self) -> None:
        """Delete snapshot directories no record names (left by a crash between the two steps of a change)."""
        with self._lock:
            known = {str(r["id"]) for r in self._snaps.values()} | self._mounting
            for d in (self.root / "snapshots").iterdir():
                if d.name.isdigit():  # ids of dirs allocated but never recorded are not handed out again
                    self._meta["next_id"] = max(self._meta["next_id"], int(d.name) + 1)
                if d.name not in known:
                    try:
                        self._drop_dir(d)
                    except OSError as e:
                        log.warning("leftover %s stays: %s", d, e)
