"""RUN --mount (cache, secret, bind, tmpfs) and --secret on the real containerd, as a user of BuildKit's
Dockerfile features sees them: caches that outlive builds, secrets that reach no layer, binds that leave
nothing behind, mounts in the cache key."""
from __future__ import annotations

import os
import secrets
import time

import pytest

from .conftest import build_killed_in_a_step, cached_steps, write

pytestmark = pytest.mark.integration


def _content_store_has(containerd, needle: bytes) -> list[str]:
    """The blobs of the daemon's content store that hold ``needle`` (layers, configs, cache records)."""
    hits = []
    root = containerd.base_dir / "root" / "io.containerd.content.v1.content"
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


def test_cache_mount_survives_between_builds_and_stays_out_of_the_image(build, run, bb, tmp_path, data_root):
    one = write(tmp_path / "one", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,target=/cache,id=c1 "
                                                 "echo first >> /cache/log\n"})
    assert build("--progress=plain", str(one)).code == 0
    two = write(tmp_path / "two", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,target=/cache,id=c1 "
                                                 "sh -c 'echo second >> /cache/log; cp /cache/log /seen'\n"})
    r = build("-q", "-t", "cached", str(two))
    assert r.code == 0, r.err
    out = run("--rm", "-q", "--network", "none", "cached", "sh", "-c", "cat /seen; test -e /cache || echo gone")
    assert out.code == 0 and out.out == "first\nsecond\ngone\n", out.out  # nor the mount point: no layer has it
    # another id is another cache
    other = write(tmp_path / "other", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,target=/cache,id=c2 "
                                                     "test ! -e /cache/log\n"})
    assert build("-q", str(other)).code == 0
    assert build("prune").code == 0  # prune empties the cache mounts too
    assert build("-q", "--no-cache", str(other)).code == 0
    assert build("-q", str(write(tmp_path / "gone", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,"
                                                     "target=/c,id=c1 test ! -e /c/log\n"}))).code == 0


def test_cache_mount_mode_uid_gid_and_spec_in_the_cache_key(build, bb, tmp_path):
    df = (f"FROM {bb}\nRUN --mount=type=cache,target=/c,id=perm,mode=0750,uid=1000,gid=1001 "
          "stat -c '%a %u %g' /c | tee /dev/stderr | grep -qx '750 1000 1001'\n")
    ctx = write(tmp_path / "ctx", {"Dockerfile": df})
    r = build("--progress=plain", str(ctx))
    assert r.code == 0, r.err
    again = build("--progress=plain", str(ctx))
    assert again.code == 0 and len(cached_steps(again.err)) == 1
    moved = write(tmp_path / "moved", {"Dockerfile": df.replace("target=/c,", "target=/c2,").replace(" /c ", " /c2 ")})
    m = build("--progress=plain", str(moved))
    assert m.code == 0 and cached_steps(m.err) == [], m.err  # another target: another key


def test_locked_cache_has_one_writer_at_a_time(build, bb, tmp_path):
    step = ("RUN --mount=type=cache,target=/c,id=lk,sharing=locked sh -c "
            "'if [ -e /c/busy ]; then echo CLASH; exit 1; fi; touch /c/busy; sleep 1; rm /c/busy; echo {n} > /done'")
    df = (f"FROM {bb} AS a\n{step.format(n='a')}\nFROM {bb} AS b\n{step.format(n='b')}\n"
          f"FROM {bb}\nCOPY --from=a /done /a\nCOPY --from=b /done /b\n")
    t0 = time.monotonic()
    r = build("--progress=plain", "--no-cache", str(write(tmp_path / "ctx", {"Dockerfile": df})))
    assert r.code == 0 and not [ln for ln in r.err.splitlines() if ln.endswith(" CLASH")], r.err
    assert time.monotonic() - t0 > 2  # the two one-second writers took turns


def test_killed_build_leaves_a_reusable_locked_cache(build, bb, tmp_path, containerd, ctd):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,target=/c,id=kill,"
                                                 "sharing=locked sh -c 'echo partial > /c/f; echo STARTED; sleep 300'\n"})
    with build_killed_in_a_step(containerd.address, ctd.namespace, build.env, "--progress=plain", str(ctx)):
        pass
    nxt = write(tmp_path / "next", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=cache,target=/c,id=kill,"
                                                  "sharing=locked grep -qx partial /c/f\n"})
    r = build("-q", str(nxt), timeout=120)
    assert r.code == 0, r.err  # the lock died with the killed build; the cache's files are there


