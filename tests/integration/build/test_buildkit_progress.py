"""--progress (plain, tty, quiet, rawjson, auto), --iidfile and --label as a user sees them."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.support.ptys import read_terminal

from .conftest import cached_steps, write

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(tmp_path, bb):
    return write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo hello-from-run && sleep 0.3\n"
                                                  "COPY a.txt /a.txt\nENV X=1\n", "a.txt": "A\n"})


def test_plain_shows_numbered_steps_output_and_timings(build, ctx):
    r = build("--progress=plain", "--no-cache", "-t", "app", str(ctx))
    assert r.code == 0, r.err
    assert "\x1b" not in r.err  # no terminal codes when not drawing
    m = re.search(r"^#(\d+) \[2/3\] RUN echo hello-from-run && sleep 0.3$", r.err, re.M)
    assert m, r.err
    n = m.group(1)
    assert re.search(rf"^#{n} \d+\.\d{{3}} hello-from-run$", r.err, re.M), r.err
    assert re.search(rf"^#{n} DONE (0\.[3-9]|[1-9]\d*\.\d)s$", r.err, re.M), r.err  # it slept 0.3 s
    assert re.search(r"^#\d+ \[3/3\] COPY a.txt /a.txt$", r.err, re.M)
    # every line belongs to a step (the base image's pull logs under its FROM), but the closing summary
    assert all(ln.startswith(("#", "built ")) for ln in r.err.splitlines() if ln), r.err
    assert r.lines and r.lines[0].startswith("docker.io/library/app:latest@sha256:")
    again = build("--progress=plain", "-t", "app", str(ctx))
    assert again.code == 0 and [c.split("] ", 1)[1] for c in cached_steps(again.err)] == [
        "RUN echo hello-from-run && sleep 0.3", "COPY a.txt /a.txt"]
    assert "hello-from-run\n" not in again.err  # a cached RUN does not run


def test_auto_without_a_terminal_is_plain(build, ctx):
    r = build("--no-cache", str(ctx))
    assert r.code == 0 and "\x1b" not in r.err and re.search(r"^#\d+ DONE ", r.err, re.M), r.err


def test_quiet_shows_nothing_but_the_ref(build, ctx):
    for flag in ("--progress=quiet", "-q"):
        r = build(flag, "--no-cache", "-t", "app", str(ctx))
        assert r.code == 0 and r.err == "" and len(r.lines) == 1 and "@sha256:" in r.lines[0], r.err


def test_failed_step_is_marked_in_plain(build, bb, tmp_path):
    ctx = write(tmp_path / "bad", {"Dockerfile": f"FROM {bb}\nRUN echo before-fail && exit 4\n"})
    r = build("--progress=plain", str(ctx))
    assert r.code == 1
    n = re.search(r"^#(\d+) \[2/2\] RUN", r.err, re.M).group(1)
    assert re.search(rf"^#{n} ERROR: .*exit code 4$", r.err, re.M), r.err
    assert "ctk-build: error: Dockerfile:2: RUN echo before-fail && exit 4: exit code 4" in r.err


def test_rawjson_is_one_json_event_per_line(build, ctx):
    r = build("--progress=rawjson", "--no-cache", str(ctx))
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.err.splitlines()]
    names = {v["name"] for e in events for v in e.get("vertexes", [])}
    assert any("RUN echo hello-from-run" in n for n in names)
    import base64

    logs = "".join(base64.b64decode(lg["data"]).decode() for e in events for lg in e.get("logs", []))
    assert "hello-from-run\n" in logs


def _on_a_terminal(build, where, args, timeout=120):
    """Run ctk-build with stderr on a pseudo-terminal; returns (exit code, stdout, what the terminal got)."""
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env.update(build.env)
    env["TERM"] = "xterm"
    cmd = ["ctk-build", "--address", where[0], "--namespace", where[1], *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    got = read_terminal(master, p, timeout=timeout)
    out = p.stdout.read().decode()  # type: ignore[union-attr]
    p.wait(timeout=10)
    os.close(master)
    return p.returncode, out, got.decode(errors="replace")


def test_tty_is_a_live_view_redrawn_in_place(build, ctx, containerd, ctd):
    where = (containerd.address, ctd.namespace)
    code, out, screen = _on_a_terminal(build, where, ["--no-cache", "-t", "app", str(ctx)])
    assert code == 0, screen
    assert out.startswith("docker.io/library/app:latest@sha256:")  # stdout keeps the ref only
    assert "\x1b[" in screen  # redrawn in place
    frames = screen.count("[+] Building")
    assert frames >= 3, screen  # the 0.3 s RUN spans several redraws
    assert re.search(r"\[\+\] Building \d+\.\ds \(3/3\) FINISHED", screen), screen
    assert re.search(r" => \[2/3\] RUN echo hello-from-run && sleep 0.3 +\d+\.\ds", screen)
    assert " => => # hello-from-run" in screen  # the running step's last output lines
    again_code, _, again = _on_a_terminal(build, where, ["-t", "app", str(ctx)])
    assert again_code == 0 and " => CACHED [2/3] RUN echo hello-from-run" in again


def test_iidfile_and_labels(build, ctd, ctx, tmp_path):
    iid = tmp_path / "out" / "iid"
    iid.parent.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("old")
    os.symlink(target, iid)
    ino = target.stat().st_ino
    r = build("-q", "--iidfile", str(iid), "--label", "org.opencontainers.image.source=https://x.example/r",
              "--label", "b=two=2", "--format", "json", "-t", "lab", str(ctx))
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert target.read_text() == rec["Config"] and rec["Config"].startswith("sha256:")
    assert iid.is_symlink() and target.stat().st_ino != ino  # replaced whole (atomic), never truncated in place
    from ctk_shared import images as store

    img = store.load_local(ctd, "docker.io/library/lab:latest")
    labels = img.config.raw["config"]["Labels"]
    assert labels["org.opencontainers.image.source"] == "https://x.example/r" and labels["b"] == "two=2"
    bad = build("-q", "--iidfile", "-", str(ctx))
    assert bad.code == 2 and "stdout" in bad.err
