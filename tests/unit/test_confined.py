"""ctk_shared.confined's Root.lookup: links and `..` resolved as inside a chroot, on both resolvers (openat2 and
the O_NOFOLLOW walk), with a host tree beside the root that no lookup may reach."""
from __future__ import annotations

import os
import stat

import pytest
from ctk_shared import confined


@pytest.fixture(params=["openat2", "walk"])
def root(request, monkeypatch, tmp_path):
    if request.param == "walk":
        monkeypatch.setattr(confined, "_have_openat2", False)
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "passwd").write_text("host\n")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("container\n")
    os.symlink(str(host), r / "abs")  # an absolute link naming a host path
    os.symlink("../../../../../../" + str(host).lstrip("/"), r / "climb")
    os.symlink("/etc/passwd", r / "pw")
    os.symlink("loop", r / "loop")
    return r


def _read(pfd, name):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd)
        with os.fdopen(fd) as f:
            return f.read()
    finally:
        os.close(pfd)


@pytest.mark.parametrize("path", ["/abs/etc/passwd", "climb/etc/passwd", "/../../etc/../../abs/etc/passwd"])
def test_links_that_name_host_paths_stay_inside(root, path):
    with confined.Root(str(root)) as r, pytest.raises(FileNotFoundError):
        r.lookup(path, follow_last=False)  # the root has no such directory: never the host's


def test_dotdot_stops_at_the_root_and_the_last_link_is_followed_on_request(root):
    with confined.Root(str(root)) as r:
        pfd, name, st = r.lookup("/../../../etc/passwd", follow_last=False)
        assert name == "passwd" and _read(pfd, name) == "container\n"
        pfd, name, st = r.lookup("pw", follow_last=False)
        assert name == "pw" and st is not None and stat.S_ISLNK(st.st_mode)
        os.close(pfd)
        pfd, name, st = r.lookup("pw", follow_last=True)
        assert name == "passwd" and _read(pfd, name) == "container\n"
        pfd, name, st = r.lookup("/etc/..", follow_last=True)
        assert name is None and st is not None and stat.S_ISDIR(st.st_mode)
        os.close(pfd)
        pfd, name, st = r.lookup("/etc/missing", follow_last=True)
        assert name == "missing" and st is None
        os.close(pfd)
        with pytest.raises(OSError):
            r.lookup("loop", follow_last=True)
