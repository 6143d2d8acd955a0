"""Issue 15: volumes that keep data — copy-up from the image, image VOLUMEs as anonymous volumes, their
lifecycle with --rm and rm -v, the `volume` commands and inspect's Mounts, on the real containerd.

The image with content under a VOLUME is built by ctk-build from the busybox test image plus a small tar
(ADD) that holds what copy-up must keep: foreign owners, modes, an xattr, a symlink, a hardlink, a FIFO."""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import tarfile
import time

import pytest

from tests.support.cli import inspect_record as inspect
from tests.support.cli import run_tool

pytestmark = pytest.mark.integration

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _data_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, data: bytes = b"", link: str = "",
                xattrs: dict[str, str] | None = None) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1_600_000_000
            ti.linkname = link
            ti.size = len(data)
            if xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
            t.addfile(ti, io.BytesIO(data) if data else None)

        add("data", tarfile.DIRTYPE, 0o750, 1000, 1001)
        add("data/f", tarfile.REGTYPE, 0o640, 65534, 65534, b"hi\n", xattrs={"user.origin": "image"})
        add("data/hard", tarfile.LNKTYPE, 0o640, 65534, 65534, link="data/f")
        add("data/link", tarfile.SYMTYPE, 0o777, 1000, 1001, link="f")
        add("data/sub", tarfile.DIRTYPE, 0o1777, 0, 0)
        add("data/sub/g", tarfile.REGTYPE, 0o4755, 1000, 1001, b"#!/bin/sh\n")
        add("data/fifo", tarfile.FIFOTYPE, 0o620, 1000, 1001)
    return buf.getvalue()


