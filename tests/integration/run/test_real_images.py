"""Real Debian images (scripts/images, the ``real_images`` fixture) end to end: the unpacked tree is the root
filesystem mmdebstrap made, nginx behaves as the article's walkthrough needs, and redis and postgres run as
their own users, keep their data and are reached by name on a user network.

Unpack fidelity compares what a container sees with the source root filesystem tar (the maker's cached
tar, read with ``tarfile``): path, type, permission bits with setuid/setgid/sticky, numeric owner, size,
content digest, mtime of non-directories, symlink target, hardlink groups and extended attributes. The tree
is read *inside* the container by GNU tar (in Debian's minbase) with ``--xattrs``, written to a bind-mounted
host directory (ctk-run's plain foreground output goes through the json-file logger, which is for text).
Two paths are checked: the image as ctk-build made it (its own extraction of ``ADD rootfs.tar /``, in the
namespace it was built in), and the image pushed to the registry and pulled by ctk-pull into a fresh
namespace (containerd's unpack).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import secrets
import stat
import struct
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from ctk_shared import oci

from tests.support.cli import remove_containers, run_tool, tool_runner
from tests.support.containerd_fixtures import fresh_namespace
from tests.support.polling import wait_for
from tests.support.real_image_fixtures import REAL_IMAGES_NAMESPACE

from .test_network import free_port
from .test_real_nginx import get

pytestmark = pytest.mark.integration

# What a container runtime legitimately puts over the image's tree, so never compared: the kernel's
# filesystems and /dev (mounted by runc; GNU tar's --one-file-system keeps their contents out, and the mount
# points' own metadata belong to the mounts), the files ctk-run bind-mounts per container, and /out, where
# the listing itself is written (a bind mount of a host directory).
RUNTIME_PATHS = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/out")


@dataclass(frozen=True)
class Node:
    kind: str  # f d l c b p
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    digest: str  # sha256 of a regular file's content
    mtime: int  # seconds; compared for non-directories only (a runtime's mount points touch directories)
    target: str  # symlink target
    xattrs: tuple[tuple[str, bytes], ...]


def _kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "f"
    return {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b",
            tarfile.FIFOTYPE: "p"}[m.type]


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name)


def _skipped(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RUNTIME_PATHS)


def read_tree(fileobj: io.BufferedIOBase) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """Every member of a tar stream as a Node, and the hardlink groups (paths sharing one inode)."""
    nodes: dict[str, Node] = {}
    links: dict[str, str] = {}  # hardlink member -> the path it links to
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for m in tar:
            path = _norm(m.name)
            if _skipped(path):
                continue
            if m.islnk():
                links[path] = _norm(m.linkname)
                continue
            digest = ""
            if m.isreg():
                h = hashlib.sha256()
                f = tar.extractfile(m)
                assert f is not None
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                digest = h.hexdigest()
            # tarfile gives PAX values as str, decoded with surrogateescape: encoding back gives the bytes
            xattrs = tuple(sorted((k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape"))
                                  for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")))
            # Linux has no symlink permissions (always 0777): a tar's mode for a link means nothing
            mode = 0o777 if m.issym() else stat.S_IMODE(m.mode)
            nodes[path] = Node(_kind(m), mode, m.uid, m.gid, m.size if m.isreg() else 0, digest,
                               int(m.mtime) if not m.isdir() else 0, m.linkname if m.issym() else "", xattrs)
    groups: dict[str, set[str]] = {}
    for path, first in links.items():
        assert first in nodes, f"hard link {path} -> {first}: no such file in the archive"
        nodes[path] = nodes[first]
        groups.setdefault(first, {first}).add(path)
    return nodes, {frozenset(g) for g in groups.values()}


def tree_of_tar(path: Path) -> tuple[dict[str, Node], set[frozenset[str]]]:
    with open(path, "rb") as f:
        return read_tree(f)


def diff_trees(want: dict[str, Node], got: dict[str, Node], limit: int = 15) -> list[str]:
    """Human-readable differences, at most ``limit`` of them (the first ones in path order)."""
    out: list[str] = []
    for path in sorted(set(want) | set(got)):
        w, g = want.get(path), got.get(path)
        if w == g:
            continue
        if w is None:
            out.append(f"{path}: not in the image, but in the container")
        elif g is None:
            out.append(f"{path}: missing in the container")
        else:
            fields = [f"{k}: {getattr(w, k)!r} -> {getattr(g, k)!r}" for k in Node.__dataclass_fields__
                      if getattr(w, k) != getattr(g, k)]
            out.append(f"{path}: " + "; ".join(fields))
        if len(out) >= limit:
            out.append("...")
            break
    return out


def container_tree(run, image: str, out_dir: Path) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """The tree a container of ``image`` sees, read inside it by GNU tar (numeric owners, xattrs, one
    file system), written to ``out_dir`` through a bind mount."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = ("tar -C / --one-file-system --numeric-owner --format=posix --xattrs --xattrs-include='*' "
              "--exclude=./out --exclude=./proc --exclude=./sys --exclude=./dev -cf /out/tree.tar .")
    r = run("--rm", "-q", "--network", "none", "-u", "0", "-v", f"{out_dir}:/out", "--entrypoint", "sh", image,
            "-c", script)
    assert r.code == 0, f"tar inside the container failed ({r.code}): {r.err}"
    try:
        return tree_of_tar(out_dir / "tree.tar")
    finally:
        (out_dir / "tree.tar").unlink()


