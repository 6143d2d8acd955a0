"""Pure pieces of the executor: cache keys, source checksums, COPY semantics on plain directories, the RUN
step spec, EXPOSE/HEALTHCHECK parsing, image config and history wording."""
from __future__ import annotations

import os

import pytest
from ctk_build import copier
from ctk_build.cache import chain_key
from ctk_build.dockerfile import parse
from ctk_build.dockerignore import IgnoreMatcher
from ctk_build.imagestate import ImageState, rfc3339
from ctk_build.sources import DigestCache, SourceTree
from ctk_build.stage import _duration_ns, _port_specs
from ctk_build.stepspec import StepProcess, build_step_spec
from ctk_shared.errors import InvalidArgument, NotFound


def test_chain_key_is_stable_and_order_sensitive():
    a = chain_key("p", "run", ["sh", "-c", "x"], {"b": 1, "a": 2})
    assert a == chain_key("p", "run", ["sh", "-c", "x"], {"a": 2, "b": 1})  # dict order does not matter
    assert a != chain_key("q", "run", ["sh", "-c", "x"], {"a": 2, "b": 1})
    assert a != chain_key("p", "run", ["sh", "x", "-c"], {"a": 2, "b": 1})


@pytest.fixture
def ctx(tmp_path):
    root = tmp_path / "ctx"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("a")
    (root / "d" / "sub" / "b.txt").write_text("b")
    (root / "top.txt").write_text("t")
    (root / "x.log").write_text("l")
    (root / "link").symlink_to("d/a.txt")
    (root / "escape").symlink_to("/etc/passwd")
    return root


def test_checksum_ignores_mtime_but_not_content_or_mode(ctx):
    tree = SourceTree(str(ctx))
    first = tree.checksum(["d"])
    os.utime(ctx / "d" / "a.txt", (1, 1))
    assert tree.checksum(["d"]) == first
    (ctx / "d" / "a.txt").chmod(0o600)
    second = tree.checksum(["d"])
    assert second != first
    (ctx / "d" / "a.txt").write_text("A")
    assert tree.checksum(["d"]) != second


def test_expand_globs_ignore_and_escapes(ctx):
    tree = SourceTree(str(ctx), IgnoreMatcher.from_text("*.log\n"))
    assert tree.expand("*.txt") == ["top.txt"]
    assert tree.expand("d/*/b.txt") == ["d/sub/b.txt"]
    with pytest.raises(NotFound):
        tree.expand("x.log")  # excluded by .dockerignore
    with pytest.raises(InvalidArgument, match="outside the build context"):
        tree.expand("../etc")
    with pytest.raises(InvalidArgument, match="points outside"):
        tree.expand("escape")
    assert os.path.basename(tree.resolve("link")) == "a.txt"


def test_digest_cache_reuses_and_notices_changes(tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"x" * (DigestCache.MIN_SIZE + 1))
    cache = DigestCache(str(tmp_path / "d.json"))
    first = cache.digest(str(f), f.stat())
    cache.save()
    again = DigestCache(str(tmp_path / "d.json"))
    assert again.entries and again.digest(str(f), f.stat()) == first
    f.write_bytes(b"y" * (DigestCache.MIN_SIZE + 1))
    assert again.digest(str(f), f.stat()) != first


def test_copy_rules(ctx, tmp_path):
    image = tmp_path / "image"
    (image / "usr" / "opt").mkdir(parents=True)
    (image / "usr" / "link").symlink_to("/usr/opt")  # an absolute link inside the image
    tree = SourceTree(str(ctx))
    copier.copy(str(image), tree, ["d"], "/dest", "/")
    assert sorted(os.listdir(image / "dest")) == ["a.txt", "sub"]  # a directory copies its contents
    copier.copy(str(image), tree, ["top.txt"], "renamed", "/work")
    assert (image / "work" / "renamed").read_text() == "t"
    copier.copy(str(image), tree, ["top.txt"], "/usr/link/", "/", chmod=0o751)
    assert (image / "usr" / "opt" / "top.txt").stat().st_mode & 0o777 == 0o751  # followed inside the image
    with pytest.raises(InvalidArgument, match="must be a directory and end with a /"):
        copier.copy(str(image), tree, ["top.txt", "x.log"], "/many", "/")
    copier.copy(str(image), tree, [], "/inline/f", "/", inline={"EOF": b"hi\n"})
    assert (image / "inline" / "f").read_text() == "hi\n"


