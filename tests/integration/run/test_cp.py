"""Issue 14: `ctk-run cp` both ways, with running, stopped and never started containers, on the real containerd.

Docker's path rules (trailing `/.`, file vs directory, errors), owners (root inside, the invoking user outside,
the source's with -a), -L, tar on stdin/stdout, volumes of a stopped container, and the hostile cases: links
in the container that point at host paths (absolute, or climbing with ..) never lead a read or a write out of
the container's root, and a tar with `..` or a link in its path writes nothing outside the destination."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from tests.support.trees import tree_hash

pytestmark = pytest.mark.integration


def _host_tree(base):
    """A small tree with owners, modes, a symlink and a hard link."""
    src = base / "site"
    (src / "sub").mkdir(parents=True)
    (src / "index.html").write_text("hello\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "sub" / "run.sh", 0o4750)
    os.chown(src / "index.html", 1234, 2345)
    os.symlink("index.html", src / "link")
    os.link(src / "index.html", src / "hard")
    return src


def _sentinel(base):
    s = base / "sentinel"
    (s / "tmp").mkdir(parents=True)
    (s / "secret").write_text("host secret\n")
    return s


@pytest.fixture
def running(run, bb):
    r = run("run", "-d", "--name", "c1", bb, "sleep", "3600")
    assert r.code == 0, r.err
    return "c1"


def _sh(run, name, script):
    r = run("exec", name, "sh", "-c", script)
    assert r.code == 0, r.err
    return r.out


def test_copy_out_of_a_running_container_with_docker_path_rules(run, running, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _sh(run, running, "mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && chown 7:8 /d/a")
    r = run("cp", f"{running}:/etc/hostname", str(out))  # a file into an existing directory
    assert r.code == 0, r.err
    assert r.out == "" and (out / "hostname").read_text().strip()
    assert run("cp", f"{running}:/d/a", str(out / "renamed")).code == 0  # a file to a new name
    assert (out / "renamed").read_text() == "a\n"
    st = os.stat(out / "renamed")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())  # the invoking user, as Docker
    assert run("cp", "-a", f"{running}:/d/a", str(out / "kept")).code == 0
    assert (os.stat(out / "kept").st_uid, os.stat(out / "kept").st_gid) == (7, 8)
    assert run("cp", f"{running}:/d", str(out)).code == 0  # a directory into a directory: under its name
    assert (out / "d" / "sub" / "b").read_text() == "b\n"
    (out / "contents").mkdir()
    assert run("cp", f"{running}:/d/.", str(out / "contents")).code == 0  # SRC/. : only its contents
    assert sorted(os.listdir(out / "contents")) == ["a", "sub"]
    assert run("cp", f"{running}:/d", str(out / "newdir")).code == 0  # DEST missing: made, with the contents
    assert sorted(os.listdir(out / "newdir")) == ["a", "sub"]
    r = run("cp", f"{running}:/d", str(out / "renamed"))  # a directory onto a file
    assert r.code != 0 and "cannot copy a directory to a file" in r.err
    r = run("cp", f"{running}:/d/a", str(out / "nodir") + "/")  # a file to a missing directory
    assert r.code != 0 and "must exist" in r.err and not (out / "nodir").exists()
    r = run("cp", f"{running}:/nope", str(out))
    assert r.code in (1, 3) and f"Could not find the file /nope in container {running}" in r.err  # 3: not found
    r = run("cp", "nosuch:/etc/hostname", str(out))
    assert r.code in (1, 3) and "no such container: nosuch" in r.err


def test_the_whole_root_of_a_running_container_without_its_proc_sys_and_dev(run, running, tmp_path):
    """`cp c:/ DIR` reads the container's own tree; /proc, /sys and /dev come as empty directories (/proc/kcore
    alone claims terabytes, and /dev holds device nodes), as Docker cannot copy them either."""
    out = tmp_path / "rootcopy"
    r = run("cp", f"{running}:/", str(out), timeout=120)
    assert r.code == 0, r.err
    assert (out / "etc" / "hostname").read_text().strip() and (out / "bin").is_dir()
    for kernel in ("proc", "sys", "dev"):
        assert (out / kernel).is_dir() and os.listdir(out / kernel) == [], kernel


def test_copy_into_a_running_container_owners_links_and_archive_mode(run, running, tmp_path):
    src = _host_tree(tmp_path)
    assert run("cp", str(src), f"{running}:/srv").code == 0  # /srv missing: made, with the contents
    out = _sh(run, running, "cat /srv/index.html; stat -c '%u:%g %a' /srv/index.html /srv/sub/run.sh;"
                            " readlink /srv/link; stat -c %i /srv/index.html /srv/hard")
    lines = out.splitlines()
    assert lines[0] == "hello"
    assert lines[1] == "0:0 644" and lines[2] == "0:0 4750"  # root inside (Docker); modes kept, setuid too
    assert lines[3] == "index.html"  # a link stays a link
    assert lines[4] == lines[5]  # a hard link stays one
    assert run("cp", "-a", str(src / "index.html"), f"{running}:/tmp/").code == 0
    assert _sh(run, running, "stat -c '%u:%g' /tmp/index.html").strip() == "1234:2345"
    r = run("cp", str(src), f"{running}:/etc/hostname")
    assert r.code != 0 and "cannot copy a directory to a file" in r.err
    r = run("cp", str(src / "index.html"), f"{running}:/nowhere/")
    assert r.code != 0 and "must exist" in r.err


def test_follow_link_and_tar_streams(run, running, tmp_path, containerd, ctd):
    _sh(run, running, "echo target > /tgt && ln -s /tgt /lnk && mkdir /box")
    out = tmp_path / "out"
    out.mkdir()
    assert run("cp", f"{running}:/lnk", str(out / "plain")).code == 0
    assert os.readlink(out / "plain") == "/tgt"  # the link itself, as Docker
    assert run("cp", "-L", f"{running}:/lnk", str(out / "followed")).code == 0
    assert (out / "followed").read_text() == "target\n" and not os.path.islink(out / "followed")
    p = subprocess.run(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "cp",
                        f"{running}:/tgt", "-"], capture_output=True, env={**os.environ, **run.env}, check=False)
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        assert [(m.name, t.extractfile(m).read()) for m in t] == [("tgt", b"target\n")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"from a tar\n"
        ti = tarfile.TarInfo("dir/f.txt")
        ti.size, ti.uid, ti.gid = len(data), 55, 66
        t.addfile(ti, io.BytesIO(data))
    r = run("cp", "-", f"{running}:/box", input=buf.getvalue())
    assert r.code == 0, r.err
    assert _sh(run, running, "cat /box/dir/f.txt; stat -c '%u:%g' /box/dir/f.txt") == "from a tar\n0:0\n"
    r = run("cp", "-a", "-", f"{running}:/box", input=buf.getvalue())
    assert r.code == 0 and _sh(run, running, "stat -c '%u:%g' /box/dir/f.txt") == "55:66\n"
    r = run("cp", "-", f"{running}:/tgt", input=buf.getvalue())
    assert r.code != 0 and "directory" in r.err


def _stopped(run, bb, how):
    if how == "stopped":
        r = run("run", "-d", "--name", "s1", "-v", "vol1:/vol", bb, "sleep", "3600")
        assert r.code == 0, r.err
        assert run("stop", "-t", "0", "s1").code == 0
    else:
        r = run("create", "--name", "s1", "-v", "vol1:/vol", bb, "sleep", "3600")
        assert r.code == 0, r.err
    return "s1"


@pytest.mark.parametrize("how", ["stopped", "created"])
def test_copy_with_a_stopped_or_created_container_reaches_its_files_and_volumes(run, bb, tmp_path, how, containerd,
                                                                                ctd):
    name = _stopped(run, bb, how)
    src = _host_tree(tmp_path)
    r = run("cp", str(src / "index.html"), f"{name}:/etc/greeting")
    assert r.code == 0, r.err
    r = run("cp", str(src), f"{name}:/vol/")  # into the named volume, as Docker mounts it for the copy
    assert r.code == 0, r.err
    out = tmp_path / "back"
    r = run("cp", f"{name}:/etc/greeting", str(out))
    assert r.code == 0, r.err
    assert out.read_text() == "hello\n"
    assert run("cp", f"{name}:/etc/hostname", str(tmp_path / "hn")).code == 0  # ctk's generated /etc file
    buf = io.BytesIO()  # a tar on stdin, unpacked by the child that mounts the stopped container
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("from-stdin.txt")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"in\n"))
    r = run("cp", "-", f"{name}:/tmp", input=buf.getvalue())
    assert r.code == 0, r.err
    p = subprocess.run(["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "cp",
                        f"{name}:/tmp/from-stdin.txt", "-"], capture_output=True, env={**os.environ, **run.env},
                       check=False)
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        assert [(m.name, t.extractfile(m).read()) for m in t] == [("from-stdin.txt", b"in\n")]
    r = run("run", "--rm", "-v", "vol1:/v", bb, "cat", "/v/site/index.html")  # the volume holds the copy
    assert r.code == 0 and r.out == "hello\n", r.err
    assert run("start", name).code == 0
    assert _sh(run, name, "cat /etc/greeting; cat /vol/site/sub/run.sh") == "hello\n#!/bin/sh\n"
    assert not [m for m in open("/proc/self/mountinfo").read().splitlines() if "ctk-cp-" in m]


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_links_in_the_container_never_lead_out_of_its_root(run, bb, tmp_path, state):
    sentinel = _sentinel(tmp_path)
    before = tree_hash(sentinel)
    r = run("run", "-d", "--name", "h1", bb, "sleep", "3600")
    assert r.code == 0, r.err
    # absolute links to the host's own paths, and a relative one that climbs far above the root
    _sh(run, "h1", f"ln -s {sentinel} /abs && ln -s ../../../../../../../../{str(sentinel).lstrip('/')} /rel"
                   f" && ln -s {sentinel}/secret /leak && mkdir -p {sentinel}/tmp")
    if state == "stopped":
        assert run("stop", "-t", "0", "h1").code == 0
    host_file = tmp_path / "payload"
    host_file.write_text("payload\n")
    for dest in ("h1:/abs/tmp/x", "h1:/rel/tmp/x", "h1:/abs/tmp/", "h1:/../../../../tmp/y"):
        run("cp", str(host_file), dest)
    r = run("cp", "-L", "h1:/leak", str(tmp_path / "leaked"))
    assert r.code != 0 and "Could not find the file /leak" in r.err and not (tmp_path / "leaked").exists()
    r = run("cp", "h1:/abs/secret", str(tmp_path / "leaked"))
    assert r.code != 0 and not (tmp_path / "leaked").exists()
    assert tree_hash(sentinel) == before  # not a byte, mode or owner changed on the host
    if state == "stopped":
        assert run("start", "h1").code == 0
    # what went through the links landed inside the container, where the links point there
    assert _sh(run, "h1", f"cat {sentinel}/tmp/x; cat /tmp/y") == "payload\npayload\n"


def test_a_hostile_tar_writes_nothing_outside_the_destination(run, running, tmp_path):
    _sh(run, running, "mkdir -p /dst /outside && ln -s /outside /dst/escape")

    def tar_of(*members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name, kind, link in members:
                ti = tarfile.TarInfo(name)
                ti.type, ti.linkname = kind, link
                data = b"x\n" if kind == tarfile.REGTYPE else b""
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data) if data else None)
        return buf.getvalue()

    for members in ([("../outside/a", tarfile.REGTYPE, "")],
                    [("l", tarfile.SYMTYPE, "/outside"), ("l/b", tarfile.REGTYPE, "")],
                    [("escape/c", tarfile.REGTYPE, "")]):
        r = run("cp", "-", f"{running}:/dst", input=tar_of(*members))
        assert r.code != 0 and r.err.startswith("ctk-run: error:"), r.err
    assert _sh(run, running, "ls -A /outside") == ""


def test_usage_errors(run):
    r = run("cp", "a:/x", "b:/y")
    assert r.code == 2 and "copying between containers is not supported" in r.err
    r = run("cp", "./a", "/b")
    assert r.code == 2 and "at least one container" in r.err


def test_nginx_site_in_and_config_out_running_then_stopped(run, real_images, tmp_path):
    """The issue's flow on the real Debian nginx image: a site copied into the running server is served, its
    config comes out, and a page copied into the stopped container is served after `start`. Its access log is
    a link to /dev/stdout: copied as the link; with -L it resolves in the container (never the host's stdout)."""
    from .test_real_nginx import free_port, get

    port = free_port()
    r = run("run", "-d", "-q", "-p", f"{port}:80", "--name", "web", real_images["nginx"].ref)
    assert r.code == 0, r.err
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>from ctk-run cp</h1>\n")
    assert run("cp", f"{site}/.", "web:/var/www/html").code == 0
    assert "from ctk-run cp" in get(port, "ctk-cp")[2]
    r = run("cp", "web:/etc/nginx/nginx.conf", str(tmp_path))
    assert r.code == 0 and "http {" in (tmp_path / "nginx.conf").read_text()
    assert run("cp", "web:/var/log/nginx/access.log", str(tmp_path / "log")).code == 0
    assert os.readlink(tmp_path / "log") == "/dev/stdout"
    r = run("cp", "-L", "web:/var/log/nginx/access.log", str(tmp_path / "log2"), timeout=30)
    assert r.code != 0 and not (tmp_path / "log2").exists()
    assert run("stop", "web").code == 0
    (site / "index.html").write_text("<h1>copied while stopped</h1>\n")
    assert run("cp", str(site / "index.html"), "web:/var/www/html/index.html").code == 0
    assert run("start", "web").code == 0
    assert "copied while stopped" in get(port, "ctk-cp")[2]


@pytest.mark.parametrize("state", ["created", "running"])
def test_a_read_only_root_refuses_the_copy_but_its_volume_takes_it(run, bb, tmp_path, state):
    verb = ["create"] if state == "created" else ["run", "-d"]
    r = run(*verb, "--name", "ro1", "--read-only", "-v", "rovol:/data", "-v", f"{tmp_path}:/hostro:ro", bb,
            "sleep", "3600")
    assert r.code == 0, r.err
    f = tmp_path / "file.txt"
    f.write_text("x\n")
    r = run("cp", str(f), "ro1:/etc/")
    assert r.code == 1 and "read-only" in r.err, r.err
    r = run("cp", str(f), "ro1:/hostro/copy.txt")  # a :ro bind stays read-only for cp too
    assert r.code == 1 and "read-only" in r.err and not (tmp_path / "copy.txt").exists()
    r = run("cp", str(f), "ro1:/data/")
    assert r.code == 0, r.err
    assert run("cp", "ro1:/data/file.txt", str(tmp_path / "back.txt")).code == 0
    assert (tmp_path / "back.txt").read_text() == "x\n"