def assert_same_tree(reference: tuple[dict[str, Node], set[frozenset[str]]],
                     seen: tuple[dict[str, Node], set[frozenset[str]]], what: str) -> None:
    (want, want_links), (got, got_links) = reference, seen
    problems = diff_trees(want, got)
    assert not problems, f"{what}: the container's tree differs from the image's:\n" + "\n".join(problems)
    assert got_links == want_links, f"{what}: hardlink groups differ: {got_links ^ want_links}"


def rootfs_reference(name: str) -> tuple[dict[str, Node], set[frozenset[str]]]:
    from scripts.images.make import rootfs_tar

    nodes, groups = tree_of_tar(rootfs_tar(name))
    return {p: n for p, n in nodes.items() if not _skipped(p)}, groups


def image_reference(name: str) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """The root filesystem plus what the image's Dockerfile adds after ``ADD rootfs.tar /``."""
    nodes, groups = rootfs_reference(name)
    if name == "postgres":
        from scripts.images.recipes import RECIPES

        text = RECIPES["postgres"].files["docker-entrypoint.sh"].encode()
        entry = "/usr/local/bin/docker-entrypoint.sh"
        # COPY --chmod=755: root-owned, the context file's mtime (compared separately: set to what we see)
        nodes[entry] = Node("f", 0o755, 0, 0, len(text), hashlib.sha256(text).hexdigest(), -1, "", ())
        postgres = nodes["/var/lib/postgresql"]
        nodes["/run/postgresql"] = Node("d", 0o2775, postgres.uid, postgres.gid, 0, "", 0, "", ())
    return nodes, groups


def _copy_mtime(ref: tuple[dict[str, Node], set[frozenset[str]]], seen: dict[str, Node]) -> None:
    """Entries whose mtime the reference cannot know (-1: a build context file) take the one seen."""
    for path, node in ref[0].items():
        if node.mtime == -1 and path in seen:
            ref[0][path] = replace(node, mtime=seen[path].mtime)


@contextmanager
def namespace_runner(containerd, nodeid: str, data_root: Path) -> Iterator:
    """ctk-run in a fresh namespace of the session's containerd (removed afterwards)."""
    with fresh_namespace(containerd.address, nodeid) as client:
        go = tool_runner("ctk-run", address=containerd.address, namespace=client.namespace, data_root=data_root)
        try:
            yield go
        finally:
            remove_containers(go)


def built_snapshots(containerd) -> set[str]:
    """Committed snapshots of the namespace the real images were built in."""
    from ctk_shared.containerd import Client

    client = Client(containerd.address, REAL_IMAGES_NAMESPACE)
    try:
        return {i.name for i in client.snapshots("overlayfs").list() if i.kind == "committed"}
    finally:
        client.close()


