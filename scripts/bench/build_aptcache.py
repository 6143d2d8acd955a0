"""apt-get install through RUN cache mounts, warm cache: ctk-build vs buildah bud, same run (as root).

``python3 -m scripts.bench.build_aptcache [--runs N] [--log DIR] [--baseline DIR]``

The real Debian image (scripts/images, built by ctk-build from the cached root filesystem and pushed to the
bench registry, pulled by buildah from there), the machine's apt sources copied into the context (as
scripts/demo does), and this Dockerfile::

    FROM debian
    COPY apt-sources/ /etc/apt/sources.list.d/
    RUN rm -f /etc/apt/apt.conf.d/docker-clean
    RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\
        --mount=type=cache,target=/var/lib/apt,sharing=locked \\
        apt-get update && apt-get install -y --no-install-recommends hello

A warm-up build of each tool fills its cache mounts; then each run is ``--no-cache`` (every step runs
again, the cache mounts are kept), ``buildah bud --layers --no-cache`` (a commit per step, as ctk-build),
alternating the order. ctk-build's RUN steps join a private bridge (its default network), buildah's
``--isolation chroot`` steps use the host's network; ``ctk_network_host`` (``--network host``) shows the
bridge's share. Prints JSON with medians and the ratio ctk / buildah.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from scripts.bench.build import _buildah_storage, _children_cpu, require_buildah
from scripts.bench.timing import bench_stack, bridged_env, timed, tool

APT_CACHE = ("--mount=type=cache,target=/var/cache/apt,sharing=locked "
             "--mount=type=cache,target=/var/lib/apt,sharing=locked")
DOCKERFILE = f"""\
FROM {{base}}
COPY apt-sources/ /etc/apt/sources.list.d/
RUN rm -f /etc/apt/apt.conf.d/docker-clean
RUN {APT_CACHE} apt-get update -q -o APT::Sandbox::User=root && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o APT::Sandbox::User=root hello
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--log", metavar="DIR", help="keep ctk-build's --progress=plain output of every run there")
    ap.add_argument("--baseline", metavar="DIR", help="also time ctk_base: ctk-build with another tree's ctk_build "
                    "first on PYTHONPATH (git archive REV tools/build | tar -x -C D; then --baseline D/tools/build)")
    args = ap.parse_args()
    require_buildah()
    with bench_stack("build-apt", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.197") as env:
        return _measure(args.runs, base, daemon, reg, env, args.log, args.baseline)


def _timed_logged(cmd: list[str], env: dict[str, str], log: str | None, name: str) -> float:
    """``timed``, or with ``log`` the command's output (ctk-build's --progress=plain, buildah's step output,
    each line with the seconds since the start) kept in ``LOG/NAME.log``."""
    if not log:
        return timed(cmd, env)
    import time

    ctk = not name.startswith("buildah")
    argv = [*(c for c in cmd[:-1] if c != "-q"), *(["--progress=plain"] if ctk else []), cmd[-1]]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert p.stdout is not None
    lines = [f"{time.perf_counter() - t0:8.3f} {raw.decode(errors='replace')}" for raw in p.stdout]
    if p.wait() != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: {''.join(lines[-5:])}")
    took = time.perf_counter() - t0
    os.makedirs(log, exist_ok=True)
    with open(os.path.join(log, f"{name}.log"), "w") as f:
        f.writelines(lines)
    return took


def _phases(path: str) -> dict[str, float]:
    """Seconds of each phase of one logged build (``--log``): start-up before the FROM line, the COPY step, the
    one-line RUN, the apt step from its last output line to its layer (the end of dpkg, the task's exit and
    delete, the layer), and from that layer to the printed image (image record, cache records, detach)."""
    import re

    marks: dict[str, float] = {}
    out = 0.0
    for line in open(path):
        stamp, _, text = line.strip().partition(" ")
        if not stamp.replace(".", "").isdigit():
            continue
        t = float(stamp)
        step = re.match(r"(?:#(\d) (\[|DONE)|STEP (\d)/|(-->)|(built |[0-9a-f]{64}$))", text)
        if step is None:
            if "step4" in marks and "done4" not in marks and text and not text.startswith(("#4 layer", "COMMIT")):
                out = t  # the apt step's output (buildah's lines as they are, ctk's as "#4 SECONDS LINE")
        elif step.group(1) or step.group(3):  # a step starts or ends (ctk #N [..] / #N DONE; buildah STEP N/)
            n = step.group(1) or step.group(3)
            marks.setdefault(f"step{n}" if step.group(2) != "DONE" else f"done{n}", t)
        elif step.group(4):
            marks[f"done{sum(k.startswith('done') for k in marks) + 2}"] = t
        elif "end" not in marks:
            marks["end"] = t
    return {"start-up": marks["step1"], "COPY": marks["done2"] - marks["step2"],
            "RUN rm": marks["done3"] - marks["step3"], "apt output->layer": marks["done4"] - out,
            "layer->image": marks["end"] - marks["done4"], "total": marks["end"]}


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of one running process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(runs: int, base, daemon, reg, env: dict[str, str], log: str | None,  # type: ignore[no-untyped-def]
             baseline: str | None = None) -> int:
    from scripts.images.make import build_image

    ref = f"{reg.host}/bench/debian:latest"
    build_image("debian", ref, base / "debian-context", address=daemon.address, namespace="bench", push=True,
                quiet=True, env=env)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=ref))
    subprocess.run([sys.executable, "-m", "scripts.images", "sources", str(ctx / "apt-sources")], check=True,
                   stdout=subprocess.DEVNULL)
    bh = _buildah_storage(base / "buildah")
    subprocess.run([*bh, "pull", "--tls-verify=false", "-q", ref], check=True, stdout=subprocess.DEVNULL)
    cmds = {"ctk": [tool("ctk-build"), "--address", daemon.address, "-n", "bench", "-q", "--no-cache",
                    "-t", "apt", str(ctx)],
            "ctk_network_host": [tool("ctk-build"), "--address", daemon.address, "-n", "bench", "-q", "--no-cache",
                                 "--network", "host", "--allow", "network.host", "-t", "apt", str(ctx)],
            "buildah_layers": [*bh, "bud", "--isolation", "chroot", "--tls-verify=false", "-q", "--layers",
                               "--no-cache", "-t", "apt", str(ctx)]}
    envs = {who: env for who in cmds}
    if baseline:
        cmds["ctk_base"] = cmds["ctk"]
        envs["ctk_base"] = {**env, "PYTHONPATH": os.path.abspath(baseline)}
    _timed_logged(cmds["ctk"], env, log, "warm-up")  # fills the cache mounts (and the page cache)
    timed(cmds["ctk_network_host"], env)
    if baseline:
        timed(cmds["ctk_base"], envs["ctk_base"])  # (and compiles the other tree's bytecode once)
    _timed_logged(cmds["buildah_layers"], env, log, "buildah-warm-up")
    times: dict[str, list[float]] = {who: [] for who in cmds}
    cpu: dict[str, list[float]] = {who: [] for who in cmds}
    ctd_cpu: dict[str, list[float]] = {who: [] for who in cmds}
    loads = [os.getloadavg()[0]]
    for i in range(runs):
        order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
        for who in order:
            before, ctd_before = _children_cpu(), _process_cpu(daemon.proc.pid)
            times[who].append(_timed_logged(cmds[who], envs[who], log, f"{who}-{i}"))
            cpu[who].append(_children_cpu() - before)
            ctd_cpu[who].append(_process_cpu(daemon.proc.pid) - ctd_before)
        loads.append(os.getloadavg()[0])
    med = {who: round(statistics.median(v), 3) for who, v in times.items()}
    phases: dict[str, dict[str, float]] = {}
    if log:  # median seconds per phase, from the logged timelines
        for who in cmds:
            rows = [_phases(os.path.join(log, f"{who}-{i}.log")) for i in range(runs)]
            phases[who] = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    print(json.dumps({"runs": runs, "buildah_storage": bh[bh.index("--storage-driver") + 1], "median_s": med,
                      # user+sys CPU of the command's process tree: ctk-build and the hooks it starts (not
                      # containerd, runc, or apt inside the step's task); all of buildah and its steps' apt
                      "median_client_cpu_s": {who: round(statistics.median(v), 3) for who, v in cpu.items()},
                      # containerd's own CPU during each command (its diff service walked both trees for every
                      # ctk layer before ctk-build tarred the upper directory itself); buildah does not use it
                      "median_containerd_cpu_s": {who: round(statistics.median(v), 3)
                                                  for who, v in ctd_cpu.items() if who.startswith("ctk")},
                      **({"median_phase_s": phases} if phases else {}),
                      "load_average_1min": [round(x, 1) for x in loads],
                      "runs_s": {who: [round(t, 2) for t in v] for who, v in times.items()},
                      # on a loaded shared machine the fastest run of each is the steadier comparison
                      "ratio_min_ctk_vs_buildah_layers": round(min(times["ctk"]) / min(times["buildah_layers"]), 3),
                      "ratio_ctk_vs_buildah_layers": round(med["ctk"] / med["buildah_layers"], 3),
                      **({"ratio_ctk_vs_ctk_base": round(med["ctk"] / med["ctk_base"], 3)} if baseline else {}),
                      "ratio_ctk_network_host_vs_buildah_layers":
                          round(med["ctk_network_host"] / med["buildah_layers"], 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
