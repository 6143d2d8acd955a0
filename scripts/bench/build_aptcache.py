"""apt-get install through RUN cache mounts, warm cache: ctk-build vs buildah bud, same run (as root).

``python3 -m scripts.bench.build_aptcache [--runs N]``

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
    args = ap.parse_args()
    require_buildah()
    with bench_stack("build-apt", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.197") as env:
        return _measure(args.runs, base, daemon, reg, env, args.log)


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


def _measure(runs: int, base, daemon, reg, env: dict[str, str], log: str | None) -> int:  # type: ignore[no-untyped-def]
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
    _timed_logged(cmds["ctk"], env, log, "warm-up")  # fills the cache mounts (and the page cache)
    timed(cmds["ctk_network_host"], env)
    _timed_logged(cmds["buildah_layers"], env, log, "buildah-warm-up")
    times: dict[str, list[float]] = {who: [] for who in cmds}
    cpu: dict[str, list[float]] = {who: [] for who in cmds}
    loads = [os.getloadavg()[0]]
    for i in range(runs):
        order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
        for who in order:
            before = _children_cpu()
            times[who].append(_timed_logged(cmds[who], env, log, f"{who}-{i}"))
            cpu[who].append(_children_cpu() - before)
        loads.append(os.getloadavg()[0])
    med = {who: round(statistics.median(v), 3) for who, v in times.items()}
    print(json.dumps({"runs": runs, "buildah_storage": bh[bh.index("--storage-driver") + 1], "median_s": med,
                      # user+sys CPU of the command's process tree: ctk-build and the hooks it starts (not
                      # containerd, runc, or apt inside the step's task); all of buildah and its steps' apt
                      "median_client_cpu_s": {who: round(statistics.median(v), 3) for who, v in cpu.items()},
                      "load_average_1min": [round(x, 1) for x in loads],
                      "runs_s": {who: [round(t, 2) for t in v] for who, v in times.items()},
                      # on a loaded shared machine the fastest run of each is the steadier comparison
                      "ratio_min_ctk_vs_buildah_layers": round(min(times["ctk"]) / min(times["buildah_layers"]), 3),
                      "ratio_ctk_vs_buildah_layers": round(med["ctk"] / med["buildah_layers"], 3),
                      "ratio_ctk_network_host_vs_buildah_layers":
                          round(med["ctk_network_host"] / med["buildah_layers"], 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
