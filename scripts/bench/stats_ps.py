"""`ctk-run ps` with 100 running containers (target 0.3 s) and `ctk-run stats --no-stream` with 30 (target 0.5 s).

The peer in the same run is ctr, containerd's own Go CLI, on the same containerd: `ctr task ls` (one listing RPC,
no per-container work; the floor a listing command can reach) for ps, and `ctr task metrics ID` of one container
(one Metrics RPC, what a one-container stats costs a Go client) for stats. Containers are busybox `sleep` with
`--network none`; the stats set also has one CPU hog, so CPU % is not all zeros.

Wall-clock medians, plus the median CPU time of the ctk process (``ctk_cpu_s``) and the floor (both commands on
an empty namespace): when other work loads the machine, the wall time mostly measures the wait for a CPU.

Usage: sudo python3 -m scripts.bench.stats_ps [--runs N] [--containers 100] [--stats 30]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from scripts.bench.timing import bench_stack, push_busybox, timed, tool


def _median(cmd: list[str], env: dict[str, str], runs: int) -> float:
    timed(cmd, env)  # warm the page cache
    return round(statistics.median(timed(cmd, env) for _ in range(runs)), 3)


def _cpu_median(cmd: list[str], env: dict[str, str], runs: int) -> float:
    """Median CPU seconds (user + system) of ``cmd``: on a machine shared with other work this moves far less
    than the wall time, and on an idle 2-core machine the wall time of these single-threaded commands is
    close to it (plus the short waits on containerd and, for stats, the 0.15 s sampling window)."""
    import resource

    def one() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        timed(cmd, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(statistics.median(one() for _ in range(runs)), 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--containers", type=int, default=100, help="running containers for ps")
    ap.add_argument("--stats", type=int, default=30, help="running containers for stats (the rest are killed)")
    args = ap.parse_args()
    with bench_stack("stats-ps") as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        ctr = ["ctr", "-a", daemon.address, "-n", "bench"]
        ref = push_busybox(base, reg)
        subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        ids = []
        report: dict[str, object] = {"runs": args.runs, "containers": args.containers}
        # the floor of both commands: start-up and the RPCs on a namespace without containers
        empty = [tool("ctk-run"), "--address", daemon.address, "-n", "bench-empty"]
        report["empty_namespace_s"] = {"ps": _median(empty + ["ps"], env, args.runs),
                                       "stats": _median(empty + ["stats", "--no-stream"], env, args.runs),
                                       "ps_cpu": _cpu_median(empty + ["ps"], env, args.runs)}
        try:
            t0 = time.monotonic()
            for i in range(args.containers):
                cmd = ["sh", "-c", "while :; do :; done"] if i == 0 else ["sleep", "3600"]
                r = subprocess.run(ctk + ["-d", "-q", "--network", "none", "--name", f"c{i}", ref, *cmd],
                                   capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    raise SystemExit(f"container c{i} did not start: {r.stderr.strip()}")
                ids.append(r.stdout.strip())
            print(f"{args.containers} containers started in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            rows = subprocess.run(ctk + ["ps"], check=True, capture_output=True, text=True, env=env).stdout.splitlines()
            assert len(rows) == args.containers, len(rows)
            ps = _median(ctk + ["ps"], env, args.runs)
            ctr_ps = _median(ctr + ["task", "ls"], env, args.runs)
            report["ps"] = {"ctk_s": ps, "ctr_task_ls_s": ctr_ps, "ratio_vs_ctr": round(ps / ctr_ps, 2),
                            "target_s": 0.3, "ctk_cpu_s": _cpu_median(ctk + ["ps"], env, args.runs)}
            # keep args.stats running (the CPU hog among them), kill the rest
            subprocess.run(ctk + ["kill", *ids[args.stats:]], check=True, capture_output=True, env=env)
            rows = subprocess.run(ctk + ["stats", "--no-stream"], check=True, capture_output=True, text=True,
                                  env=env).stdout.splitlines()
            assert len(rows) == args.stats, len(rows)
            hog = next(json.loads(r) for r in rows if json.loads(r)["Name"] == "c0")
            st = _median(ctk + ["stats", "--no-stream"], env, args.runs)
            ctr_st = _median(ctr + ["task", "metrics", ids[0]], env, args.runs)
            report["stats"] = {"ctk_s": st, "ctr_task_metrics_one_s": ctr_st, "ratio_vs_ctr": round(st / ctr_st, 2),
                               "target_s": 0.5, "running": args.stats, "cpu_hog_row": hog,
                               "ctk_cpu_s": _cpu_median(ctk + ["stats", "--no-stream"], env, args.runs)}
        finally:  # never leave containers running, whatever failed
            subprocess.run(ctk + ["rm", "-f", *ids], check=False, capture_output=True, env=env)
        print(json.dumps(report, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
