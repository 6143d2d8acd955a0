"""What ctk-build's live view costs: ``--progress=tty`` (stderr on a pseudo-terminal, redrawn ten times a
second) vs ``--progress=plain`` (stderr on a pipe, and on the same kind of pseudo-terminal), same build,
alternating (as root).

``python3 -m scripts.bench.build_progress [--runs N]``

The build benchmark's Dockerfile (scripts/bench/build.py: RUN of 200 files, COPY 50 MiB) with ``--no-cache``
and ``--network none`` on a private stack. Prints JSON with medians and the ratio tty / plain (target: at
most 1.02). Also the CPU seconds of each ctk-build (user + system of the reaped child: the load-robust figure on a
shared machine, where the wall-clock ratio of a one-second build swings by several percent run to run) and
the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import pty
import statistics
import subprocess
import sys
import time

from scripts.bench.build import bench_context
from scripts.bench.timing import bench_stack, tool
from tests.support.ptys import read_terminal


def _on_pty(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds of ``cmd`` with stderr on a pseudo-terminal that is read (as a terminal would be), and its CPU
    seconds."""
    master, slave = pty.openpty()
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
                         env={**env, "TERM": "xterm"})
    os.close(slave)
    try:
        tail = read_terminal(master, p, timeout=3600, keep=4000)
        if p.wait() != 0:
            raise SystemExit(f"{cmd} failed:\n{tail.decode(errors='replace')}")
    finally:
        os.close(master)
    return time.perf_counter() - t0, _children_cpu() - c0


def _on_pipe(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t0, _children_cpu() - c0


def _children_cpu() -> float:
    """User + system CPU seconds of the children reaped so far (ctk-build and whatever it waited for)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with bench_stack("build-progress", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg):
        ref, ctx = bench_context(base, reg)
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        ctk = [tool("ctk-build"), "--address", daemon.address, "-n", "bench", "--network", "none", "--no-cache",
               "-t", "bench"]
        runs = {"tty": lambda: _on_pty(ctk + ["--progress=tty", str(ctx)], env),
                "plain_pty": lambda: _on_pty(ctk + ["--progress=plain", str(ctx)], env),
                "plain": lambda: _on_pipe(ctk + ["--progress=plain", str(ctx)], env)}
        for go in runs.values():
            go()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        loads = [os.getloadavg()[0]]
        for i in range(args.runs):
            for who in (("tty", "plain_pty", "plain") if i % 2 == 0 else ("plain", "plain_pty", "tty")):
                took, used = runs[who]()
                times[who].append(took)
                cpu[who].append(used)
        loads.append(os.getloadavg()[0])
        med = {k: round(statistics.median(v), 3) for k, v in times.items()}
        mcpu = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
        print(json.dumps({"runs": args.runs, "median_s": med, "ratio_tty_vs_plain": round(med["tty"] / med["plain"], 3),
                          "ratio_tty_vs_plain_on_the_same_pty": round(med["tty"] / med["plain_pty"], 3),
                          # each run's tty time over the plain-on-a-pty time next to it: the load's drift cancels
                          "median_run_ratio_tty_vs_plain_on_the_same_pty": round(statistics.median(
                              t / p for t, p in zip(times["tty"], times["plain_pty"])), 3),
                          "median_cpu_s": mcpu,
                          "cpu_ratio_tty_vs_plain_on_the_same_pty": round(mcpu["tty"] / mcpu["plain_pty"], 3),
                          "load_average_1min": [round(x, 1) for x in loads]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
