"""ctk-build on real Debian images (scripts/images, the ``real_images`` fixture): a RUN step installs a package
with apt-get (DNS and outbound traffic through the build bridge's NAT to the machine's apt mirror, whose
sources are copied into the context as scripts/demo does), a multi-stage build copies the installed binary
into another Debian stage, and a hostile root filesystem tar given to ``FROM scratch`` + ``ADD rootfs.tar /``
writes nothing outside the build's snapshot.
"""
from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import tarfile

import pytest

from tests.support.images import busybox_layer_tar
from tests.support.trees import tree_hash

from .conftest import write
from .test_confinement import sentinel  # noqa: F401 - sentinel is a fixture

pytestmark = pytest.mark.integration

# GNU hello: a small package (one binary, libc only) that no image of scripts/images contains
APT_DOCKERFILE = """\
ARG BASE
FROM $BASE AS build
COPY apt-sources/ /etc/apt/sources.list.d/
RUN apt-get update -q -o APT::Sandbox::User=root && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello && \\
    apt-get clean && rm -rf /var/lib/apt/lists/*
RUN mkdir /out && cp /usr/bin/hello /out/hello && hello --version | head -n 1 > /out/VERSION

FROM $BASE
COPY --from=build /out/ /usr/local/bin/
CMD ["hello", "-g", "hello from a copied binary"]
"""


def apt_sources(ctx) -> None:
    """The machine's apt sources, as ``python3 -m scripts.images sources DIR`` writes them (scripts/demo)."""
    p = subprocess.run([sys.executable, "-m", "scripts.images", "sources", str(ctx / "apt-sources")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert list((ctx / "apt-sources").iterdir()), "no apt sources on this machine"


def test_apt_get_in_a_run_step_and_copy_from_another_debian_stage(build, run, real_images, tmp_path):
    base = real_images["debian"].ref
    ctx = write(tmp_path / "ctx", {"Dockerfile": APT_DOCKERFILE})
    apt_sources(ctx)
    r = build("-t", "hello:final", "--build-arg", f"BASE={base}", str(ctx))
    assert r.code == 0, r.err[-3000:]
    # the package stage, built again from the cache as its own image: dpkg knows the package there
    t = build("-q", "-t", "hello:build", "--target", "build", "--build-arg", f"BASE={base}", str(ctx))
    assert t.code == 0, t.err
    s = run("--rm", "-q", "--network", "none", "hello:build", "dpkg-query", "-W", "-f", "${Status}", "hello")
    assert s.code == 0 and s.out == "install ok installed", (s.out, s.err)

    out = run("--rm", "-q", "--network", "none", "hello:final")
    assert out.code == 0 and out.out == "hello from a copied binary\n", (out.out, out.err)
    # the final stage holds the copied binary only: no package, no apt sources, no apt lists
    chk = run("--rm", "-q", "--network", "none", "hello:final", "sh", "-c",
              "stat -c '%a %U' /usr/local/bin/hello; cat /usr/local/bin/VERSION; "
              "dpkg-query -W hello 2>/dev/null || echo no-package; ls /etc/apt/sources.list.d | wc -l")
    assert chk.code == 0, chk.err
    mode, version, package, sources = chk.out.splitlines()
    assert mode == "755 root" and version.startswith("hello (GNU Hello)") and package == "no-package"
    assert sources == "0"


def _rootfs_with(members: list[tuple[str, str, object]]) -> bytes:
    """busybox's runnable root filesystem followed by ``members``: (name, kind, arg) with kind "file"
    (arg: bytes), "sym" or "hard" (arg: link name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out, \
            tarfile.open(fileobj=io.BytesIO(busybox_layer_tar())) as src:
        for m in src:
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 1_600_000_000
            data = None
            if kind == "file":
                data = io.BytesIO(arg)
                info.size = len(arg)
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = arg
            out.addfile(info, data)
    return buf.getvalue()


def test_hostile_root_filesystem_tar_from_scratch(build, run, tmp_path, sentinel):  # noqa: F811
    """A root filesystem whose members climb out with ``../``, are absolute, write through an absolute
    symlink, and hard-link to host paths. What can be confined lands inside the image; a hard link to a
    file that only exists on the host is refused; the host tree is never written (tests/unit/build/
    test_rootfs.py and test_confinement.py cover each case on its own, through an image base)."""
    up = "../" * 12 + str(sentinel).lstrip("/")
    stray = f"/tmp/ctk-escape-{secrets.token_hex(4)}"  # an absolute member name: must not appear on the host
    confined = _rootfs_with([
        (f"{up}/dotdot", "file", b"dotdot\n"),
        (stray, "file", b"absolute\n"),
        ("escape", "sym", f"{sentinel}/dir"),  # absolute link to a host directory, then writes through it
        ("escape/written", "file", b"through the link\n"),
        ("hl", "hard", f"{sentinel}/dir/written"),  # absolute hard link target: resolved in the root
        ("hl2", "hard", f"{up}/dir/written"),
    ])
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n",
                                   "rootfs.tar": confined})
    before = tree_hash(sentinel)
    nlink = os.stat(sentinel / "file").st_nlink
    r = build("-q", "-t", "hostile", str(ctx))
    assert tree_hash(sentinel) == before, "the build wrote on the host"
    assert not os.path.lexists(stray) and not os.path.lexists(sentinel / "dir/written")
    assert r.code == 0, r.err
    inside = str(sentinel)
    script = (f"cat {inside}/dotdot {stray} {inside}/dir/written /hl; test -L /escape && echo link; "
              f"stat -c %h {inside}/dir/written; "
              f"test \"$(stat -c %i /hl)\" = \"$(stat -c %i {inside}/dir/written)\" && "
              f"test \"$(stat -c %i /hl2)\" = \"$(stat -c %i /hl)\" && echo same-inode")
    out = run("--rm", "-q", "--network", "none", "hostile", "sh", "-c", script)
    assert out.code == 0, out.err
    assert out.out == "dotdot\nabsolute\nthrough the link\nthrough the link\nlink\n3\nsame-inode\n"

    # a hard link to a host file that has no counterpart in the root: refused, in one line
    for target in (f"{sentinel}/file", f"{up}/file"):
        (ctx / "rootfs.tar").write_bytes(_rootfs_with([("stolen", "hard", target)]))
        r = build("-q", "-t", "hostile2", str(ctx))
        assert r.code != 0 and "hard link" in r.err and "Traceback" not in r.err, r.err
        assert len(r.err.strip().splitlines()) <= 3, r.err
        assert tree_hash(sentinel) == before and os.stat(sentinel / "file").st_nlink == nlink