def test_secret_is_usable_and_in_no_layer_history_record_or_output(build, run, bb, tmp_path, containerd, data_root):
    token = "tok-" + secrets.token_hex(16)
    src = tmp_path / "npmrc"
    src.write_text(token)
    df = (f"FROM {bb}\n"
          "RUN --mount=type=secret,id=npmrc test \"$(cat /run/secrets/npmrc)\" = " + token[:4] + "$(cut -c5- "
          "/run/secrets/npmrc) && stat -c '%a %u' /run/secrets/npmrc | grep -qx '400 0' && touch /used\n"
          "RUN --mount=type=secret,id=npmrc,target=/etc/npm.conf,mode=0440,uid=7 "
          "stat -c '%a %u' /etc/npm.conf | grep -qx '440 7' && cp /etc/npm.conf /copy-len && wc -c < /etc/npm.conf\n"
          "RUN --mount=type=secret,id=TOKVAR,env=TOK sh -c 'test -n \"$TOK\" && echo env-ok'\n")
    ctx = write(tmp_path / "ctx", {"Dockerfile": df})
    r = build("--progress=plain", "--secret", f"id=npmrc,src={src}", "--secret", "id=TOKVAR,env=MYTOK",
              "-t", "sec", str(ctx), env={"MYTOK": token})
    assert r.code == 0, r.err
    assert "env-ok" in r.err and token not in r.err
    chk = run("--rm", "-q", "--network", "none", "sec", "sh", "-c",
              "ls /used; ls -A /run/secrets 2>/dev/null | wc -l; test ! -e /etc/npm.conf && echo no-conf")
    assert chk.code == 0 and chk.out == "/used\n0\nno-conf\n", chk.out
    # the step copied it on purpose into /copy-len: that layer has it, as with BuildKit; no other blob does
    hits = _content_store_has(containerd, token.encode())
    assert len(hits) == 1, hits
    import tarfile

    with tarfile.open(hits[0]) as t:
        assert "copy-len" in t.getnames()
    for dirpath, _dirs, files in os.walk(data_root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    assert token.encode() not in f.read(), path
    assert not list((data_root / "build" / "secrets").iterdir())  # the step's tmpfs is gone
    insp = build("inspect", "sec", tool="ctk-pull")
    assert insp.code == 0 and token not in insp.out


def test_missing_secrets_fail_before_any_step(build, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo ran\n"
                                                 "RUN --mount=type=secret,id=needed,required cat /run/secrets/needed\n"})
    r = build("--progress=plain", "--secret", f"id=x,src={tmp_path}/nope", str(ctx))
    assert r.code == 1 and f"--secret id=x: {tmp_path}/nope: No such file or directory" in r.err, r.err
    assert "#1 " not in r.err
    r = build("--progress=plain", str(ctx))
    assert r.code == 1 and "Dockerfile:3: secret needed: not found" in r.err and "#1 " not in r.err, r.err
    optional = write(tmp_path / "opt", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=secret,id=maybe "
                                                      "test ! -e /run/secrets/maybe\n"})
    assert build("-q", str(optional)).code == 0  # not required: the step runs without it


def test_bind_from_stage_and_context_read_only_and_rw_discarded(build, run, bb, tmp_path):
    df = (f"FROM {bb} AS builder\nRUN mkdir /out && echo built > /out/app\n"
          f"FROM {bb}\n"
          "RUN --mount=type=bind,from=builder,source=/out,target=/mnt cp /mnt/app /app-copy\n"
          "RUN --mount=type=bind,from=builder,source=/out,target=/mnt sh -c 'touch /mnt/x 2>/dev/null && exit 9 "
          "|| echo read-only'\n"
          "RUN --mount=type=bind,from=builder,source=/out,target=/mnt,rw sh -c 'echo changed > /mnt/app; "
          "touch /mnt/new; cat /mnt/app > /rw-seen'\n"
          "RUN --mount=type=bind,from=builder,source=/out,target=/mnt cat /mnt/app > /after-rw\n"
          "RUN --mount=type=bind,target=/ctx cat /ctx/data.txt > /from-ctx\n"
          "RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'grep -q \" /scratch tmpfs\" /proc/mounts && "
          "echo t > /scratch/t'\n")
    ctx = write(tmp_path / "ctx", {"Dockerfile": df, "data.txt": "v1\n"})
    r = build("--progress=plain", "-t", "binds", str(ctx))
    assert r.code == 0, r.err
    assert "read-only" in r.err
    out = run("--rm", "-q", "--network", "none", "binds", "sh", "-c",
              "cat /app-copy /rw-seen /after-rw /from-ctx; test -e /mnt || test -e /scratch || echo no-mount-points")
    assert out.code == 0 and out.out == "built\nchanged\nbuilt\nv1\nno-mount-points\n", out.out
    (ctx / "data.txt").write_text("v2\n")  # a bind from the context: its content is in the key
    again = build("--progress=plain", "-t", "binds", str(ctx))
    assert again.code == 0
    reran = [s for s in cached_steps(again.err) if "/from-ctx" in s]
    assert reran == [], again.err
    out = run("--rm", "-q", "--network", "none", "binds", "cat", "/from-ctx")
    assert out.out == "v2\n"


