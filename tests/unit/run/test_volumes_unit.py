"""Issue 15, pure parts: volume names, the no-replace rename, in-image path resolution, copy and recovery."""
from __future__ import annotations

import os

import pytest
from ctk_run import copyup
from ctk_run.mounts import parse_mount, parse_volume
from ctk_shared.errors import UsageError
from ctk_shared.outputs import rename_owned


@pytest.mark.parametrize("name", ["_x", "-x", "a", "a b", "a/b", "ä1", "x" * 256])
def test_invalid_volume_names(name):
    with pytest.raises(UsageError):
        parse_volume(f"{name}:/data")
    with pytest.raises(UsageError):
        parse_mount(f"type=volume,src={name},dst=/data")


def test_a_300_character_name_says_too_long():
    with pytest.raises(UsageError, match="too long"):
        parse_volume("v" * 300 + ":/data")
    assert parse_volume("v" * 255 + ":/data").source == "v" * 255


def test_rename_owned_never_replaces(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_owned(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b" and (tmp_path / "a").exists()
    os.symlink("/nonexistent", tmp_path / "l")
    with pytest.raises(FileExistsError):
        rename_owned(tmp_path / "a", tmp_path / "l")
    rename_owned(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


def test_resolve_in_root_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "real" / "dir").mkdir(parents=True)
    (root / "real" / "dir" / "f").write_text("x")
    os.symlink("/real", root / "abs")  # absolute: relative to the image root, not the host's /
    os.symlink("../../../../../../..", root / "real" / "up")  # climbs above the root: stops at it
    os.symlink(str(tmp_path), root / "host")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def names(path):
            d = copyup.resolve_in_root(fd, path)
            if d is None:
                return None
            try:
                return sorted(os.listdir(d))
            finally:
                os.close(d)

        assert names("/abs/dir") == ["f"]
        assert names("/real/up/real/dir") == ["f"]
        assert names("/host") is None  # tmp_path's name does not exist inside the root
        assert names("/real/dir/f") is None  # not a directory
    finally:
        os.close(fd)


def test_copy_keeps_links_modes_and_owners(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    (src / "f").write_text("hi")
    os.link(src / "f", src / "sub" / "hard")
    os.symlink("/etc/passwd", src / "link")  # copied as a link, never followed
    os.mkfifo(src / "fifo")
    os.chmod(src / "fifo", 0o620)
    os.chown(src / "f", 1234, 5678)
    os.chmod(src / "f", 0o4751)  # after chown, which clears setuid
    os.setxattr(src / "f", "user.k", b"v")
    s = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    d = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copyup.copy_tree(s, d)
    finally:
        os.close(s)
        os.close(d)
    st = os.stat(dst / "f")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4751, 1234, 5678)
    assert os.getxattr(dst / "f", "user.k") == b"v"
    assert st.st_ino == os.stat(dst / "sub" / "hard").st_ino
    assert os.readlink(dst / "link") == "/etc/passwd"
    assert os.stat(dst / "fifo").st_mode & 0o777 == 0o620


def test_recover_empties_a_half_moved_volume(tmp_path):
    (tmp_path / "_data" / "d").mkdir(parents=True)
    (tmp_path / "_data" / "x").write_text("half")
    (tmp_path / copyup.PENDING).write_text("")
    (tmp_path / ".copyup-tree-1").mkdir()
    copyup.recover(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["_data"] and os.listdir(tmp_path / "_data") == []
    (tmp_path / "_data" / "kept").write_text("data")  # no marker: data is the user's, never touched
    copyup.recover(str(tmp_path))
    assert os.listdir(tmp_path / "_data") == ["kept"]
