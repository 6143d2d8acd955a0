"""ctk-build writes only inside the build's snapshot (issue 12): hostile archives, image symlinks that point
at host paths, .dockerignore re-inclusion and COPY --from trees with escaping links.

Every test points the links at a host sentinel tree under its tmp_path, hashes it before and after the
build, and then checks in the built image that the result is what Docker gives: a non-directory tar member
replaces a link at its path, a link in a parent path is followed inside the image root.
"""
from __future__ import annotations

import io
import os
import tarfile

import pytest

from tests.support.trees import tree_hash

from .conftest import write

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel(tmp_path):
    """The host tree hostile links point at: ``file`` (0600) and ``dir/`` (0700, holding ``keep``)."""
    top = tmp_path / "host"
    (top / "dir").mkdir(parents=True)
    (top / "dir/keep").write_text("keep\n")
    (top / "file").write_text("host file\n")
    os.chmod(top / "file", 0o600)
    os.chmod(top / "dir", 0o700)
    return top


def tar_bytes(members) -> bytes:
    """A tar; a member is (name, kind, arg): kind "file" (arg: bytes), "sym"/"hard" (arg: link name),
    "dir", "chr" (arg: (major, minor)), "fifo"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o777 if kind == "dir" else 0o666
            info.mtime = 1_600_000_000
            data = None
            if kind == "file":
                data = io.BytesIO(arg)
                info.size = len(arg)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = arg
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = arg
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            t.addfile(info, data)
    return buf.getvalue()


def build_leaving_host_alone(build, sentinel, tag, ctx):
    """Build ``ctx`` as ``tag``; the host sentinel tree must be untouched and the build must succeed."""
    before = tree_hash(sentinel)
    r = build("-q", "-t", tag, str(ctx))
    assert tree_hash(sentinel) == before, "the build wrote on the host"
    assert r.code == 0, r.err
    return r


def check_in_image(run, image, script):
    out = run("--rm", "-q", "--network", "none", image, "sh", "-c", script)
    assert out.code == 0, out.err
    return out.out


def _hostile(sentinel):
    up = "../" * 16 + str(sentinel).lstrip("/")
    inroot = str(sentinel)  # where an absolute link to the sentinel leads inside the image
    return {
        # a link to a host file, then a regular file of the same name: the file replaces the link
        "link-then-file": ([("lnk", "sym", f"{sentinel}/file"), ("lnk", "file", b"pwned\n")],
                           "test ! -L /lnk && cat /lnk && stat -c %a /lnk", "pwned\n666\n"),
        # a link to a host directory, then a directory member (0777) and a file below it
        "link-then-dir": ([("lnk", "sym", f"{sentinel}/dir"), ("lnk", "dir", None),
                           ("lnk/in", "file", b"in\n")],
                          "test ! -L /lnk && stat -c %a /lnk && cat /lnk/in", "777\nin\n"),
        # the same with a relative link climbing out with ../
        "relative-link": ([("etc/lnk", "sym", f"{up}/file"), ("etc/lnk", "file", b"pwned\n")],
                          "test ! -L /etc/lnk && cat /etc/lnk", "pwned\n"),
        # a member below a link: followed, but inside the image root
        "link-as-parent": ([("lnk", "sym", f"{up}/dir"), ("lnk/evil", "file", b"pwned\n")],
                           f"cat {inroot}/dir/evil && test -L /lnk", "pwned\n"),
        # a hard link whose name is a link to a host file (tarfile fell back to writing through it)
        "hardlink-over-link": ([("data", "file", b"pwned\n"), ("lnk", "sym", f"{sentinel}/file"),
                                ("lnk", "hard", "data")],
                               "test ! -L /lnk && cat /lnk && stat -c %h /data", "pwned\n2\n"),
        # device nodes and FIFOs through and over links
        "devices": ([("lnk", "sym", f"{sentinel}/dir"), ("lnk/null", "chr", (1, 3)),
                     ("lnk2", "sym", f"{sentinel}/file"), ("lnk2", "fifo", None)],
                    f"stat -c '%F %t,%T' {inroot}/dir/null; test -p /lnk2 && echo fifo",
                    "character special file 1,3\nfifo\n"),
    }


@pytest.mark.parametrize("case", ["link-then-file", "link-then-dir", "relative-link", "link-as-parent",
                                  "hardlink-over-link", "devices"])
def test_hostile_tar_stays_in_the_snapshot(build, run, bb, tmp_path, sentinel, case):
    members, script, expected = _hostile(sentinel)[case]
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nADD evil.tar /\n",
                                   "evil.tar": tar_bytes(members)})
    build_leaving_host_alone(build, sentinel, "evil", ctx)
    assert check_in_image(run, "evil", script) == expected


@pytest.mark.parametrize("how", ["run", "add"])
def test_add_over_an_image_link_to_a_host_path_replaces_the_link(build, run, bb, tmp_path, sentinel, how):
    """/etc/localtime is a link to an absolute path (here: a host file); an ordinary ``ADD tz.tar /``
    holding etc/localtime replaces the link in the image and leaves the host file alone."""
    make_link = (f"RUN --network=none ln -sf {sentinel}/file /etc/localtime" if how == "run"
                 else "ADD link.tar /")
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"FROM {bb}\n{make_link}\nADD tz.tar /\n",
        "link.tar": tar_bytes([("etc/localtime", "sym", f"{sentinel}/file")]),
        "tz.tar": tar_bytes([("etc/", "dir", None), ("etc/localtime", "file", b"TZif2 fake\n")]),
    })
    build_leaving_host_alone(build, sentinel, "tz", ctx)
    assert check_in_image(run, "tz", "test ! -L /etc/localtime && cat /etc/localtime") == "TZif2 fake\n"


def test_copy_and_add_through_an_image_link_land_inside_the_root(build, run, bb, tmp_path, sentinel):
    """The image has ``/sub -> <host dir>``: COPY to /sub/… and a tar member sub/… follow the link in the
    image root (BuildKit resolves destinations with fs.RootPath)."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"FROM {bb}\nADD link.tar /\nCOPY f.txt /sub/f.txt\nCOPY f.txt /sub/deeper/\n"
                      "ADD t.tar /\n",
        "link.tar": tar_bytes([("sub", "sym", f"{sentinel}/dir")]),
        "t.tar": tar_bytes([("sub/t.txt", "file", b"from tar\n")]),
        "f.txt": "copied\n",
    })
    build_leaving_host_alone(build, sentinel, "through", ctx)
    script = f"cd {sentinel}/dir && cat f.txt deeper/f.txt t.txt && test -L /sub && ls /sub/"
    assert check_in_image(run, "through", script) == "copied\ncopied\nfrom tar\ndeeper\nf.txt\nt.txt\n"


