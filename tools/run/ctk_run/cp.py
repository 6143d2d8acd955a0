"""``ctk-run cp``: files between a container and the host, with Docker's path rules, running or stopped.

Where the container's files are: a container with a live process is read and written through
``/proc/PID/root`` (its root as the process sees it, volumes and binds included). A stopped or never started
container has no such view; :mod:`ctk_run.cpmount` mounts its snapshot and its volumes and binds in a private
mount namespace of a child process (nothing outlives the child, even a SIGKILL of ctk-run) and runs the same
copy there.

Docker's rules (``docker cp`` reference), all applied by :func:`transfer`:

* SRC a file: DEST missing → a file created at DEST (DEST ending in ``/`` → error: the directory must exist);
  DEST a file → overwritten; DEST a directory → copied into it under SRC's name.
* SRC a directory: DEST missing → created, with SRC's contents; DEST a file → error (cannot copy a directory
  to a file); DEST a directory → SRC copied into it, or only its contents when SRC ends in ``/.``.
* ``-`` as SRC: a tar on stdin unpacked into the directory DEST; ``-`` as DEST: a tar of SRC on stdout.
* A link as the last component of SRC is copied as a link, or followed with ``-L``; a link as DEST is followed.

Paths inside the container are resolved as the container sees them (:mod:`ctk_shared.confined`: absolute links
and ``..`` stay inside its root), and every write is a ``*at`` call on a descriptor, so neither a link in the
container nor one in the copied tree can lead a write out of the destination.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ctk_shared.confined import O_DIR, Root, path_parts
from ctk_shared.errors import NotFound, UsageError

from .cptree import CopyError, TreeCopy, tar_in, tar_out

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container

    from .options import CpOptions

@dataclass(frozen=True)
class CopyRequest:
    """One copy, as the child of a stopped container's copy receives it (JSON)."""

    into: bool  # host → container
    container_path: str  # as the user wrote it (trailing "/" and "/." matter)
    local_path: str  # "-" for a tar on stdin/stdout, else the host path as written
    archive: bool  # -a: keep uid/gid
    follow_link: bool  # -L
    container: str  # the container as named, for messages


