"""ctk_shared.snapshotfs: a file read from a snapshot's layer directories is the one the merged image shows,
found through links resolved inside the image (never on the host), regular, and no bigger than its cap."""
from __future__ import annotations

import os
import stat

import pytest
from ctk_shared.errors import InvalidArgument
from ctk_shared.limits import DocumentTooLarge
from ctk_shared.snapshotfs import exists_layered, read_layered


@pytest.fixture
def layers(tmp_path):
    """(upper, lower, host): two layers with /etc, and a host directory holding a "passwd" of its own."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("HOST\n")
    up, lo = tmp_path / "up", tmp_path / "lo"
    for d in (up, lo):
        (d / "etc").mkdir(parents=True)
    (lo / "etc/passwd").write_text("lower\n")
    return up, lo, host


def dirs(up, lo):
    return [str(up), str(lo)]


def test_top_layer_wins_and_a_whiteout_deletes(layers):
    up, lo, _ = layers
    assert read_layered(dirs(up, lo), "etc/passwd") == "lower\n"
    (up / "etc/passwd").write_text("upper\n")
    assert read_layered(dirs(up, lo), "/etc/passwd") == "upper\n"
    (up / "etc/passwd").unlink()
    os.mknod(up / "etc/passwd", stat.S_IFCHR | 0o600, 0)
    assert read_layered(dirs(up, lo), "etc/passwd") is None and not exists_layered(dirs(up, lo), "etc/passwd")


def test_opaque_directory_hides_lower_layers(layers):
    up, lo, _ = layers
    os.setxattr(up / "etc", "trusted.overlay.opaque", b"y")
    assert read_layered(dirs(up, lo), "etc/passwd") is None


@pytest.mark.parametrize("where", ["file-absolute", "file-relative", "dir-absolute", "dir-relative"])
def test_links_resolve_inside_the_image(layers, where):
    """A link to the host's file (or directory) reads the image's copy at that path, or nothing."""
    up, lo, host = layers
    kind, how = where.split("-")
    target = str(host / "passwd") if kind == "file" else str(host)
    if how == "relative":
        target = "../" * 20 + target.lstrip("/")
    if kind == "file":
        os.symlink(target, up / "etc/passwd")
    else:
        os.rmdir(up / "etc")
        os.symlink(target, up / "etc")
    assert read_layered(dirs(up, lo), "etc/passwd") is None  # dangling inside the image
    inimage = lo / str(host).lstrip("/")
    inimage.mkdir(parents=True)
    (inimage / "passwd").write_text("image\n")
    assert read_layered(dirs(up, lo), "etc/passwd") == "image\n"


def test_a_fifo_or_a_directory_is_refused_and_a_link_loop_ends(layers):
    up, lo, _ = layers
    os.mkfifo(up / "etc/passwd")
    with pytest.raises(InvalidArgument, match="is a FIFO, not a regular file"):
        read_layered(dirs(up, lo), "etc/passwd")
    os.unlink(up / "etc/passwd")
    (up / "etc/passwd").mkdir()
    with pytest.raises(InvalidArgument, match="is a directory"):
        read_layered(dirs(up, lo), "etc/passwd")
    os.rmdir(up / "etc/passwd")
    os.symlink("passwd", up / "etc/passwd")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        read_layered(dirs(up, lo), "etc/passwd")


def test_size_cap(layers):
    up, lo, _ = layers
    (up / "etc/passwd").write_bytes(b"a" * 101)
    assert len(read_layered(dirs(up, lo), "etc/passwd", cap=101) or "") == 101
    with pytest.raises(DocumentTooLarge, match="over the 100 bytes cap"):
        read_layered(dirs(up, lo), "etc/passwd", cap=100)


def test_exists_does_not_follow_the_last_link(layers):
    up, lo, host = layers
    os.symlink(str(host / "hosts"), up / "etc/hosts")
    assert exists_layered(dirs(up, lo), "etc/hosts")
    assert not exists_layered(dirs(up, lo), "etc/resolv.conf")
    os.unlink(up / "etc/hosts")
    os.rmdir(up / "etc")
    os.symlink(str(host), up / "etc")  # /etc -> <host>: nothing there inside the image
    assert not exists_layered(dirs(up, lo), "etc/passwd") and exists_layered(dirs(up, lo), "etc")
