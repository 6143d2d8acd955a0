"""Launchers vs pip's console scripts (issue 20), interleaved on one private stack (as root):
``python3 -m scripts.bench.launchers [--runs N]``.

The same command through pip's script beside the interpreter (``site`` and every ``.pth`` file at start-up)
and through the launcher scripts/setup installs (``$CTK_BIN_DIR``, /usr/local/bin: ``python -SP``, see
ctk_shared.launchers), alternating the order each run, with the CPU seconds of each command's process tree
(load-robust on the shared machine) beside the wall medians: ``--version``, a cached ``ctk-build`` rebuild
(the build.sh context; ``buildah bud --layers`` as the peer of both) and ``ctk-run --rm --network none``
(``ctr run --rm`` as the peer). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.build import _buildah_storage, bench_context
from scripts.bench.timing import bench_stack, tool


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _ab(runs: int, cmds: dict[str, list[str]], env: dict[str, str]) -> dict[str, dict[str, float]]:
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd in cmds.values():  # warm-up
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in range(runs):
        order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
        for who in order:
            c0, t0 = _cpu(), time.perf_counter()
            subprocess.run(cmds[who], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall[who].append(time.perf_counter() - t0)
            cpu[who].append(_cpu() - c0)
    return {who: {"wall_s": round(statistics.median(wall[who]), 4), "cpu_s": round(statistics.median(cpu[who]), 4)}
            for who in cmds}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    pip_bin = Path(sys.executable).parent
    launched = {n: tool(n) for n in ("ctk-run", "ctk-build", "ctk-pull")}
    if any(Path(p).parent == pip_bin for p in launched.values()):
        raise SystemExit(f"no launchers installed ({launched}): run scripts/setup first")
    report: dict[str, object] = {"runs": args.runs, "launchers": launched, "load_average_1min": [os.getloadavg()[0]]}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    report["version"] = _ab(args.runs, {"pip": [str(pip_bin / "ctk-run"), "--version"],
                                        "launcher": [launched["ctk-run"], "--version"]}, env)
    with bench_stack("launchers") as (base, daemon, reg):
        env["CTK_DATA_ROOT"] = str(base / "data")
        g = ["--address", daemon.address, "-n", "bench"]
        ref, ctx = bench_context(base, reg)
        subprocess.run([launched["ctk-pull"], *g, "-q", ref], check=True, stdout=subprocess.DEVNULL, env=env)
        bh = _buildah_storage(base / "buildah")
        subprocess.run([*bh, "pull", "--tls-verify=false", "-q", ref], check=True, stdout=subprocess.DEVNULL)
        build = ["-q", "-t", "bench", str(ctx)]
        report["cached_build"] = _ab(args.runs, {
            "pip": [str(pip_bin / "ctk-build"), *g, *build], "launcher": [launched["ctk-build"], *g, *build],
            "buildah_layers": [*bh, "bud", "--isolation", "chroot", "--tls-verify=false", "-q", "--layers", "-t",
                               "bench", str(ctx)]}, env)
        report["load_average_1min"].append(os.getloadavg()[0])  # type: ignore[attr-defined]
        bb = ref  # the busybox base, pulled and unpacked by ctk-pull: ctr runs the same image
        run = ["--rm", "-q", "--network", "none", bb, "true"]
        report["run_rm"] = _ab(args.runs, {
            "pip": [str(pip_bin / "ctk-run"), *g, *run], "launcher": [launched["ctk-run"], *g, *run],
            "ctr": ["ctr", "--address", daemon.address, "-n", "bench", "run", "--rm", bb, "bench-ctr", "true"]}, env)
        report["load_average_1min"].append(os.getloadavg()[0])  # type: ignore[attr-defined]
    for what, peer in (("version", None), ("cached_build", "buildah_layers"), ("run_rm", "ctr")):
        r: dict[str, dict[str, float]] = report[what]  # type: ignore[assignment]
        r["ratios"] = {"launcher_vs_pip_wall": round(r["launcher"]["wall_s"] / r["pip"]["wall_s"], 3),
                       "launcher_vs_pip_cpu": round(r["launcher"]["cpu_s"] / r["pip"]["cpu_s"], 3)}
        if peer:
            r["ratios"].update({f"pip_vs_{peer}_wall": round(r["pip"]["wall_s"] / r[peer]["wall_s"], 3),
                                f"launcher_vs_{peer}_wall": round(r["launcher"]["wall_s"] / r[peer]["wall_s"], 3),
                                f"launcher_vs_{peer}_cpu": round(r["launcher"]["cpu_s"] / r[peer]["cpu_s"], 3)})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