def split_arg(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` → (container, path); a local path → (None, arg). As Docker: an absolute path, or one
    whose part before the colon starts with ``.``, is local (``./a:b``, ``/x:y``)."""
    if arg.startswith("/"):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or not name or name.startswith("."):
        return None, arg
    return name, path


def parse(src: str, dst: str, archive: bool, follow_link: bool) -> CopyRequest:
    s_name, s_path = split_arg(src)
    d_name, d_path = split_arg(dst)
    if s_name and d_name:
        raise UsageError("copying between containers is not supported",
                         hint="copy to the host first, then into the other container")
    if not s_name and not d_name:
        raise UsageError("must specify at least one container source",
                         hint="write the container's side as CONTAINER:PATH")
    if s_name:
        if not s_path:
            raise UsageError(f"no path after '{s_name}:'", hint=f"e.g. {s_name}:/etc/hostname")
        return CopyRequest(False, s_path, d_path, archive, follow_link, s_name)
    assert d_name is not None
    if not d_path:
        raise UsageError(f"no path after '{d_name}:'", hint=f"e.g. {d_name}:/tmp/")
    if d_path == "-":
        raise UsageError("'-' stands for a tar on stdin or stdout, not for a path in a container")
    return CopyRequest(True, d_path, s_path, archive, follow_link, d_name)


@dataclass(frozen=True)
class Copied:
    """What ``cp`` copied: the bytes of file data, and where to (None for a tar on stdout)."""

    nbytes: int
    dest: str | None

    def summary(self) -> str:
        """Docker's ``Successfully copied`` line, which the cli prints on a terminal."""
        return f"Successfully copied {_human(self.nbytes)} to {self.dest}\n"


def copy(client: Client, gopts: GlobalOptions, opts: CpOptions) -> Copied:
    """The ``cp`` command: find the container, then copy through its live root or its mounted snapshot. A ``-``
    side is the stream the cli handed over in ``opts`` (its stdin or stdout), never read here from ``sys``."""
    from .lookup import find_container

    req = parse(opts.src, opts.dst, opts.archive, opts.follow_link)
    stream = opts.stdin if req.into else opts.stdout
    if req.local_path == "-" and stream is None:
        raise UsageError("cp with '-': no stream was handed over for the tar")
    if not req.into and req.local_path != "-":
        _check_local_parent(req.local_path)
    c = find_container(client, req.container)
    pid = _live_pid(client, c.id)
    if pid is not None:
        copied = transfer(f"/proc/{pid}/root", req, kernel_devices(pid), opts.stdin, opts.stdout)
    else:
        copied = _copy_stopped(client, gopts, c, req, opts)
    if req.into:
        return Copied(copied, req.container + ":" + req.container_path)
    return Copied(copied, None if req.local_path == "-" else req.local_path)


def _human(n: float) -> str:
    """Docker's size in the summary line (decimal units: 1.2kB, 3.4MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"


def _live_pid(client: Client, cid: str) -> int | None:
    """The PID whose /proc/PID/root is the container's root, or None when no process holds it."""
    from .lifecycle import task_of

    t = task_of(client, cid)
    if t is None or t.status not in ("running", "paused", "pausing", "created") or t.pid <= 0:
        return None
    if not os.path.isdir(f"/proc/{t.pid}/root/"):
        return None
    return int(t.pid)


_KERNEL_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "debugfs",
                        "tracefs", "bpf", "pstore", "configfs", "fusectl", "binfmt_misc"})


def kernel_devices(pid: int) -> frozenset[int]:
    """The devices of a running container's kernel filesystems (/proc, /sys, cgroups, devpts) and of its /dev:
    a copy out of the container does not enter them (Docker cannot copy them either; /proc/kcore alone claims
    terabytes). From /proc/PID/mountinfo: field 3 is the mount's device, the field after `-` its type."""
    devs = set()
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                if right.split()[0] in _KERNEL_FS or fields[4] == "/dev":
                    major, _, minor = fields[2].partition(":")
                    devs.add(os.makedev(int(major), int(minor)))
    except (OSError, ValueError):
        pass
    return frozenset(devs)


def _check_local_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path.rstrip("/") or "/")) or "/"
    if not os.path.isdir(parent):
        raise CopyError(f"no such directory: {parent} (where {path} would go)")


# ------------------------------------------------------------------------------------------- stopped ones


def _copy_stopped(client: Client, gopts: GlobalOptions, c: Container, req: CopyRequest, opts: CpOptions) -> int:
    """Copy through the container's snapshot and volumes, mounted by a child in a private mount namespace; the
    child's stdin/stdout are the streams ``opts`` hands over (a ``-`` side), else inherited."""
    import json
    import shutil
    import subprocess
    import tempfile

    from .cpmount import binds_of

    unshare = shutil.which("unshare")
    if not unshare:
        raise CopyError("copying with a stopped container needs unshare(1)", hint="apt-get install util-linux")
    spec = json.loads(c.spec or b"{}")
    rootfs = client.snapshots(c.snapshotter or gopts.snapshotter).mounts(c.snapshot_key or c.id)
    mnt = tempfile.mkdtemp(prefix="ctk-cp-")
    request = {"request": asdict(req), "mountpoint": mnt,
               "rootfs": [{"type": m.type, "source": m.source, "options": list(m.options)} for m in rootfs],
               "readonly": bool((spec.get("root") or {}).get("readonly")), "binds": binds_of(spec)}
    try:
        p = subprocess.run([unshare, "--mount", "--propagation", "private", sys.executable, "-m", "ctk_run.cpmount",
                            json.dumps(request)], stdin=opts.stdin, stdout=opts.stdout, stderr=subprocess.PIPE,
                           check=False)
    finally:
        try:
            os.rmdir(mnt)
        except OSError:
            pass
    return _child_result(p.returncode, p.stderr.decode(errors="replace"))


def _child_result(code: int, err: str) -> int:
    import json

    last = (err.strip().splitlines() or [""])[-1]
    try:
        rec: dict[str, Any] = json.loads(last) if last.startswith("{") else {}
    except json.JSONDecodeError:
        rec = {}
    if code == 0 and "copied" in rec:
        return int(rec["copied"])
    if "error" in rec:
        cls = {"NotFound": NotFound, "UsageError": UsageError}.get(rec.get("kind", ""), CopyError)
        raise cls(rec["error"], hint=rec.get("hint"))
    raise CopyError(f"copying with the stopped container failed: {last or f'exit status {code}'}")


# ---------------------------------------------------------------------------------------------- the copy


def transfer(root_dir: str, req: CopyRequest, skip_devs: frozenset[int] = frozenset(),
             stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> int:
    """Do ``req`` with the container's root at host path ``root_dir``; returns the bytes of file data copied.
    Directories on a device in ``skip_devs`` are copied out without their contents. A ``-`` side uses
    ``stdin``/``stdout``; without them the process's own (the :mod:`.cpmount` child, whose streams are the
    ones ``copy`` handed over)."""
    try:
        with Root(root_dir) as root:
            if not req.into:
                return _copy_out(root, req, skip_devs, stdout or sys.stdout.buffer)
            return _copy_in(root, req, stdin or sys.stdin.buffer)
    except OSError as e:
        raise CopyError(_os_message(e, req)) from e


def _os_message(e: OSError, req: CopyRequest) -> str:
    where = f"{req.container}:{req.container_path}" if req.into else req.local_path
    if e.errno == errno.EROFS:
        return f"{where}: read-only file system (the container's root is read-only, or a :ro mount)"
    if e.errno == errno.ENOSPC:
        return f"no space left on device while copying to {where}"
    if e.errno == errno.ELOOP:
        return f"{req.container}:{req.container_path}: too many levels of symbolic links"
    return f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}"


def _contents_only(path: str) -> bool:
    return path == "." or path.endswith("/.")


def _wants_dir(path: str) -> bool:
    return path.endswith("/") or _contents_only(path)


def _base(path: str) -> str:
    parts = path_parts(path)
    return parts[-1] if parts else "/"


def _owner(req: CopyRequest) -> tuple[int, int] | None:
    if req.archive:
        return None
    return (0, 0) if req.into else (os.geteuid(), os.getegid())


def _not_found(req: CopyRequest) -> NotFound:
    return NotFound(f"Could not find the file {req.container_path} in container {req.container}")


def _copy_out(root: Root, req: CopyRequest, skip_devs: frozenset[int], tar_dest: BinaryIO) -> int:
    cpath = req.container_path
    try:
        pfd, name, st = root.lookup(cpath, follow_last=req.follow_link or _wants_dir(cpath))
    except (FileNotFoundError, NotADirectoryError) as e:
        raise _not_found(req) from e
    try:
        if st is None:
            raise _not_found(req)
        is_dir = stat.S_ISDIR(st.st_mode)
        if _wants_dir(cpath) and not is_dir:
            raise CopyError(f"{req.container}:{cpath}: not a directory")
        if req.local_path == "-":
            arc = "." if _contents_only(cpath) and is_dir else _base(cpath)
            tar_out(pfd, name, st, arc, tar_dest, skip_devs)
            tar_dest.flush()
            return 0
        return _write_local(pfd, name, st, req, skip_devs)
    finally:
        os.close(pfd)


def _write_local(pfd: int, name: str | None, st: os.stat_result, req: CopyRequest,
                 skip_devs: frozenset[int]) -> int:
    """Docker's destination rules on the host side; the host path itself is the user's (links followed)."""
    dest = req.local_path
    src_dir = stat.S_ISDIR(st.st_mode)
    exists = os.path.exists(dest)
    if exists and os.path.isdir(dest):
        top = os.open(dest, O_DIR)
        try:
            copier = TreeCopy(top, _owner(req), replace=True, where=dest, skip_devs=skip_devs)
            _into_dir(copier, pfd, name, st, top, req.container_path)
            return copier.copied
        finally:
            os.close(top)
    if exists or os.path.lexists(dest):
        if dest.endswith("/"):
            raise CopyError(f"{dest}: not a directory")
        if src_dir:
            raise CopyError(f"cannot copy a directory to a file: {dest} exists and is not a directory")
        dest = os.path.realpath(dest) if exists else dest
    elif not src_dir and _wants_dir(dest):
        raise CopyError(f"the destination directory must exist to copy a file into it: {dest}")
    parent, base = os.path.split(os.path.abspath(dest.rstrip("/") or "/"))
    top = os.open(parent or "/", O_DIR)
    try:
        copier = TreeCopy(top, _owner(req), replace=True, where=parent, skip_devs=skip_devs)
        _to_name(copier, pfd, name, st, top, base)
        return copier.copied
    finally:
        os.close(top)


def _into_dir(copier: TreeCopy, pfd: int, name: str | None, st: os.stat_result, top: int, spath: str) -> None:
    """SRC into the existing directory ``top``: under SRC's name, or its contents for ``SRC/.``."""
    if stat.S_ISDIR(st.st_mode) and (_contents_only(spath) or name is None and _base(spath) == "/"):
        src = _open_dir(pfd, name)
        try:
            copier.contents(src, top, [])
            return
        finally:
            os.close(src)
    _to_name(copier, pfd, name, st, top, _base(spath))


def _to_name(copier: TreeCopy, pfd: int, name: str | None, st: os.stat_result, dst_dir: int, dst_name: str) -> None:
    if name is None:
        src = os.dup(pfd)
        try:
            copier.dir_into(src, st, dst_dir, dst_name, [dst_name])
        finally:
            os.close(src)
        return
    copier.entry(pfd, name, st, dst_dir, dst_name, [dst_name])


def _open_dir(pfd: int, name: str | None) -> int:
    return os.dup(pfd) if name is None else os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=pfd)


def _copy_in(root: Root, req: CopyRequest, tar_src: BinaryIO) -> int:
    cpath = req.container_path
    where = f"{req.container}:{cpath}"
    try:
        pfd, name, st = root.lookup(cpath, follow_last=True)  # Docker follows a link at the destination
    except FileNotFoundError as e:
        parent = "/" + "/".join(path_parts(cpath)[:-1])
        raise NotFound(f"Could not find the file {parent} in container {req.container}",
                       hint=f"the directory that {cpath} would go into must exist") from e
    except NotADirectoryError as e:
        raise CopyError(f"{where}: a non-directory is in the way") from e
    try:
        if req.local_path == "-":
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise CopyError(f"destination {where} must be an existing directory (a tar on stdin is "
                                 "unpacked into a directory)")
            d = _open_dir(pfd, name)
            try:
                return tar_in(tar_src, d, _owner(req), cpath)
            finally:
                os.close(d)
        return _read_local(pfd, name, st, req, where)
    finally:
        os.close(pfd)


def _read_local(pfd: int, name: str | None, st: os.stat_result | None, req: CopyRequest, where: str) -> int:
    """The host side as SRC: its path is the user's; its last link is copied as a link unless -L."""
    src = req.local_path
    path = os.path.realpath(src) if req.follow_link else os.path.abspath(src)
    if src.endswith("/") or _contents_only(src):
        path = os.path.realpath(src)  # SRC/ and SRC/. name the directory a link points at
    try:
        sst = os.lstat(path)
    except FileNotFoundError as e:
        raise NotFound(f"no such file or directory: {src}") from e
    src_dir = stat.S_ISDIR(sst.st_mode)
    if _wants_dir(src) and not src_dir:
        raise CopyError(f"{src}: not a directory")
    sparent, sname = os.path.split(path)
    spfd = os.open(sparent or "/", O_DIR)
    try:
        if st is not None and stat.S_ISDIR(st.st_mode):
            top = _open_dir(pfd, name)
            try:
                copier = TreeCopy(top, _owner(req), replace=False, where=req.container_path)
                if src_dir and (_contents_only(src) or sname == ""):
                    s = os.open(path, O_DIR)
                    try:
                        copier.contents(s, top, [])
                    finally:
                        os.close(s)
                else:
                    base = _base(src)
                    copier.entry(spfd, sname, sst, top, base, [base])
                return copier.copied
            finally:
                os.close(top)
        assert name is not None  # only the root or a path ending in '..' has no name, and both are directories
        if st is not None:
            if _wants_dir(req.container_path):
                raise CopyError(f"{where}: not a directory")
            if src_dir:
                raise CopyError(f"cannot copy a directory to a file: {where} exists and is not a directory")
        elif not src_dir and _wants_dir(req.container_path):
            raise CopyError(f"the destination directory must exist to copy a file into it: {where}")
        copier = TreeCopy(pfd, _owner(req), replace=False, where=req.container_path)
        if st is not None:  # a file onto a file: replaced
            os.unlink(name, dir_fd=pfd)
        copier.entry(spfd, sname, sst, pfd, name, [name])
        return copier.copied
    finally:
        os.close(spfd)