@pytest.mark.parametrize("mount,message", [
    ("type=nope,target=/x", "unsupported mount type 'nope'"),
    ("type=cache", "needs a target"),
    ("type=bind,target=/x,mode=0700", "mode not allowed for 'bind' type mounts"),
    ("type=cache,target=/x,sharing=sometimes", "unsupported sharing value 'sometimes'"),
    ("type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
    ("type=secret,id=a,source=b", "both source and id can't be set"),
    ("type=cache,target=/x,bogus=1", "unexpected key 'bogus'"),
    ("type=bind,from=nosuchstage,target=/x", "no such stage"),
])
def test_bad_mounts_name_the_line(build, bb, tmp_path, mount, message):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN --mount={mount} true\n"})
    r = build(str(ctx))
    assert r.code == 1 and "Dockerfile:2:" in r.err and message in r.err and "Traceback" not in r.err, r.err


def test_ssh_agent_socket_is_bound_for_the_step_only(build, run, bb, tmp_path):
    import socket

    sock_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    try:
        df = (f"FROM {bb}\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /where\n"
              "RUN --mount=type=ssh,id=other,target=/agent test ! -e /agent\n")
        ctx = write(tmp_path / "ctx", {"Dockerfile": df})
        r = build("-q", "-t", "ssh", "--ssh", "default", str(ctx), env={"SSH_AUTH_SOCK": str(sock_path)})
        assert r.code == 0, r.err
        out = run("--rm", "-q", "--network", "none", "ssh", "sh", "-c", "cat /where; test -e /run/buildkit || echo clean")
        assert out.out == "/run/buildkit/ssh_agent.0\nclean\n", out.out
        need = write(tmp_path / "need", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=ssh,required true\n"})
        r = build("-q", str(need))
        assert r.code == 1 and "Dockerfile:2: ssh default: no agent given" in r.err, r.err
        r = build("-q", "--ssh", f"default={tmp_path}", str(ctx))
        assert r.code == 1 and "is not an agent socket" in r.err, r.err
    finally:
        server.close()


def test_cache_seeded_from_a_stage_and_private_instances(build, run, bb, tmp_path):
    step = ("RUN --mount=type=cache,target=/c,id=pv,sharing=private sh -c "
            "'ls /c > /seen-{n}; touch /c/{n}; sleep 3'")
    df = (f"FROM {bb} AS seed\nRUN mkdir /seed && echo seeded > /seed/x\n"
          f"FROM {bb} AS a\n{step.format(n='a')}\nFROM {bb} AS b\n{step.format(n='b')}\n"
          f"FROM {bb}\nRUN --mount=type=cache,target=/c,id=fromseed,from=seed,source=/seed cat /c/x > /got\n"
          "COPY --from=a /seen-a /\nCOPY --from=b /seen-b /\n")
    r = build("-q", "-t", "pv", str(write(tmp_path / "ctx", {"Dockerfile": df})))
    assert r.code == 0, r.err
    out = run("--rm", "-q", "--network", "none", "pv", "sh", "-c", "cat /got; cat /seen-a /seen-b | wc -l")
    # the two stages ran at once: each had an instance of its own, so neither saw the other's file
    assert out.out == "seeded\n0\n", out.out


def test_killed_build_leaves_no_secret_tmpfs_once_the_next_build_ran(build, bb, tmp_path, containerd, ctd, data_root):
    (tmp_path / "s").write_text("killed-secret")
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN --mount=type=secret,id=s "
                                                 "sh -c 'echo STARTED; sleep 300'\n"})
    with build_killed_in_a_step(containerd.address, ctd.namespace, build.env, "--progress=plain",
                                "--secret", f"id=s,src={tmp_path / 's'}", str(ctx)):
        pass
    secrets_root = str(data_root / "build" / "secrets")

    def mounted():
        with open("/proc/self/mounts") as f:
            return [ln.split()[1] for ln in f if ln.split()[1].startswith(secrets_root)]

    assert len(mounted()) == 1  # the killed step's tmpfs is still there
    assert build("prune").code == 0  # the next ctk-build removes the dead step, its tmpfs with it
    assert mounted() == [] and not list((data_root / "build" / "secrets").iterdir())