@pytest.fixture
def vimg(containerd, ctd, bb, tmp_path):
    """busybox + /data (the tar above) declared as VOLUME /data, built into the test's namespace."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.tar").write_bytes(_data_tar())
    (ctx / "Dockerfile").write_text(f"FROM {bb}\nADD data.tar /\nVOLUME /data\n")
    ref = f"localhost/vol/img:{secrets.token_hex(3)}"
    b = run_tool("ctk-build", "-q", "-t", ref, str(ctx), address=containerd.address, namespace=ctd.namespace,
                 env={"CTK_DATA_ROOT": str(tmp_path / "data-build")})
    assert b.code == 0, b.err
    return ref


def volume_names(run) -> list[str]:
    r = run("volume", "ls", "-q")
    assert r.code == 0, r.err
    return sorted(r.lines)


LISTING = "cd /data && stat -c '%n %u %g %a %F %h' . f hard link sub sub/g fifo && readlink link && cat f"
EXPECTED = [
    ". 1000 1001 750 directory 3",
    "f 65534 65534 640 regular file 2",
    "hard 65534 65534 640 regular file 2",
    "link 1000 1001 777 symbolic link 1",
    "sub 0 0 1777 directory 2",
    "sub/g 1000 1001 4755 regular file 1",
    "fifo 1000 1001 620 fifo 1",
    "f",
    "hi",
]


def test_a_new_named_volume_is_filled_from_the_image(run, ctd, vimg):
    r = run("--rm", "-q", "-v", "named:/data", vimg, "sh", "-c", LISTING)
    assert r.code == 0, r.err
    assert r.out.splitlines() == EXPECTED
    data = run.data_root / ctd.namespace / "volumes" / "named" / "_data"
    assert os.getxattr(data / "f", "user.origin") == b"image"
    assert os.stat(data / "f").st_ino == os.stat(data / "hard").st_ino
    assert not [n for n in os.listdir(data.parent) if n.startswith(".")], os.listdir(data.parent)

    # a volume that has data is never overwritten, not even partly
    assert run("--rm", "-q", "-v", "named:/data", vimg, "sh", "-c", "echo mine > /data/f; rm /data/hard").code == 0
    r = run("--rm", "-q", "-v", "named:/data", vimg, "sh", "-c", "cat /data/f; ls /data")
    assert r.out.split() == ["mine", "f", "fifo", "link", "sub"]


def test_nocopy_and_a_path_the_image_lacks_give_an_empty_volume(run, vimg):
    r = run("--rm", "-q", "-v", "nc:/data:nocopy", vimg, "sh", "-c", "ls -A /data | wc -l")
    assert r.code == 0 and r.out.strip() == "0", (r.out, r.err)
    r = run("--rm", "-q", "--mount", "type=volume,src=nc2,dst=/data,volume-nocopy", vimg, "ls", "-A", "/data")
    assert r.code == 0 and r.out == "", (r.out, r.err)
    r = run("--rm", "-q", "-v", "other:/nowhere/in/image", vimg, "ls", "-A", "/nowhere/in/image")
    assert r.code == 0 and r.out == "", (r.out, r.err)
    # nocopy left nc empty; a later use without nocopy fills it, as Docker fills any empty volume
    r = run("--rm", "-q", "-v", "nc:/data", vimg, "cat", "/data/f")
    assert r.out == "hi\n", r.err


def test_copy_up_follows_symlinks_inside_the_image_only(run, bb):
    # busybox's /bin holds symlinks to /bin/busybox; /etc/passwd is a file. A volume on /etc gets /etc.
    r = run("--rm", "-q", "-v", "etcvol:/etc", bb, "cat", "/etc/passwd")
    assert r.code == 0 and "root:" in r.out, r.err


def test_an_image_volume_is_an_anonymous_volume_removed_with_rm_v(run, ctd, vimg):
    r = run("-q", "--name", "a", vimg, "sh", "-c", "cat /data/f; echo more > /data/new")
    assert r.code == 0 and r.out == "hi\n", r.err
    (m,) = inspect(run, "a")["Mounts"]
    assert HEX64.match(m["Name"]), m
    assert m["Type"] == "volume" and m["Destination"] == "/data" and m["Driver"] == "local" and m["RW"] is True
    assert m["Source"] == str(run.data_root / ctd.namespace / "volumes" / m["Name"] / "_data")
    assert "Propagation" in m
    assert volume_names(run) == [m["Name"]]
    vi = json.loads(run("volume", "inspect", m["Name"]).out)[0]
    assert vi["Labels"] == {"com.docker.volume.anonymous": ""} and vi["Mountpoint"] == m["Source"]

    # a -v at the VOLUME's path replaces it: no anonymous volume
    assert run("-q", "--name", "b", "-v", "keep:/data", vimg, "true").code == 0
    assert inspect(run, "b")["Mounts"][0]["Name"] == "keep"
    assert volume_names(run) == sorted([m["Name"], "keep"])

    assert run("rm", "b").code == 0  # no -v: the named volume stays anyway
    assert run("rm", "-v", "a").code == 0  # -v: the anonymous one goes
    assert volume_names(run) == ["keep"]


def test_rm_without_v_keeps_anonymous_volumes_and_rm_flag_removes_them(run, vimg, bb):
    assert run("-q", "--name", "a", vimg, "true").code == 0
    anon = inspect(run, "a")["Mounts"][0]["Name"]
    assert run("rm", "a").code == 0
    assert volume_names(run) == [anon]
    assert run("volume", "rm", anon).code == 0

    r = run("--rm", "-q", "-v", "named:/n", "-v", "/scratch", vimg, "sh", "-c", "ls /data /scratch")
    assert r.code == 0, r.err
    assert volume_names(run) == ["named"]
    # detached --rm: the logger's removal takes the anonymous volumes too
    assert run("-d", "--rm", "-q", "-v", "named:/n", vimg, "true").code == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (run("ps", "-a", "-q").lines or volume_names(run) != ["named"]):
        time.sleep(0.2)
    assert volume_names(run) == ["named"]


def test_volume_commands(run, bb):
    r = run("volume", "create", "--label", "team=db", "--label", "tier", "vol1")
    assert r.code == 0 and r.out == "vol1\n", r.err
    assert run("volume", "create", "vol1").code == 0  # the existing one, as Docker's local driver
    assert run("volume", "create", "vol2").code == 0
    doc = json.loads(run("volume", "inspect", "vol1").out)
    assert len(doc) == 1
    (v,) = doc
    assert v["Name"] == "vol1" and v["Driver"] == "local" and v["Scope"] == "local" and v["Options"] == {}
    assert v["Labels"] == {"team": "db", "tier": ""}
    assert v["Mountpoint"].endswith("/volumes/vol1/_data") and os.path.isdir(v["Mountpoint"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", v["CreatedAt"])
    r = run("volume", "inspect", "vol1", "nope")
    assert r.code != 0 and "no such volume: nope" in r.err

    recs = [json.loads(line) for line in run("volume", "ls", "--format", "json").lines]
    assert [(x["Name"], x["Driver"], x["Scope"]) for x in recs] == [("vol1", "local", "local"),
                                                                   ("vol2", "local", "local")]
    assert run("volume", "ls", "--format", "{{.Name}} {{.Driver}}").lines == ["vol1 local", "vol2 local"]
    assert run("volume", "ls", "-q", "--filter", "label=team=db").lines == ["vol1"]
    assert run("volume", "ls", "-q", "--filter", "name=2").lines == ["vol2"]

    # in use by a container in any state (created, exited): refused, and listed as not dangling
    assert run("create", "-q", "--name", "user1", "-v", "vol1:/x", bb, "true").code == 0
    assert run("volume", "ls", "-q", "--filter", "dangling=true").lines == ["vol2"]
    r = run("volume", "rm", "vol1")
    assert r.code != 0 and "in use" in r.err and "user1" in r.err and r.err.count("\n") <= 2, r.err
    assert volume_names(run) == ["vol1", "vol2"]
    assert run("volume", "rm", "vol2").out == "vol2\n"
    r = run("volume", "rm", "vol2")
    assert r.code != 0 and "no such volume" in r.err
    assert run("volume", "rm", "-f", "vol2").code == 0  # -f: a missing volume is no error

    # prune: unused anonymous volumes only; -a: every unused volume; never one in use
    assert run("-q", "--name", "anon", "-v", "/a", bb, "true").code == 0
    anon = inspect(run, "anon")["Mounts"][0]["Name"]
    assert run("rm", "anon").code == 0
    assert run("volume", "create", "unused").code == 0
    r = run("volume", "prune", "-f")
    assert r.code == 0 and r.lines == [anon], (r.out, r.err)
    assert volume_names(run) == ["unused", "vol1"]
    r = run("volume", "prune", input="n\n")  # asks first; anything but y keeps everything
    assert r.code == 0 and r.out == "" and volume_names(run) == ["unused", "vol1"]
    r = run("volume", "prune", "-a", "-f")
    assert r.lines == ["unused"]
    assert volume_names(run) == ["vol1"]
    assert run("rm", "user1").code == 0
    assert run("volume", "rm", "vol1").code == 0 and volume_names(run) == []


def test_volume_rm_force_removes_one_in_use(run, bb):
    assert run("create", "-q", "--name", "c", "-v", "held:/x", bb, "true").code == 0
    assert run("volume", "rm", "held").code != 0
    assert run("volume", "rm", "-f", "held").code == 0
    assert volume_names(run) == []


@pytest.mark.parametrize("spec", ["_bad:/x", "b@d:/x", "a:/x".replace("a", "x" * 300)])
def test_invalid_volume_names_are_one_clear_error_and_create_nothing(run, bb, spec):
    r = run("--rm", "-q", "-v", spec, bb, "true")
    assert r.code == 125, r.err
    assert r.err.startswith("ctk-run: error: ") and "Traceback" not in r.err and "OSError" not in r.err, r.err
    assert ("invalid characters" in r.err) or ("too long" in r.err), r.err
    assert volume_names(run) == []
    r = run("--rm", "-q", "--mount", f"type=volume,src={spec.split(':')[0]},dst=/x", bb, "true")
    assert r.code == 125 and "Traceback" not in r.err, r.err
    r = run("volume", "create", spec.split(":")[0])
    assert r.code == 2 and r.err.startswith("ctk-run: error: ") and "Traceback" not in r.err, r.err
    assert volume_names(run) == []


def test_a_copy_up_cut_short_is_redone(run, ctd, vimg):
    """What SIGKILL can leave: a temp tree beside _data (the copy was not moved in yet), or the pending marker
    with _data half filled (killed while moving in). The next use empties and copies again."""
    assert run("volume", "create", "cut").code == 0
    vdir = run.data_root / ctd.namespace / "volumes" / "cut"
    (vdir / ".copyup-tree-dead").mkdir()
    (vdir / ".copyup-tree-dead" / "f").write_text("half")
    (vdir / "copyup.pending").write_text("")
    (vdir / "_data" / "f").write_text("half")  # moved in before the kill; the rest was not
    r = run("--rm", "-q", "-v", "cut:/data", vimg, "sh", "-c", LISTING)
    assert r.code == 0 and r.out.splitlines() == EXPECTED, (r.out, r.err)
    assert sorted(os.listdir(vdir)) == ["_data", "volume.json"]


@pytest.mark.parametrize("who", ["group", "ctk-run alone"])
def test_a_copy_up_killed_by_sigkill_is_redone(containerd, ctd, run, bb, tmp_path, who):
    """A real SIGKILL while ctk-run copies a large directory into a new volume: of its process group (the
    copy is cut short and redone by the next use), or of ctk-run alone (its copy child finishes, holding the
    volume lock, and the next use waits for it instead of copying over it)."""
    import signal
    import subprocess

    ctx = tmp_path / "big"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {bb}\nRUN mkdir /big && cd /big && i=0; while [ $i -lt 3000 ]; do echo $i > f$i; "
        "i=$((i+1)); done; dd if=/dev/zero of=/big/zz bs=1M count=60 2>/dev/null\n")
    ref = f"localhost/vol/big:{secrets.token_hex(3)}"
    b = run("-q", "-t", ref, str(ctx), tool="ctk-build")
    assert b.code == 0, b.err
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}, **run.env}
    cmd = ["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "--rm", "-q", "-v",
           "big:/big", ref, "true"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    vdir = run.data_root / ctd.namespace / "volumes" / "big"
    deadline = time.monotonic() + 60
    copying = False
    while time.monotonic() < deadline and not copying:
        try:
            copying = any(n.startswith(".copyup-tree") for n in os.listdir(vdir))
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    if who == "group":
        os.killpg(p.pid, signal.SIGKILL)
    else:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert copying, "the copy-up was never seen in progress"
    if who == "group":
        assert len(os.listdir(vdir / "_data")) < 3001  # killed before the copy was complete
    r = run("--rm", "-q", "-v", "big:/big", ref, "sh", "-c", "ls /big | wc -l; cat /big/f2999; wc -c < /big/zz")
    assert r.code == 0, r.err
    assert r.out.split() == ["3001", "2999", str(60 << 20)], r.out


def test_redis_as_its_user_keeps_its_data_on_a_named_volume(containerd, ctd, run, real_images, tmp_path):
    """The issue's first report: redis runs as USER redis with -v dbdata:/var/lib/redis. The new volume is
    filled from the image (owned by redis), so SAVE works, and the data survives stop/start, rm and a new
    container on the same volume, and a containerd restart."""
    from .test_real_images import user_network

    image = real_images["redis"].ref
    with user_network(run, tmp_path) as net:
        def cli(*args: str, timeout: float = 0) -> str:
            end = time.monotonic() + timeout
            while True:
                r = run("--rm", "-q", "--network", net, image, "redis-cli", "-h", "db", *args)
                if (r.code == 0 and not r.out.startswith(("ERR", "Could not connect", "LOADING"))) \
                        or time.monotonic() > end:
                    break
                time.sleep(0.5)
            assert r.code == 0, f"redis-cli {' '.join(args)}: exit {r.code}: {r.err}"
            return r.out.strip()

        def server() -> None:
            r = run("-d", "-q", "--network", net, "--name", "db", "-v", "dbdata:/var/lib/redis", image)
            assert r.code == 0, r.err
            assert cli("ping", timeout=60) == "PONG"

        server()
        uid = int(run("exec", "db", "id", "-u").out)
        assert run("exec", "db", "id", "-un").out.strip() == "redis"
        data = run.data_root / ctd.namespace / "volumes" / "dbdata" / "_data"
        assert os.stat(data).st_uid == uid, "the new volume did not take the image's owner of /var/lib/redis"
        assert cli("set", "greeting", "first") == "OK"
        assert cli("save") == "OK"
        assert os.stat(data / "dump.rdb").st_uid == uid

        assert run("stop", "db").code == 0
        assert run("start", "db").code == 0
        assert cli("get", "greeting", timeout=30) == "first"

        assert cli("set", "greeting", "second") == "OK"
        assert run("stop", "db").code == 0  # redis saves on a clean shutdown
        assert run("rm", "-v", "db").code == 0  # -v: a named volume stays all the same
        assert "dbdata" in volume_names(run)
        server()  # a new container on the same volume: the data is there, not overwritten from the image
        assert cli("get", "greeting", timeout=30) == "second"

        containerd.restart()
        assert cli("get", "greeting", timeout=30) == "second"
        assert cli("save", timeout=10) == "OK"


def test_postgres_initialises_a_new_volume_and_keeps_a_table_across_rm(run, real_images, tmp_path):
    """postgres initialises its cluster in a new --mount volume (owned by postgres, from the image's copy-up),
    and a table outlives the container: rm, then a new container on the same volume."""
    from .test_real_images import PSQL, user_network

    image = real_images["postgres"].ref
    with user_network(run, tmp_path) as net:
        def psql(sql: str, timeout: float = 0) -> str:
            end = time.monotonic() + timeout
            while True:
                r = run("--rm", "-q", "--network", net, image, *PSQL, sql)
                if r.code == 0 or time.monotonic() > end:
                    break
                time.sleep(0.5)
            assert r.code == 0, f"{sql}: exit {r.code}: {r.err}"
            return r.out.strip()

        def server() -> None:
            r = run("-d", "-q", "--network", net, "--name", "db", "--mount",
                    "type=volume,src=pg,dst=/var/lib/postgresql/data", image)
            assert r.code == 0, r.err

        server()
        assert psql("select 1", timeout=90) == "1"
        psql("create table t (v text); insert into t values ('kept')")
        assert run("exec", "db", "stat", "-c", "%U", "/var/lib/postgresql/data/PG_VERSION").out.strip() == "postgres"
        assert run("stop", "db").code == 0
        assert run("rm", "db").code == 0
        server()
        assert psql("select v from t", timeout=60) == "kept"


def test_rm_v_keeps_an_anonymous_volume_named_by_another_container(run, vimg, bb):
    """Docker's rule: rm -v removes the volumes a container got without naming them; a container that names
    an (anonymous) volume with -v NAME:/dst does not take it away."""
    assert run("-q", "--name", "a", vimg, "true").code == 0
    anon = inspect(run, "a")["Mounts"][0]["Name"]
    assert run("-q", "--name", "b", "-v", f"{anon}:/d", bb, "cat", "/d/f").out == "hi\n"
    assert run("rm", "-v", "b").code == 0
    assert volume_names(run) == [anon]
    assert run("rm", "-v", "a").code == 0
    assert volume_names(run) == []


def test_ps_filter_volume_by_name_or_destination(run, bb):
    assert run("create", "-q", "--name", "one", "-v", "shared:/s", bb, "true").code == 0
    assert run("create", "-q", "--name", "two", "-v", "/anon", bb, "true").code == 0
    names = lambda *f: sorted(json.loads(x)["Names"] for x in run("ps", "-a", *f).lines)  # noqa: E731
    assert names("--filter", "volume=shared") == ["one"]
    assert names("--filter", "volume=/anon") == ["two"]
    assert names("--filter", "volume=nothing") == []


def test_two_concurrent_runs_on_one_new_volume_share_one_copy(containerd, ctd, run, vimg):
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}, **run.env}
    cmd = ["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, "--rm", "-q", "-v",
           "race:/data", vimg, "sh", "-c", "echo $$ >> /data/runs; cat /data/f"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o for o, _ in outs] == ["hi\n", "hi\n"]
    assert volume_names(run) == ["race"]
    vdir = run.data_root / ctd.namespace / "volumes"
    assert sorted(n for n in os.listdir(vdir) if not n.startswith(".lock")) == ["race"]
    assert sorted(os.listdir(vdir / "race")) == ["_data", "volume.json"]
    # both wrote into the same volume, and the later one's copy-up did not wipe the earlier one's line
    assert len((vdir / "race" / "_data" / "runs").read_text().split()) == 2


def test_disk_full_during_copy_up_is_one_error_and_no_container(containerd, ctd, bb, tmp_path):
    """A data root on a 4 MiB tmpfs, an image with 8 MiB under the volume's path: exit 125 with the reason,
    no container, the volume left empty (the next use copies again), nothing half copied left behind."""
    from tests.support.cli import tool_runner
    from tests.support.tmpfs import small_tmpfs

    with small_tmpfs(tmp_path / "small", "size=4m") as small:
        run = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=small / "d")
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {bb}\nRUN mkdir /big && dd if=/dev/zero of=/big/zz bs=1M count=8\n")
        ref = f"localhost/vol/full:{secrets.token_hex(3)}"
        b = run_tool("ctk-build", "-q", "-t", ref, str(ctx), address=containerd.address, namespace=ctd.namespace,
                     env={"CTK_DATA_ROOT": str(tmp_path / "data-build")})
        assert b.code == 0, b.err
        r = run("--rm", "-q", "-v", "full:/big", ref, "true")
        assert r.code == 125, r.err
        assert r.err.startswith("ctk-run: error: ") and "No space left on device" in r.err, r.err
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 2, r.err
        assert run("ps", "-a", "-q").lines == []
        vdir = small / "d" / ctd.namespace / "volumes" / "full"
        assert sorted(os.listdir(vdir)) == ["_data", "volume.json"]
        assert os.listdir(vdir / "_data") == []
        # with nocopy the same volume is usable; without, the next try fails the same way (never half filled)
        assert run("--rm", "-q", "-v", "full:/big:nocopy", ref, "ls", "-A", "/big").out == ""


# ---------------------------------------------------------------------- driver options (-o) and --volumes-from


def test_a_tmpfs_volume_is_a_sized_tmpfs_in_the_container(run, bb):
    r = run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=100m", "tv")
    assert r.code == 0 and r.out == "tv\n", r.err
    (v,) = json.loads(run("volume", "inspect", "tv").out)
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}
    r = run("--rm", "-q", "-v", "tv:/data", bb, "sh", "-c",
            "grep ' /data ' /proc/mounts; df -k /data | tail -n 1; echo x > /data/f && cat /data/f")
    assert r.code == 0, r.err
    mount, df, written = r.lines
    assert mount.split()[:3] == ["tmpfs", "/data", "tmpfs"], mount
    assert "size=102400k" in mount.split()[3].split(","), mount
    assert df.split()[1] == "102400", df
    assert written == "x"
    assert os.listdir(v["Mountpoint"]) == []  # the tmpfs held it, not the data root
    assert run("create", "-q", "--name", "t", "-v", "tv:/data", bb, "true").code == 0
    (m,) = inspect(run, "t")["Mounts"]
    assert (m["Type"], m["Name"], m["Destination"], m["RW"]) == ("volume", "tv", "/data", True)


def test_a_bind_volume_shows_the_host_directory(run, bb, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    r = run("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host}", "bv")
    assert r.code == 0, r.err
    (v,) = json.loads(run("volume", "inspect", "bv").out)
    assert v["Options"] == {"type": "none", "o": "bind", "device": str(host)}
    r = run("--rm", "-q", "-v", "bv:/data", bb, "sh", "-c", "cat /data/hello; echo back > /data/new")
    assert r.code == 0 and r.out == "from the host\n", (r.out, r.err)
    assert (host / "new").read_text() == "back\n"
    assert run("--rm", "-q", "-v", "bv:/data:ro", bb, "touch", "/data/x").code != 0


@pytest.mark.parametrize("opts,says", [
    (["-o", "foo=bar"], 'invalid option: "foo"'),
    (["-o", "novalue"], "KEY=VALUE"),
    (["-o", "type=tmpfs"], 'missing required option: "device"'),
    (["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=100m,bogus"], "bogus"),
    (["-o", "type=none", "-o", "o=bind", "-o", "device=/nonexistent/ctk-test"], "no such directory"),
    (["-o", "type=none", "-o", "device=/tmp"], "needs o=bind"),
    (["-o", "type=ext4", "-o", "device=/dev/null"], "'ext4' is not supported"),
])
def test_invalid_driver_options_are_one_clear_error_and_create_nothing(run, opts, says):
    r = run("volume", "create", *opts, "bad")
    assert r.code == 2 and says in r.err, (r.code, r.err)
    assert r.err.startswith("ctk-run: error: ") and "Traceback" not in r.err and r.err.count("\n") <= 2, r.err
    assert volume_names(run) == []


def test_volumes_from_takes_the_volumes_and_binds_of_a_container(run, bb, tmp_path):
    host = tmp_path / "b"
    host.mkdir()
    (host / "z").write_text("bind\n")
    assert run("create", "-q", "--name", "src", "-v", "named:/n", "-v", "/anon", "-v", f"{host}:/b:ro",
               "--tmpfs", "/t", bb, "true").code == 0
    assert run("--rm", "-q", "--volumes-from", "src", bb, "sh", "-c", "echo n > /n/x; echo a > /anon/y").code == 0
    r = run("--rm", "-q", "--volumes-from", "src", bb, "sh", "-c",
            "cat /n/x /anon/y /b/z; grep -c ' /t ' /proc/mounts; touch /b/no")
    assert r.lines[:4] == ["n", "a", "bind", "0"] and r.code != 0, (r.out, r.err)  # /b keeps its :ro
    # :ro makes every mount read-only; the user's own -v wins at the same destination
    r = run("--rm", "-q", "--volumes-from", "src:ro", "-v", "other:/n", bb, "sh", "-c",
            "ls -A /n | wc -l; cat /anon/y; touch /anon/no")
    assert r.lines[:2] == ["0", "a"] and r.code != 0, (r.out, r.err)
    # the second container uses the same volumes: removing them is refused; rm -v of the first keeps them
    # while another container uses them
    assert run("create", "-q", "--name", "dst", "--volumes-from", "src:rw", bb, "true").code == 0
    mounts = {m["Destination"]: m for m in inspect(run, "dst")["Mounts"]}
    assert mounts["/n"]["Name"] == "named" and mounts["/anon"]["Type"] == "volume" and mounts["/b"]["RW"]
    assert run("volume", "rm", "named").code != 0
    assert run("rm", "-v", "src").code == 0
    assert set(volume_names(run)) == {"named", "other", mounts["/anon"]["Name"]}
    assert run("rm", "-v", "dst").code == 0  # the anonymous volume goes with the last container, as in Docker
    assert set(volume_names(run)) == {"named", "other"}
    r = run("create", "-q", "--volumes-from", "nosuch", bb, "true")
    assert r.code != 0 and "nosuch" in r.err and "Traceback" not in r.err, r.err
    r = run("create", "-q", "--volumes-from", "dst:rx", bb, "true")
    assert r.code == 125 and "volumes-from" in r.err, r.err