def test_dockerignore_reinclusion_through_an_image_link(build, run, bb, tmp_path, sentinel):
    """.dockerignore ``dir/sub`` + ``!dir/sub/file``; the image has ``/sub -> <host dir>``; ``COPY dir/ /``
    used to create the host's <host dir>/file."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"FROM {bb}\nADD link.tar /\nCOPY dir/ /\n",
        ".dockerignore": "dir/sub\n!dir/sub/file\n",
        "link.tar": tar_bytes([("sub", "sym", f"{sentinel}/dir")]),
        "dir/sub/file": "re-included\n", "dir/sub/ignored": "no\n", "dir/top.txt": "top\n",
    })
    build_leaving_host_alone(build, sentinel, "reinc", ctx)
    script = f"cat {sentinel}/dir/file /top.txt; test -L /sub && test ! -e {sentinel}/dir/ignored && echo ok"
    assert check_in_image(run, "reinc", script) == "re-included\ntop\nok\n"


def test_copy_from_a_stage_with_escaping_links(build, run, bb, tmp_path, sentinel):
    """A stage's tree holds links to host paths; COPY --from of two trees into / (the second writes a
    directory and a file where the first left those links), then an ordinary ADD below the link."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"""FROM {bb} AS s
ADD trees.tar /
FROM {bb}
COPY --from=s /a/ /b/ /
ADD more.tar /
""",
        "trees.tar": tar_bytes([("a/x", "sym", f"{sentinel}/dir"), ("a/y", "sym", f"{sentinel}/file"),
                                ("b/x/new.txt", "file", b"new\n"), ("b/y", "file", b"replaced\n")]),
        "more.tar": tar_bytes([("x/more.txt", "file", b"more\n")]),
    })
    build_leaving_host_alone(build, sentinel, "fromstage", ctx)
    script = f"cat {sentinel}/dir/new.txt {sentinel}/dir/more.txt /y; test -L /x && test ! -L /y && echo ok"
    assert check_in_image(run, "fromstage", script) == "new\nmore\nreplaced\nok\n"


def test_run_step_cleanup_follows_no_link(build, run, bb, tmp_path, sentinel):
    """A RUN step replaces /etc with a link to a host directory holding empty ``hosts``/``resolv.conf``:
    dropping the mount points runc made must not look for them through the link."""
    (sentinel / "dir/hosts").write_text("")
    (sentinel / "dir/resolv.conf").write_text("")
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n"
                                   f"RUN --network=none rm -rf /etc && ln -s {sentinel}/dir /etc\n"})
    build_leaving_host_alone(build, sentinel, "etclink", ctx)


def test_hard_link_out_of_the_root_is_one_error_line(build, bb, tmp_path, sentinel):
    """A hard link to a host file resolves inside the destination, where nothing is: the build fails with
    one line naming the member (Docker fails the same way), and the host file keeps its single link."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nADD evil.tar /\n",
                                   "evil.tar": tar_bytes([("h", "hard", f"{sentinel}/file")])})
    before = tree_hash(sentinel)
    r = build("-q", "-t", "hl", str(ctx))
    assert tree_hash(sentinel) == before and os.stat(sentinel / "file").st_nlink == 1
    assert r.code == 1 and r.err.startswith("ctk-build: error: Dockerfile:2: unpacking hard link"), r.err
    assert "Traceback" not in r.err and len([ln for ln in r.err.splitlines() if "error" in ln]) == 1
