"""upperdiff: a layer tar from an overlay upper directory and its lower layers (plain directories here; a
whiteout is a 0/0 character device and an opaque directory carries trusted.overlay.opaque, as overlayfs
makes them). Needs root for mknod and trusted xattrs, as ctk-build does."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from ctk_build import upperdiff
from ctk_shared.containerd import Mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need mknod")


def _tar(upper: Path, *lowers: Path) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    upperdiff.write_tar(upperdiff.UpperSource(str(upper), tuple(map(str, lowers))), buf)
    raw = buf.getvalue()
    assert raw.endswith(b"\0" * 1024) and len(raw) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return {m.name.rstrip("/"): m for m in tf}


def _file(p: Path, text: str, mtime: float | None = None) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    if mtime is not None:
        os.utime(p, (mtime, mtime))


def _whiteout(p: Path) -> None:
    os.mknod(p, 0o600 | 0o020000, os.makedev(0, 0))


def test_whiteouts_opaque_dirs_and_new_files(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _file(lower / "etc/gone", "x")
    _file(lower / "d/old", "x")
    _file(upper / "etc/new", "n")
    _whiteout(upper / "etc/gone")
    (upper / "d").mkdir()
    os.setxattr(upper / "d", "trusted.overlay.opaque", b"y")
    _file(upper / "d/fresh", "f")
    got = _tar(upper, lower)
    assert list(got) == ["d", "d/.wh..wh..opq", "d/fresh", "etc", "etc/.wh.gone", "etc/new"]
    assert got["etc/new"].uname == "" and got["etc/new"].mtime == int(got["etc/new"].mtime)


def test_copied_up_but_unchanged_is_left_out_like_containerds_walk(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        _file(root / "var/same", "same", mtime=1_700_000_000)  # whole seconds: content decides
        _file(root / "var/frac", "frac", mtime=1_700_000_000.5)  # a fraction kept exactly: the time decides
        os.utime(root / "var", (1_700_000_000, 1_700_000_000))
    _file(lower / "var/edited", "old", mtime=1_700_000_000)
    _file(upper / "var/edited", "new", mtime=1_700_000_000)  # same size and time, other content
    assert list(_tar(upper, lower)) == ["var", "var/edited"]
    (upper / "var/edited").write_text("old")
    os.utime(upper / "var/edited", (1_700_000_000, 1_700_000_000))
    assert _tar(upper, lower) == {}  # only copied up: an empty layer, as containerd's


def test_a_copied_up_file_with_a_new_link_keeps_the_link(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _file(lower / "f", "x", mtime=1_700_000_000)
    _file(upper / "f", "x", mtime=1_700_000_000)
    os.link(upper / "f", upper / "g")
    got = _tar(upper, lower)
    assert got["f"].isreg() and got["g"].islnk() and got["g"].linkname == "f"


def test_a_lower_opaque_dir_or_whiteout_hides_the_layers_below(tmp_path: Path) -> None:
    top, bottom, upper = tmp_path / "top", tmp_path / "bottom", tmp_path / "upper"
    _file(bottom / "d/f", "x", mtime=1_700_000_000)
    (top / "d").mkdir(parents=True)
    os.setxattr(top / "d", "trusted.overlay.opaque", b"y")
    _file(upper / "d/f", "x", mtime=1_700_000_000)  # same as bottom's, but top hid it: new in this layer
    os.utime(upper / "d", (os.stat(top / "d").st_mtime,) * 2)
    assert "d/f" in _tar(upper, top, bottom)


def test_an_epoch_clamps_every_time(tmp_path: Path) -> None:
    _file(tmp_path / "u/a", "a")
    buf = io.BytesIO()
    upperdiff.write_tar(upperdiff.UpperSource(str(tmp_path / "u"), overlay=False), buf, epoch=1000)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        assert [m.mtime for m in tf] == [1000]


def test_only_layouts_that_hold_exactly_the_change_are_used(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    ov = [f"workdir={tmp_path}/w", f"upperdir={up}", f"lowerdir={tmp_path}/a:{tmp_path}/b", "index=off"]
    src = upperdiff.upper_source([Mount("overlay", "overlay", options=tuple(ov))], "sha256:p")
    assert src is not None and src.lowers == (f"{tmp_path}/a", f"{tmp_path}/b") and src.overlay
    assert upperdiff.upper_source([Mount("overlay", "overlay", options=(*ov, "redirect_dir=on"))], "sha256:p") is None
    assert upperdiff.upper_source([Mount("bind", str(up), options=("rbind", "rw"))], "sha256:p") is None  # native: a copy
    assert upperdiff.upper_source([Mount("bind", str(up), options=("rbind", "rw"))], "") == \
        upperdiff.UpperSource(str(up), overlay=False)  # no parent: the directory is the layer


def test_capability_xattr_and_hostile_names(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12  # VFS_CAP_REVISION_2, cap_net_bind_service
    _file(upper / "bin/ping", "elf")
    os.setxattr(upper / "bin/ping", "security.capability", cap)
    os.setxattr(upper / "bin/ping", "trusted.other", b"x")  # not layer content, as for containerd
    odd = "a\nb \\ c" + "x" * 200
    _file(upper / odd, "odd")
    os.symlink("/etc/shadow", upper / "link")  # written as a link, never followed
    got = _tar(upper)
    assert got["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == cap
    assert not [k for k in got["bin/ping"].pax_headers if "trusted" in k]
    assert got[odd].size == 3 and got["link"].issym() and got["link"].linkname == "/etc/shadow"
