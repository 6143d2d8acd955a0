"""Confined writes: the resolver (openat2 and the O_NOFOLLOW walk) and ADD's unpacking, on plain directories.

Each hostile case keeps a host sentinel tree beside the root, points the archive's links at it, and checks
that not one byte, mode or owner of it changed. Runs as root (chown, mknod, security.* xattrs).
"""
from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest
from ctk_build import copier, rootfs, untar
from ctk_build.dockerignore import IgnoreMatcher
from ctk_build.sources import SourceTree
from ctk_shared import confined
from ctk_shared.errors import InvalidArgument

from tests.support.trees import tree_hash

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, security xattrs)")


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Every test runs on both lookups: openat2(RESOLVE_IN_ROOT), and the walk used without it."""
    if request.param == "walk":
        monkeypatch.setattr(confined, "_have_openat2", False)  # the resolver lives in ctk_shared now
    return request.param


@pytest.fixture
def host(tmp_path):
    """(root, sentinel): an image root and a host tree that its links will point at."""
    root = tmp_path / "root"
    sentinel = tmp_path / "sentinel"
    (root / "etc").mkdir(parents=True)
    (sentinel / "dir").mkdir(parents=True)
    (sentinel / "file").write_text("host file\n")
    os.chmod(sentinel / "file", 0o600)
    os.chmod(sentinel / "dir", 0o700)
    return root, sentinel


def tar_of(members) -> bytes:
    """An uncompressed tar; a member is (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kw, data in members:
            info = tarfile.TarInfo(kw.pop("name"))
            for k, v in kw.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack(tmp_path, root, members, dest="/"):
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_of(members))
    with rootfs.Root(str(root)) as r, rootfs.Root(fd=r.open_dir(dest, create=True)) as d:
        untar.extract(str(archive), d)


# -- the resolver ---------------------------------------------------------------------------------
def test_links_and_dotdot_resolve_inside_the_root(host, resolver):
    root, sentinel = host
    (root / "usr/share/zoneinfo").mkdir(parents=True)
    os.symlink(str(sentinel), root / "abs")  # absolute: the root's own <sentinel path>, not the host's
    os.symlink("../../../../../../../usr/share", root / "etc/rel")
    with rootfs.Root(str(root)) as r:
        fd = r.open_dir("/etc/rel/zoneinfo")
        assert r.path_of(fd) == "/usr/share/zoneinfo"
        os.close(fd)
        fd = r.open_dir("../../etc/../usr")
        assert r.path_of(fd) == "/usr"
        os.close(fd)
        with pytest.raises(FileNotFoundError):
            r.open_dir("/abs")
        fd = r.open_dir("/abs/dir/new", create=True)
        assert r.path_of(fd) == f"{sentinel}/dir/new"
        os.close(fd)
        with pytest.raises(OSError):
            r.open_dir("/etc/rel", follow=False)
        (root / "etc/file").write_text("")
        with pytest.raises(NotADirectoryError):
            r.open_dir("/etc/file/x", create=True)
    assert (root / sentinel.relative_to("/") / "dir/new").is_dir()
    assert sorted(os.listdir(sentinel / "dir")) == []


def test_symlink_loop_is_an_error(host, resolver):
    root, _ = host
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    with rootfs.Root(str(root)) as r, pytest.raises(OSError):
        r.open_dir("/a/x", create=True)


# -- hostile archives -----------------------------------------------------------------------------
@needs_root
@pytest.mark.parametrize("case", ["abs-file", "abs-dir", "rel-file", "parent-link", "hardlink", "device",
                                  "dotdot"])