def check_fidelity(containerd, real_images, name: str, nodeid: str, tmp_path: Path) -> None:
    image = real_images[name]
    reference = image_reference(name)
    # 1. the image as built: ctk-build's own extraction, its committed snapshot reused by ctk-run as is
    cfg = json.loads(run_tool("ctk-pull", "inspect", image.ref, address=containerd.address,
                              namespace=REAL_IMAGES_NAMESPACE).out)[0]
    assert cfg["Digest"] == image.digest
    top = oci.chain_ids(cfg["RootFS"]["diff_ids"])[-1]
    committed = built_snapshots(containerd)
    assert top in committed, "the image's top layer is not the snapshot ctk-build committed"
    built = tool_runner("ctk-run", address=containerd.address, namespace=REAL_IMAGES_NAMESPACE,
                        data_root=tmp_path / "data-built")
    seen_built = container_tree(built, image.ref, tmp_path / "built")
    assert built_snapshots(containerd) == committed, "ctk-run unpacked the image again instead of using the build's"
    _copy_mtime(reference, seen_built[0])
    assert_same_tree(reference, seen_built, f"{name} as built by ctk-build")
    # 2. pushed, then pulled by ctk-pull into a fresh namespace and unpacked by containerd there. The
    # manifest comes from the registry (its digest is the pushed one); the layer blobs are on disk already
    # (containerd shares content between namespaces, so they are not downloaded again), and every blob is
    # addressed by its digest: the bytes are the pushed ones. The new snapshots are containerd's unpack.
    with fresh_namespace(containerd.address, nodeid + "-pulled") as client:
        pull = run_tool("ctk-pull", "pull", "-q", image.ref, address=containerd.address, namespace=client.namespace)
        assert pull.code == 0, pull.err
        pulled = json.loads(run_tool("ctk-pull", "inspect", image.ref, address=containerd.address,
                                     namespace=client.namespace).out)[0]
        assert pulled["Id"] == cfg["Id"] and pulled["Digest"] == image.digest
        go = tool_runner("ctk-run", address=containerd.address, namespace=client.namespace,
                         data_root=tmp_path / "data-pulled")
        try:
            assert_same_tree(reference, container_tree(go, image.ref, tmp_path / "pulled"),
                             f"{name} pulled into a fresh namespace")
        finally:
            remove_containers(go)


@pytest.mark.parametrize("name", ["debian", "nginx", "redis", "postgres"])
def test_unpacked_tree_equals_the_root_filesystem(containerd, real_images, request, tmp_path, name):
    check_fidelity(containerd, real_images, name, request.node.nodeid, tmp_path)


def test_the_reference_trees_are_not_trivial():
    """The comparison above means something only if the trees hold what it claims to check."""
    nodes, groups = rootfs_reference("debian")
    assert len(nodes) > 3000 and groups
    assert any(n.kind == "f" and n.mode & 0o4000 for n in nodes.values())  # su, passwd, mount ...
    assert any(n.kind == "d" and n.mode & 0o1000 for n in nodes.values())  # /tmp
    assert any(n.kind == "d" and n.mode & 0o2000 for n in nodes.values())  # /var/local, /var/mail
    assert any(n.uid or n.gid for n in nodes.values())  # e.g. shadow's group, /var/mail's group mail
    assert any(n.kind == "l" and n.target.startswith("/") for n in nodes.values())
    # and the comparison sees a lost setuid bit, owner, xattr, a changed byte, a missing file, a split hardlink
    su = next(p for p, n in nodes.items() if n.kind == "f" and n.mode & 0o4000)
    for change in ({"mode": nodes[su].mode & ~0o4000}, {"gid": 4242}, {"xattrs": (("user.x", b"1"),)},
                   {"digest": "0" * 64}):
        assert diff_trees(nodes, {**nodes, su: replace(nodes[su], **change)}) == [
            f"{su}: " + "; ".join(f"{k}: {getattr(nodes[su], k)!r} -> {v!r}" for k, v in change.items())]
    assert diff_trees(nodes, {p: n for p, n in nodes.items() if p != su}) == [f"{su}: missing in the container"]
    group = next(iter(groups))
    with pytest.raises(AssertionError, match="hardlink groups differ"):
        assert_same_tree((nodes, groups), (nodes, groups - {group}), "split")


# VFS_CAP_REVISION_2 with CAP_NET_RAW (bit 13) permitted and effective: what `setcap cap_net_raw=ep` writes
NET_RAW_CAP = struct.pack("<IIIII", 0x02000000 | 1, 1 << 13, 0, 0, 0)


