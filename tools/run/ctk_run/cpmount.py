"""The child side of ``ctk-run cp`` with a stopped container: its files put together as its process would see
them, in a private mount namespace, then the same copy as for a running one.

Run by :func:`ctk_run.cp._copy_stopped` as ``unshare --mount --propagation private python -m ctk_run.cpmount
REQUEST_JSON``: the container's snapshot is mounted read-write on an empty temp directory (made read-only
after the binds when the container's root is), then its binds from the stored spec — named and anonymous volumes, ``-v``/``--mount``
binds and ctk's generated ``/etc/hosts``, ``resolv.conf`` and ``hostname`` — each onto its target resolved
inside that root (a link in the image cannot place a mount outside it), read-only where the spec says ``ro``.
Kernel filesystems (proc, sysfs, devpts, mqueue, cgroup) and tmpfs mounts are left out: a stopped container has
no content in them, as with Docker. All the mounts die with this process's namespace; they are also unmounted
before it exits so the temp directory can be removed.

The result is one JSON line on stderr: ``{"copied": N}`` or ``{"error": …, "hint": …, "kind": …}``.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any

_KERNEL_TYPES = frozenset({"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "tmpfs", "devtmpfs"})


def binds_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's bind mounts whose source exists on the host: ``{"source", "target", "ro"}`` in spec order."""
    out = []
    for m in spec.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        options = [o for o in m.get("options") or [] if isinstance(o, str)]
        kind = m.get("type") or ""
        if kind in _KERNEL_TYPES or not (kind == "bind" or "bind" in options or "rbind" in options):
            continue
        source, target = m.get("source"), m.get("destination")
        if not isinstance(source, str) or not isinstance(target, str) or not os.path.exists(source):
            continue
        out.append({"source": source, "target": target, "ro": "ro" in options,
                    "recursive": "rbind" in options})
    return out


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 2, 4, 8, 32, 4096, 16384
_FLAGS = {"ro": _MS_RDONLY, "rw": 0, "nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC}
_MNT_DETACH = 2


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2) itself: a ``/proc/self/fd/N`` target is this process's descriptor, never a path re-resolved
    by mount(8)."""
    import ctypes

    rc = _libc().mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting {source}: {os.strerror(err)}", None)


def _mount_rootfs(mounts: list[dict[str, Any]], where: str) -> None:
    """The snapshot's mounts (one overlay, or one bind for the native snapshotter) on ``where``."""
    for m in mounts:
        flags = 0
        data = []
        for o in m["options"]:
            if o in _FLAGS:
                flags |= _FLAGS[o]
            elif o not in ("bind", "rbind"):
                data.append(o)
        if m["type"] == "bind" or "bind" in m["options"] or "rbind" in m["options"]:
            _mount(m["source"], where, None, _MS_BIND | _MS_REC)
            if flags & _MS_RDONLY:
                _mount("none", where, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        else:
            _mount(m["source"], where, m["type"], flags, ",".join(data) or None)


def _mount_binds(root_dir: str, binds: list[dict[str, Any]]) -> None:
    from ctk_shared.confined import Root, lstat_at

    with Root(root_dir) as root:
        for b in binds:
            parts = [p for p in b["target"].split("/") if p and p != "."]
            if not parts or ".." in parts:
                continue
            is_dir = os.path.isdir(b["source"])
            pfd = root.open_dir("/".join(parts[:-1]), create=True)
            try:
                name = parts[-1]
                st = lstat_at(pfd, name)
                if st is None:  # a container never started: make the mount point as runc would
                    if is_dir:
                        os.mkdir(name, 0o755, dir_fd=pfd)
                    else:
                        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                                         dir_fd=pfd))
                    st = lstat_at(pfd, name)
                assert st is not None
                if stat.S_ISDIR(st.st_mode) != is_dir or stat.S_ISLNK(st.st_mode):
                    continue  # the image has something else there: runc would fail too; leave it unmounted
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            finally:
                os.close(pfd)
            try:
                at = f"/proc/self/fd/{fd}"  # exactly that entry, never a path the image could redirect
                _mount(b["source"], at, None, _MS_BIND | (_MS_REC if b["recursive"] else 0))
            finally:
                os.close(fd)
            if b["ro"]:
                pfd = root.open_dir("/".join(parts[:-1]))
                try:
                    fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                finally:
                    os.close(pfd)
                try:
                    _mount("none", f"/proc/self/fd/{fd}", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
                finally:
                    os.close(fd)


def child(request: dict[str, Any]) -> int:
    from .cp import CopyRequest, transfer

    mnt = request["mountpoint"]
    try:
        _mount_rootfs(request["rootfs"], mnt)
        _mount_binds(mnt, request["binds"])  # mount points are made first, as runc makes them
        if request.get("readonly"):  # then the root alone turns read-only (its binds keep their own mode)
            _mount("none", mnt, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        return transfer(mnt, CopyRequest(**request["request"]))
    finally:
        _libc().umount2(mnt.encode(), _MNT_DETACH)  # the whole tree; the namespace would drop it anyway
        try:
            os.rmdir(mnt)  # here too: should ctk-run be killed meanwhile, this child still ends the copy
        except OSError:
            pass


def main(argv: list[str]) -> int:
    from ctk_shared.errors import CtkError

    try:
        copied = child(json.loads(argv[0]))
    except CtkError as e:
        sys.stderr.write(json.dumps({"error": e.message, "hint": e.hint, "kind": type(e).__name__}) + "\n")
        return 1
    except OSError as e:
        msg = f"{e.strerror or e}{': ' + str(e.filename) if getattr(e, 'filename', None) else ''}"
        sys.stderr.write(json.dumps({"error": msg, "kind": "OSError"}) + "\n")
        return 1
    sys.stdout.flush()
    sys.stderr.write(json.dumps({"copied": copied}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