def test_hostile_archives_stay_inside(tmp_path, host, resolver, case):
    root, sentinel = host
    before = tree_hash(sentinel)
    up = "../" * 12 + str(sentinel).lstrip("/")
    members = {
        "abs-file": [({"name": "lnk", "type": tarfile.SYMTYPE, "linkname": f"{sentinel}/file"}, None),
                     ({"name": "lnk", "mode": 0o666}, b"pwned\n")],
        "abs-dir": [({"name": "lnk", "type": tarfile.SYMTYPE, "linkname": f"{sentinel}/dir"}, None),
                    ({"name": "lnk", "type": tarfile.DIRTYPE, "mode": 0o777}, None),
                    ({"name": "lnk/in", "mode": 0o644}, b"x")],
        "rel-file": [({"name": "etc/lnk", "type": tarfile.SYMTYPE, "linkname": f"{up}/file"}, None),
                     ({"name": "etc/lnk", "mode": 0o666}, b"pwned\n")],
        "parent-link": [({"name": "lnk", "type": tarfile.SYMTYPE, "linkname": f"{up}/dir"}, None),
                        ({"name": "lnk/evil", "mode": 0o644}, b"pwned\n")],
        "hardlink": [({"name": "data", "mode": 0o644}, b"pwned\n"),
                     ({"name": "lnk", "type": tarfile.SYMTYPE, "linkname": f"{sentinel}/file"}, None),
                     ({"name": "lnk", "type": tarfile.LNKTYPE, "linkname": "data"}, None)],
        "device": [({"name": "lnk", "type": tarfile.SYMTYPE, "linkname": f"{sentinel}/dir"}, None),
                   ({"name": "lnk/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3,
                     "mode": 0o666}, None),
                   ({"name": "lnk2", "type": tarfile.SYMTYPE, "linkname": f"{sentinel}/file"}, None),
                   ({"name": "lnk2", "type": tarfile.FIFOTYPE, "mode": 0o644}, None)],
        "dotdot": [({"name": f"{up}/file", "mode": 0o666}, b"pwned\n")],
    }[case]
    unpack(tmp_path, root, members)
    assert tree_hash(sentinel) == before
    inside = root / str(sentinel).lstrip("/")
    if case == "abs-file":
        assert (root / "lnk").read_bytes() == b"pwned\n" and not (root / "lnk").is_symlink()
    elif case == "abs-dir":
        assert (root / "lnk").is_dir() and not (root / "lnk").is_symlink()
        assert stat.S_IMODE((root / "lnk").stat().st_mode) == 0o777
    elif case == "rel-file":
        assert (root / "etc/lnk").read_bytes() == b"pwned\n"
    elif case == "parent-link":
        assert (inside / "dir/evil").read_bytes() == b"pwned\n"  # followed inside the root
    elif case == "hardlink":
        assert (root / "lnk").stat().st_ino == (root / "data").stat().st_ino
    elif case == "device":
        assert stat.S_ISCHR((inside / "dir/null").lstat().st_mode)
        assert stat.S_ISFIFO((root / "lnk2").lstat().st_mode)
    elif case == "dotdot":
        assert (inside / "file").read_bytes() == b"pwned\n"


def test_hardlink_target_is_resolved_inside_and_must_exist(tmp_path, host, resolver):
    root, sentinel = host
    with pytest.raises(InvalidArgument, match="hard link"):
        unpack(tmp_path, root, [({"name": "h", "type": tarfile.LNKTYPE, "linkname": f"{sentinel}/file"},
                                 None)])
    os.symlink(str(sentinel), root / "out")
    before = tree_hash(sentinel)
    with pytest.raises(InvalidArgument, match="hard link"):
        unpack(tmp_path, root, [({"name": "h", "type": tarfile.LNKTYPE, "linkname": "out/file"}, None)])
    assert tree_hash(sentinel) == before and not (root / "h").exists()


def test_image_link_in_the_parent_path_is_followed_inside_the_root(tmp_path, host, resolver):
    """/etc/localtime -> /usr/share/zoneinfo/UTC: a member etc/localtime replaces the link; a member below
    a linked directory lands where the link leads in the root."""
    root, sentinel = host
    (root / "usr/share/zoneinfo").mkdir(parents=True)
    (root / "usr/share/zoneinfo/UTC").write_text("utc\n")
    os.symlink("/usr/share/zoneinfo/UTC", root / "etc/localtime")
    os.symlink("/usr/share", root / "share")
    unpack(tmp_path, root, [({"name": "etc/localtime", "mode": 0o644}, b"tz\n"),
                            ({"name": "share/new.txt", "mode": 0o644}, b"n\n")])
    assert not (root / "etc/localtime").is_symlink() and (root / "etc/localtime").read_text() == "tz\n"
    assert (root / "usr/share/zoneinfo/UTC").read_text() == "utc\n"
    assert (root / "usr/share/new.txt").read_text() == "n\n"


