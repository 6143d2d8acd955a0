"""arm64 build benchmark (issue 19): ``ctk-build --platform linux/arm64`` vs ``buildah bud --platform linux/arm64``
of the same Dockerfile, same run, alternating order. Run as root after scripts/setup (QEMU registered).

The base is the real Debian arm64 image of scripts/images (``debian-arm64``: mmdebstrap under QEMU, cached
under .cache/images; a cold cache adds ~2.5 min once), pushed to the bench's registry; buildah pulls it from
there into its own storage. Two RUN steps run under QEMU user emulation: a loop of 200 shell forks writing
files, and a dpkg query. Cold builds: ``ctk-build --no-cache --network none`` vs ``buildah bud`` (one commit at the end) and
``buildah bud --layers --no-cache`` (a commit per step, as ctk-build does).

Usage: python3 -m scripts.bench.build_arm64 [--runs N]   (prints JSON: medians, ratios, load average)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from scripts.bench.build import _buildah_storage, require_buildah
from scripts.bench.timing import bench_stack, bridged_env, timed, tool

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /data && for i in $(seq 1 200); do echo "line $i $(uname -m)" > /data/f$i; done
RUN dpkg-query -W -f '${{Package}} ${{Architecture}}\\n' > /packages.txt && uname -m > /arch
ENV APP=bench
CMD ["bash"]
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    require_buildah()
    from ctk_build.platforms import emulator_problem
    from ctk_shared.oci import Platform

    problem = emulator_problem(Platform.parse("linux/arm64"))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    with bench_stack("build-arm64", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.197") as env:
        return _measure(args.runs, base, daemon, reg, env)


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    from scripts.images.make import build_image

    ref = f"{reg.host}/bench/debian-arm64:latest"
    build_image("debian-arm64", ref, base / "base-context", address=daemon.address, namespace="bench", push=True,
                quiet=True, env=env)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=ref))
    ctk = [tool("ctk-build"), "--address", daemon.address, "-n", "bench"]
    bh = _buildah_storage(base / "buildah")
    subprocess.run([*bh, "pull", "--platform", "linux/arm64", "--tls-verify=false", "-q", ref], check=True,
                   stdout=subprocess.DEVNULL)
    bud = [*bh, "bud", "--platform", "linux/arm64", "--isolation", "chroot", "--tls-verify=false", "-q"]
    cmds = {
        # --network none: buildah --isolation chroot sets up no network for its steps either
        "ctk": ctk + ["-q", "--no-cache", "--network", "none", "--platform", "linux/arm64", "-t", "bench-arm64",
                      str(ctx)],
        "buildah": bud + ["-t", "bench-arm64", str(ctx)],
        "buildah_layers": bud + ["--layers", "--no-cache", "-t", "bench-arm64", str(ctx)],
    }
    for cmd in cmds.values():  # warm-up: page cache, the base unpacked in both stores
        timed(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    loads = [load()]
    for i in range(runs):
        order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
        for who in order:
            times[who].append(timed(cmds[who], env))
        loads.append(load())
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    report = {
        "runs": runs,
        "commands": {k: " ".join(v) for k, v in cmds.items()},
        "median_s": med,
        "all_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ratio_ctk_vs_buildah": round(med["ctk"] / med["buildah"], 3),
        "ratio_ctk_vs_buildah_layers": round(med["ctk"] / med["buildah_layers"], 3),
        "load_average_1_5_15": loads,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
