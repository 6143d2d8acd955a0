"""runc itself runs the specs ctk-run builds: on a busybox rootfs, no containerd in between.

Checks what only the kernel can say: the capability sets a process really gets, that seccomp (not only the
missing capability) refuses ``mount``, that limits reach the cgroups and that users, read-only roots and
mounts look the way ``docker run`` makes them look.
"""
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from ctk_run.mounts import parse_mount, parse_tmpfs, parse_volume
from ctk_run.spec import DEFAULT_CAPS, SpecOptions, build_spec
from ctk_shared import seccomp

pytestmark = pytest.mark.integration

NAMESPACE = "ctk-spec-test"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
BUSYBOX = shutil.which("busybox")
RUNC = shutil.which("runc")


def _static(path):
    out = subprocess.run(["file", "-L", path], capture_output=True, text=True).stdout if shutil.which("file") else ""
    return "statically linked" in out or "static-pie" in out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One bundle (runc wants its rootfs a real directory); each test writes its own config.json."""
    if os.geteuid() != 0 or not RUNC or not BUSYBOX or not _static(BUSYBOX):
        pytest.skip("needs root, runc and a static busybox")
    bundle = tmp_path_factory.mktemp("bundle")
    root = bundle / "rootfs"
    root.mkdir()
    for d in ("bin", "etc", "mnt", "proc", "sys", "dev", "tmp", "data"):
        (root / d).mkdir()
    (root / "tmp").chmod(0o1777)  # runc gives a tmpfs the mode of the directory it covers, as in images
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    yield bundle
    for hierarchy in Path("/sys/fs/cgroup").iterdir():  # runc leaves the parent cgroup of our containers
        for d in (hierarchy / NAMESPACE, hierarchy.parent / NAMESPACE):
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def run(bundle, tmp_path):
    state = tmp_path / "runc-state"

    def _run(script, *, edit=None, **kw):
        cid = f"ctk-spec-{uuid.uuid4().hex[:12]}"
        spec = build_spec(cid, NAMESPACE, {"Cmd": ["/bin/sh", "-c", script]}, SpecOptions(**kw),
                          passwd=PASSWD, group=GROUP)
        if edit:
            edit(spec)
        (bundle / "config.json").write_text(json.dumps(spec))
        try:
            p = subprocess.run([RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        finally:
            subprocess.run([RUNC, "--root", str(state), "delete", "-f", cid], capture_output=True)
        return p

    return _run


def status(out):
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def caps(hexmask):
    return int(hexmask, 16)


DOCKER_DEFAULT_MASK = 0xA80425FB  # the 14 default capabilities


def test_default_container_is_dockers(run):
    p = run("id; grep -E 'Cap|Seccomp:|NoNewPrivs' /proc/self/status; "
            "mount -t tmpfs x /mnt 2>/dev/null && echo mounted || echo mount-denied; "
            "cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable; df -k /dev/shm | tail -1; ulimit -n")
    assert p.returncode == 0, p.stderr
    s = status(p.stdout)
    assert "uid=0(root) gid=0(root)" in p.stdout
    assert caps(s["CapEff"]) == caps(s["CapBnd"]) == DOCKER_DEFAULT_MASK
    assert caps(s["CapInh"]) == 0 and caps(s["CapAmb"]) == 0
    assert s["Seccomp"].strip() == "2" and s["NoNewPrivs"].strip() == "0"
    assert "mount-denied" in p.stdout and "kcore-readable" not in p.stdout
    assert " 65536 " in p.stdout  # /dev/shm is 64 MiB


def test_seccomp_alone_blocks_mount(run):
    """With CAP_SYS_ADMIN, mount works; the same process under the profile of a default container cannot."""
    p = run("mount -t tmpfs x /mnt && echo mounted", cap_add=("SYS_ADMIN",))
    assert "mounted" in p.stdout, p.stderr
    narrow = seccomp.default_profile(DEFAULT_CAPS)
    p = run("grep CapEff /proc/self/status; mount -t tmpfs x /mnt && echo mounted || echo mount-denied",
            cap_add=("SYS_ADMIN",), edit=lambda spec: spec["linux"].__setitem__("seccomp", narrow))
    assert caps(status(p.stdout)["CapEff"]) & (1 << 21)  # the process holds CAP_SYS_ADMIN ...
    assert "mount-denied" in p.stdout  # ... and seccomp says no


def test_user_read_only_root_and_mounts(run, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    p = run("id; touch /x 2>/dev/null || echo root-read-only; cat /data/hello; "
            "touch /data/y 2>/dev/null || echo data-read-only; touch /tmp/ok && echo tmp-writable; "
            "grep -E ' /tmp | /run ' /proc/mounts",
            user="nobody", read_only=True,
            mounts=(parse_volume(f"{host}:/data:ro"), parse_tmpfs("/tmp:size=1m"),
                    parse_mount("type=tmpfs,dst=/run,tmpfs-size=2m,tmpfs-mode=755")))
    assert p.returncode == 0, p.stderr
    assert "uid=65534(nobody) gid=65534(nogroup)" in p.stdout
    for word in ("root-read-only", "from the host", "data-read-only", "tmp-writable"):
        assert word in p.stdout
    assert "size=1024k" in p.stdout and "noexec" in p.stdout and "size=2048k,mode=755" in p.stdout


def test_limits_reach_the_kernel(run):
    p = run("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; "
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; ulimit -n; ulimit -u",
            memory=512 << 20, pids_limit=64, ulimits=("nofile=1024:2048", "nproc=512"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["536870912", "64", "1024", "512"]


def test_privileged_and_cap_drop_all(run):
    p = run("grep -E 'CapEff|Seccomp:' /proc/self/status; mount -t tmpfs x /mnt && echo mounted", privileged=True)
    assert p.returncode == 0, p.stderr
    assert status(p.stdout)["Seccomp"].strip() == "0" and "mounted" in p.stdout
    p = run("grep CapEff /proc/self/status; chown 1 /tmp 2>/dev/null || echo chown-denied", cap_drop=("ALL",))
    assert caps(status(p.stdout)["CapEff"]) == 0 and "chown-denied" in p.stdout