def caps_tar(cat: bytes) -> bytes:
    """A small layer with what the Debian trees lack: a file capability (PAX ``SCHILY.xattr``), a
    user xattr, a FIFO and a few more special bits and owners."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind="f", mode=0o644, data=b"", uid=0, gid=0, link="", xattrs=None):
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 1_700_000_000
            info.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
                         "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE}[kind]
            info.linkname = link
            if xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                    for k, v in xattrs.items()}
            info.size = len(data) if kind == "f" else 0
            t.addfile(info, io.BytesIO(data) if kind == "f" else None)

        add("opt/caps/", "d", 0o755)
        add("opt/caps/cat", mode=0o755, data=cat, xattrs={"security.capability": NET_RAW_CAP})
        add("opt/caps/noted", data=b"noted\n", xattrs={"user.ctk.note": b"kept \x00\xff bytes"})
        add("opt/caps/suid", mode=0o4750, data=b"#!/bin/sh\n", gid=50)
        add("opt/caps/shared/", "d", 0o2775, uid=1234, gid=50)
        add("opt/caps/drop/", "d", 0o1733)
        add("opt/caps/owned", mode=0o640, data=b"mine\n", uid=1234, gid=5678)
        add("opt/caps/one", data=b"one inode\n", uid=7, gid=7)
        add("opt/caps/two", "h", link="opt/caps/one")
        add("opt/caps/shared/three", "h", link="opt/caps/one")
        add("opt/caps/fifo", "p", 0o620)
        add("opt/caps/up", "l", link="../caps/suid")
    return buf.getvalue()


def test_capabilities_xattrs_and_special_files_survive(containerd, ctd, registry, real_images, request, tmp_path):
    """No file of the Debian trees carries an xattr, so a derived image adds them (with a FIFO, a three-name
    hardlink group, setuid/setgid/sticky and foreign owners) through ctk-build's ``ADD`` of a small tar; the
    tree must be the same as built, and pulled into a fresh namespace."""
    from scripts.images.make import rootfs_tar

    base = real_images["debian"]
    with tarfile.open(rootfs_tar("debian")) as t:
        cat = t.extractfile("./usr/bin/cat").read()
    layer = caps_tar(cat)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "caps.tar").write_bytes(layer)
    (ctx / "Dockerfile").write_text(f"FROM {base.ref}\nADD caps.tar /\n")
    ref = f"{registry.host}/real/caps:{secrets.token_hex(4)}"
    b = run_tool("ctk-build", "-q", "-t", ref, "--push", str(ctx), address=containerd.address,
                 namespace=ctd.namespace, env={"CTK_DATA_ROOT": str(tmp_path / "data-build")})
    assert b.code == 0, b.err

    nodes, groups = rootfs_reference("debian")
    extra, extra_groups = read_tree(io.BytesIO(layer))
    nodes.update(extra)
    reference = (nodes, groups | extra_groups)
    assert nodes["/opt/caps/cat"].xattrs == (("security.capability", NET_RAW_CAP),)

    built = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace,
                        data_root=tmp_path / "data-built")
    try:
        assert_same_tree(reference, container_tree(built, ref, tmp_path / "built"), "derived image as built")
        # the capability works: an unprivileged user running the capped cat has CAP_NET_RAW permitted
        r = built("--rm", "-q", "--network", "none", "-u", "65534", ref, "/opt/caps/cat", "/proc/self/status")
        assert r.code == 0, r.err
        assert "CapPrm:\t0000000000002000" in r.out.splitlines(), r.out
    finally:
        remove_containers(built)
    # The layer ctk-build pushes is containerd's diff of the snapshot, and containerd's archive writer (like
    # Docker's) records security.capability and no other xattr: the user.* attribute stays in the builder's
    # snapshot only. What others pull keeps the capability.
    nodes["/opt/caps/noted"] = replace(nodes["/opt/caps/noted"], xattrs=())
    with namespace_runner(containerd, request.node.nodeid + "-pulled", tmp_path / "data-pulled") as pulled:
        assert pulled("--rm", "-q", "--pull", "always", "--network", "none", ref, "true").code == 0
        assert_same_tree(reference, container_tree(pulled, ref, tmp_path / "pulled"), "derived image pulled")
        r = pulled("--rm", "-q", "--network", "none", "-u", "65534", ref, "/opt/caps/cat", "/proc/self/status")
        assert "CapPrm:\t0000000000002000" in r.out.splitlines(), r.out + r.err


# -- nginx --------------------------------------------------------------------------------------------------
def inspect(run, name: str) -> dict:
    return json.loads(run("inspect", name).out)[0]


def test_nginx_stop_uses_its_stopsignal_and_is_prompt(run, real_images):
    """The image says STOPSIGNAL SIGQUIT (nginx's graceful shutdown): ``stop`` sends it, nginx exits 0 well
    before the 10 s kill timeout. nginx logs the signal it got at level notice, so the command asks for that
    level on stderr (SIGTERM would also stop nginx quickly, with exit 0: only the log tells them apart)."""
    port = free_port()
    r = run("-d", "-q", "-p", f"{port}:80", "--name", "web", real_images["nginx"].ref,
            "nginx", "-g", "daemon off; error_log stderr notice;")
    assert r.code == 0, r.err
    assert get(port, "ctk-stop")[0] == 200
    assert inspect(run, "web")["Config"]["StopSignal"] == "SIGQUIT"
    t0 = time.monotonic()
    s = run("stop", "web")
    took = time.monotonic() - t0
    assert s.code == 0 and s.lines == ["web"], s.err
    assert took < 5, f"stop took {took:.1f} s (nginx did not get or honour SIGQUIT: killed at the timeout?)"
    state = inspect(run, "web")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0, state
    err = run("logs", "web").err
    assert "signal 3 (SIGQUIT) received" in err and "gracefully shutting down" in err, err


def test_nginx_restart_always_comes_back_after_containerd_restart(containerd, run, real_images):
    """nginx dies while containerd is down (as on a crash of the node's runtime); when containerd is back,
    the restart policy starts it again and it answers on its published port."""
    port = free_port()
    r = run("-d", "-q", "-p", f"{port}:80", "--restart=always", "--name", "web", real_images["nginx"].ref)
    assert r.code == 0, r.err
    assert get(port, "ctk-before")[0] == 200
    pid = inspect(run, "web")["State"]["Pid"]
    assert pid > 0
    containerd._terminate()  # the daemon only (its shims live on, as in production); start() brings it back
    try:
        os.kill(pid, 9)
    finally:
        containerd.start()
    assert wait_for(lambda: inspect(run, "web")["State"]["Pid"] not in (0, pid), timeout=30), inspect(run, "web")
    status, headers, body = get(port, "ctk-after", timeout=30)
    assert status == 200 and "Welcome to nginx!" in body
    state = inspect(run, "web")["State"]
    assert state["Status"] == "running", state


# -- redis and postgres -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    user: str
    ping: tuple[str, ...]  # the client's command that succeeds once the server answers
    write: tuple[str, ...]  # client commands that store a value (output ignored), then one that reads it back
    read: tuple[str, ...]
    data: str  # a file the server writes in its data directory (owned by its user)


PSQL = ("psql", "-h", "db", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc")
SERVERS = {
    "redis": Server("redis", ("redis-cli", "-h", "db", "ping"),
                    ("redis-cli", "-h", "db", "set", "greeting", "{value}"),
                    ("redis-cli", "-h", "db", "get", "greeting"), "/var/lib/redis/dump.rdb"),
    "postgres": Server("postgres", (*PSQL, "select 1"),
                       (*PSQL, "create table if not exists t (v text); delete from t; insert into t values ('{value}')"),
                       (*PSQL, "select v from t"), "/var/lib/postgresql/data/PG_VERSION"),
}


@contextmanager
def user_network(run, tmp_path: Path) -> Iterator[str]:
    net = f"real{secrets.token_hex(3)}"
    subnet = f"10.199.{int.from_bytes(os.urandom(1), 'big')}.0/24"
    r = run("create", "--subnet", subnet, net, tool="ctk-net")
    assert r.code == 0, r.err
    try:
        yield net
    finally:
        remove_containers(run)
        run("rm", net, tool="ctk-net")


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_server_runs_as_its_user_and_keeps_its_data(containerd, run, real_images, tmp_path, name):
    """A server container ``db`` on a user network; a client container of the same image reaches it by
    name, writes a value, and reads it back after stop/start of the server and after a containerd restart.
    The data lives in the container's own filesystem (no -v: the image's VOLUME is another issue)."""
    srv, image = SERVERS[name], real_images[name].ref
    with user_network(run, tmp_path) as net:
        def client(args: tuple[str, ...], value: str = "", timeout: float = 0) -> str:
            argv = [a.replace("{value}", value) for a in args]
            end = time.monotonic() + timeout
            while True:
                r = run("--rm", "-q", "--network", net, image, *argv)
                if r.code == 0 or time.monotonic() > end:
                    break
                time.sleep(0.5)
            assert r.code == 0, f"{' '.join(argv)}: exit {r.code}: {r.err}"
            return r.out.strip()

        assert run("-d", "-q", "--network", net, "--name", "db", image).code == 0
        client(srv.ping, timeout=60)  # up (postgres initialises its cluster on first start)
        who = run("exec", "db", "sh", "-c", "id -un; stat -c %U /proc/1")
        assert who.code == 0 and who.out.split() == [srv.user, srv.user], (who.out, who.err)

        client(srv.write, "first")
        assert client(srv.read) == "first"
        t0 = time.monotonic()
        stop = run("stop", "db")
        assert stop.code == 0, stop.err
        assert time.monotonic() - t0 < 8, "the server did not stop on its stop signal"
        state = inspect(run, "db")["State"]
        assert state["ExitCode"] == 0, state  # a clean shutdown: redis saves, postgres checkpoints
        assert run("start", "db").code == 0
        assert client(srv.read, timeout=60) == "first"
        owner = run("exec", "db", "stat", "-c", "%U", srv.data)
        assert owner.out.strip() == srv.user, (owner.out, owner.err)

        client(srv.write, "second")
        containerd.restart()
        assert client(srv.read, timeout=30) == "second"
        assert run("exec", "db", "id", "-un").out.strip() == srv.user