def test_add_into_a_subdirectory_resolves_links_inside_it(tmp_path, host, resolver):
    """As ``docker build`` (a chroot of the destination): absolute links in the archive stay in DEST."""
    root, sentinel = host
    unpack(tmp_path, root, [({"name": "l", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None),
                            ({"name": "l/passwd", "mode": 0o644}, b"p\n")], dest="/opt/x")
    assert (root / "opt/x/etc/passwd").read_text() == "p\n" and not (root / "etc/passwd").exists()


# -- fidelity -------------------------------------------------------------------------------------
@needs_root
def test_unpack_keeps_modes_owners_times_links_xattrs_and_nodes(tmp_path, host, resolver):
    root, _ = host
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    members = [
        ({"name": "usr/", "type": tarfile.DIRTYPE, "mode": 0o755, "mtime": 1_000_000}, None),
        ({"name": "usr/bin/", "type": tarfile.DIRTYPE, "mode": 0o755, "mtime": 1_000_001}, None),
        ({"name": "usr/bin/su", "mode": 0o4755, "uid": 0, "gid": 0, "mtime": 1_000_002}, b"su"),
        ({"name": "usr/bin/wall", "mode": 0o2755, "uid": 0, "gid": 5, "mtime": 1_000_003}, b"wall"),
        ({"name": "usr/bin/ping", "mode": 0o755, "mtime": 1_000_004,
          "pax_headers": {"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                          "SCHILY.xattr.user.note": "hello"}}, b"ping"),
        ({"name": "usr/bin/ping2", "type": tarfile.LNKTYPE, "linkname": "usr/bin/ping"}, None),
        ({"name": "tmp/", "type": tarfile.DIRTYPE, "mode": 0o1777, "mtime": 1_000_005}, None),
        ({"name": "home/u/", "type": tarfile.DIRTYPE, "mode": 0o750, "uid": 1000, "gid": 1000,
          "mtime": 1_000_006}, None),
        ({"name": "home/u/.profile", "mode": 0o640, "uid": 1000, "gid": 1000, "mtime": 1_000_007}, b"p"),
        ({"name": "bin", "type": tarfile.SYMTYPE, "linkname": "usr/bin", "uid": 3, "gid": 4,
          "mtime": 1_000_008}, None),
        ({"name": "dev/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3, "mode": 0o666}, None),
        ({"name": "dev/loop0", "type": tarfile.BLKTYPE, "devmajor": 7, "devminor": 0, "mode": 0o660,
          "gid": 6}, None),
        ({"name": "run/initctl", "type": tarfile.FIFOTYPE, "mode": 0o600}, None),
    ]
    unpack(tmp_path, root, members)

    def st(p):
        return os.lstat(root / p)
    assert stat.S_IMODE(st("usr/bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755 and st("usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert (st("home/u").st_uid, st("home/u/.profile").st_gid) == (1000, 1000)
    assert st("usr/bin").st_mtime == 1_000_001 and st("usr").st_mtime == 1_000_000  # dirs after contents
    assert st("home/u/.profile").st_mtime == 1_000_007
    assert os.readlink(root / "bin") == "usr/bin" and (st("bin").st_uid, st("bin").st_gid) == (3, 4)
    assert st("bin").st_mtime == 1_000_008
    assert st("usr/bin/ping2").st_ino == st("usr/bin/ping").st_ino and st("usr/bin/ping").st_nlink == 2
    assert os.getxattr(root / "usr/bin/ping", "security.capability") == cap
    assert os.getxattr(root / "usr/bin/ping", "user.note") == b"hello"
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st("dev/null").st_mode) == 0o666
    assert stat.S_ISBLK(st("dev/loop0").st_mode) and st("dev/loop0").st_gid == 6
    assert stat.S_ISFIFO(st("run/initctl").st_mode)


def test_directory_member_merges_and_file_replaces_directory(tmp_path, host, resolver):
    root, _ = host
    (root / "etc/keep").write_text("k")
    unpack(tmp_path, root, [({"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o711}, None),
                            ({"name": "etc/new", "mode": 0o644}, b"n")])
    assert (root / "etc/keep").read_text() == "k" and stat.S_IMODE((root / "etc").stat().st_mode) == 0o711
    unpack(tmp_path, root, [({"name": "etc", "mode": 0o644}, b"now a file")])
    assert (root / "etc").read_text() == "now a file"


# -- COPY -----------------------------------------------------------------------------------------
def test_copy_reincluded_file_through_an_image_link_stays_in_the_root(tmp_path, host, resolver):
    """.dockerignore ``dir/sub`` + ``!dir/sub/file``, image ``/sub -> <sentinel>/dir``: ``COPY dir/ /``."""
    root, sentinel = host
    ctx = tmp_path / "ctx"
    (ctx / "dir/sub").mkdir(parents=True)
    (ctx / "dir/sub/file").write_text("re-included\n")
    (ctx / "dir/top").write_text("top\n")
    os.symlink(f"{sentinel}/dir", root / "sub")
    before = tree_hash(sentinel)
    src = SourceTree(str(ctx), IgnoreMatcher(["dir/sub", "!dir/sub/file"]))
    copier.copy(str(root), src, src.expand("dir/"), "/", "/")
    assert tree_hash(sentinel) == before
    assert (root / str(sentinel).lstrip("/") / "dir/file").read_text() == "re-included\n"
    assert (root / "sub").is_symlink() and (root / "top").read_text() == "top\n"


def test_copy_file_over_an_image_link_replaces_it(tmp_path, host, resolver):
    root, sentinel = host
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d/passwd").write_text("mine\n")
    os.symlink(f"{sentinel}/file", root / "etc/passwd")
    before = tree_hash(sentinel)
    src = SourceTree(str(ctx))
    copier.copy(str(root), src, ["d"], "/etc/", "/")
    copier.copy(str(root), src, ["d/passwd"], "/etc/passwd2", "/", inline={})
    assert tree_hash(sentinel) == before
    assert not (root / "etc/passwd").is_symlink() and (root / "etc/passwd").read_text() == "mine\n"


def test_remove_if_empty_never_follows_a_link(tmp_path, host, resolver):
    """RUN replaced /etc with a link to a host directory: the empty mount points runc made are not
    looked for there."""
    root, sentinel = host
    (sentinel / "dir/hosts").write_text("")
    (root / "etc").rmdir()
    os.symlink(f"{sentinel}/dir", root / "etc")
    (root / "proc").mkdir()
    (root / "dev").mkdir()
    (root / "dev/keep").write_text("")
    before = tree_hash(sentinel)
    for rel in ("etc/hosts", "proc", "dev", "etc"):
        rootfs.remove_if_empty(str(root), rel)
    assert tree_hash(sentinel) == before and (sentinel / "dir/hosts").exists()
    assert not (root / "proc").exists() and (root / "dev/keep").exists() and (root / "etc").is_symlink()


def test_many_directories_and_hard_links_across_them(tmp_path, host, resolver, monkeypatch):
    """More directories than descriptors kept open: hard links between far-apart directories still land
    where they belong (a descriptor is never dropped while a member uses it)."""
    root, _ = host
    monkeypatch.setattr(untar, "_MAX_OPEN_DIRS", 4)
    members = []
    for i in range(12):
        members.append(({"name": f"d{i}/f", "mode": 0o644}, f"{i}\n".encode()))
    for i in range(12):
        members.append(({"name": f"d{i}/h", "type": tarfile.LNKTYPE, "linkname": f"d{11 - i}/f"}, None))
    unpack(tmp_path, root, members)
    for i in range(12):
        assert (root / f"d{i}/h").read_text() == f"{11 - i}\n"
        assert (root / f"d{i}/h").stat().st_ino == (root / f"d{11 - i}/f").stat().st_ino