def test_step_spec_defaults():
    spec = build_step_spec("abc", "ns", StepProcess(("sh", "-c", "true"), ("PATH=/bin",), "/w", 5, 6, (7,), "none"))
    assert spec["process"]["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}
    assert spec["process"]["cwd"] == "/w" and spec["process"]["args"] == ["sh", "-c", "true"]
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert "CAP_CHOWN" in spec["process"]["capabilities"]["bounding"]
    assert [m["destination"] for m in spec["mounts"]][:3] == ["/proc", "/dev", "/dev/pts"]
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"  # Docker's default profile, as BuildKit
    host = build_step_spec("abc", "ns", StepProcess(("true",), (), network="host"))
    assert {"type": "network"} not in host["linux"]["namespaces"]
    hooks = {"createRuntime": [{"path": "/x/ctk-net"}], "poststop": [{"path": "/x/ctk-net"}]}
    bridge = build_step_spec("abc", "ns", StepProcess(("true",), (), hooks=hooks, annotations={"ctk/networks": "[]"}))
    assert {"type": "network"} in bridge["linux"]["namespaces"]  # the default: a namespace of its own
    assert bridge["hooks"] == hooks and bridge["annotations"] == {"ctk/networks": "[]"}
    assert bridge["hostname"] == "ctk-build"  # the same in every build


def test_ports_and_durations():
    assert _port_specs("80") == ["80/tcp"]
    assert _port_specs("53/UDP") == ["53/udp"]
    assert _port_specs("8000-8002") == ["8000/tcp", "8001/tcp", "8002/tcp"]
    with pytest.raises(InvalidArgument):
        _port_specs("http")
    df = parse("FROM x\n")
    assert _duration_ns(df, df.nodes[0], "interval", "1m30s") == 90_000_000_000
    with pytest.raises(InvalidArgument, match="--interval=5: expected a duration"):
        _duration_ns(df, df.nodes[0], "interval", "5")


def test_image_state_env_and_config():
    st = ImageState(config={"Env": ["PATH=/bin", "A=1"]})
    st.set_env("A", "2")
    st.set_env("B", "x y")
    assert st.env() == {"PATH": "/bin", "A": "2", "B": "x y"}
    st.add_history("/bin/sh -c #(nop) ENV A=2", empty=True, created=rfc3339(0))
    doc = st.config_json()
    assert doc["created"] == "1970-01-01T00:00:00Z" and doc["history"][0]["empty_layer"] is True
    assert doc["rootfs"] == {"type": "layers", "diff_ids": []}


def _tar(tmp_path, members):
    import io
    import tarfile

    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as t:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, arg
                t.addfile(info)
            else:
                info.size = len(arg)
                t.addfile(info, io.BytesIO(arg))
    return str(path)


def test_archive_cannot_write_through_a_symlink_to_the_host(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    evil = _tar(tmp_path, [("link", "sym", str(victim)), ("link/owned", "file", b"x")])
    assert copier.is_archive(evil)
    copier.extract(evil, str(dest), None)  # the link is followed inside dest, as in docker build's chroot
    assert not (victim / "owned").exists()
    assert (dest / str(victim).lstrip("/") / "owned").read_bytes() == b"x"
    ok = _tar(tmp_path, [("../../up.txt", "file", b"u"), ("d/rel", "sym", "../up.txt")])
    copier.extract(ok, str(dest), copier.CopyOwner(3, 4))
    assert (dest / "up.txt").read_bytes() == b"u" and (dest / "up.txt").stat().st_uid == 3
