"""Copy-up: fill a new, empty volume with what the image holds at the mount target, as Docker does.

The image's tree is read from a read-only view of its snapshot, mounted in a private mount namespace of a
child process (``unshare --mount``), so a mount can never outlive a killed ctk-run. The child copies the
directory at the target (resolved inside the image root, symbolic links included, never outside it) into a
fresh temp directory beside the volume's ``_data`` with ``ctk-run cp``'s tree copier (:class:`.cptree.TreeCopy`:
owners, modes, times, extended attributes, symbolic links, hard links and special files kept, no-follow,
directory-relative writes only). Then, with a
marker file written first and removed last, it moves the top-level entries into ``_data`` (each rename is
atomic; ``_data`` keeps its inode, so a container that already mounts it sees the data) and gives ``_data``
the owner, mode and xattrs of the image's directory.

A copy cut short (SIGKILL) leaves either the temp directory (``_data`` untouched: it stays empty and the next
use copies again) or the marker (``_data`` possibly half filled: :func:`recover` empties it). The caller holds
the volume lock, so no other copy-up of the same volume runs meanwhile.

Run as ``python -m ctk_run.copyup REQUEST_JSON`` by :func:`copy_up`; the parent never mounts anything.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctk_shared.containerd import Mount

PENDING = "copyup.pending"  # in the volume directory: a move into _data has begun and not ended
TEMP_PREFIX = ".copyup-"  # temp trees and mount points in the volume directory
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# ------------------------------------------------------------------------------------------------ parent side


def recover(vol_dir: str) -> None:
    """Undo what a copy-up killed midway left in ``vol_dir`` (caller holds the volume lock)."""
    data = os.path.join(vol_dir, "_data")
    if os.path.lexists(os.path.join(vol_dir, PENDING)):
        _empty_dir(data)  # it was empty before the move began
        os.unlink(os.path.join(vol_dir, PENDING))
    for name in os.listdir(vol_dir):
        if name.startswith(TEMP_PREFIX):
            p = os.path.join(vol_dir, name)
            try:
                os.rmdir(p)  # an empty mount point
            except OSError:
                shutil.rmtree(p, ignore_errors=True)


def _empty_dir(path: str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        for name in os.listdir(fd):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)  # fd-based on Linux: never follows a link
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def copy_up(image_mounts: Sequence[Mount], target: str, vol_dir: str, lock_fd: int | None = None) -> bool:
    """Copy the image's content at ``target`` into the empty ``vol_dir/_data``; True when the image had a
    directory there. Raises CtkError with the child's one-line reason on failure (``_data`` is then empty).

    ``lock_fd`` (the volume lock's descriptor) is inherited by the child: if ctk-run is killed alone, the
    child goes on to its end holding the lock, so no other ctk-run recovers or copies under it meanwhile."""
    import subprocess

    from ctk_shared.errors import CtkError

    unshare = shutil.which("unshare")
    if not unshare:
        raise CtkError("copying the image's content into a volume needs unshare(1)", hint="apt-get install util-linux")
    request = json.dumps({"mounts": [{"type": m.type, "source": m.source, "options": list(m.options)}
                                     for m in image_mounts], "target": target, "vol_dir": vol_dir})
    p = subprocess.run([unshare, "--mount", "--propagation", "private", sys.executable, "-m", "ctk_run.copyup",
                        request], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                       pass_fds=() if lock_fd is None else (lock_fd,))
    if p.returncode not in (0, 3):
        reason = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise CtkError(f"copying the image's content at {target} into the volume: {reason}")
    return p.returncode == 0


# ------------------------------------------------------------------------------------------------- child side


def _mount(m: dict[str, Any], where: str) -> None:
    import subprocess

    opts = [o for o in m["options"] if o not in ("rw",)]
    if m["type"] == "bind":
        cmd = ["mount", "-o", ",".join(sorted(set(opts + ["ro", "rbind"]))), m["source"], where]
    else:
        cmd = ["mount", "-t", m["type"], "-o", ",".join(opts + ["ro"]), m["source"], where]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise OSError(f"mounting the image read-only: {p.stderr.strip()}")


def resolve_in_root(root_fd: int, target: str) -> int | None:
    """An O_PATH-free walk of ``target`` inside the tree at ``root_fd``: symbolic links are resolved as the
    container would see them (relative to that root, never above it). The directory's fd, or None when the
    image has no directory there."""
    parts = [p for p in target.split("/") if p]
    stack = [os.dup(root_fd)]
    hops = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                return None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    return None
                link = os.readlink(name, dir_fd=stack[-1])
                if link.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in link.split("/") if p] + parts
                continue
            if not stat.S_ISDIR(st.st_mode):
                return None
            stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
        return os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def copy_tree(src: int, dst: int) -> None:
    """What directory ``src`` holds into the empty directory ``dst``, as the image has it (owners kept), with
    ``ctk-run cp``'s copier."""
    from .cptree import TreeCopy

    TreeCopy(dst, owner=None, replace=False).contents(src, dst, [])


def child(request: dict[str, Any]) -> int:
    """Mount, copy, move in; 0 = copied, 3 = nothing at the target in the image."""
    from ctk_shared.outputs import rename_owned

    from .cptree import set_meta, xattrs_of

    vol_dir = request["vol_dir"]
    tag = os.urandom(6).hex()
    mnt = os.path.join(vol_dir, f"{TEMP_PREFIX}src-{tag}")
    tmp = os.path.join(vol_dir, f"{TEMP_PREFIX}tree-{tag}")
    os.mkdir(mnt, 0o700)
    os.mkdir(tmp, 0o700)
    try:
        for m in request["mounts"]:
            _mount(m, mnt)
        root = os.open(mnt, _DIR_FLAGS)
        try:
            src = resolve_in_root(root, request["target"])
        finally:
            os.close(root)
        if src is None:
            return 3
        try:
            src_st = os.fstat(src)
            src_x = xattrs_of(src)
            t = os.open(tmp, _DIR_FLAGS)
            try:
                copy_tree(src, t)
                names = os.listdir(t)
                data = os.open(os.path.join(vol_dir, "_data"), _DIR_FLAGS)
                try:
                    if os.listdir(data):
                        return 0  # filled meanwhile by a container: never overwrite data
                    marker = os.open(os.path.join(vol_dir, PENDING),
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                    os.close(marker)
                    for name in names:
                        rename_owned(name, name, src_dir_fd=t, dst_dir_fd=data)
                    set_meta(data, src_st, None, src_x)
                finally:
                    os.close(data)
            finally:
                os.close(t)
        finally:
            os.close(src)
        os.unlink(os.path.join(vol_dir, PENDING))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        # the mount dies with this process's private namespace; unmount first so the directory can go now
        import subprocess

        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
        try:
            os.rmdir(mnt)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    try:
        return child(json.loads(argv[0]))
    except OSError as e:
        sys.stderr.write(f"{e.strerror or e}{': ' + e.filename if getattr(e, 'filename', None) else ''}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
