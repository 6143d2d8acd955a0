"""Health checks (issue 21): one probe's cost against ``ctr task exec`` of the same command (target ≤ 1.5×),
and the steady-state CPU of 20 containers checked every 2 s.

1. Probe: ``Runner.probe()`` of ctk_run.health_runner (what the runner does per probe: an exec process with
   FIFOs, start, wait, read the output, delete; over its one long-lived gRPC channel) against
   ``ctr task exec --exec-id … CID true`` (containerd's Go CLI: the same exec, plus its own process start),
   alternating, on one busybox container of a private containerd. Also the probes' own durations as the
   live runner logged them (End - Start).
2. Steady state: 20 busybox ``sleep`` containers with ``--health-cmd true --health-interval 2s`` (all
   healthy), then the CPU used over a window by the health runners, the loggers, the shims and containerd,
   against the same 20 containers without a check (the difference is what the checks cost).

Usage: sudo python3 -m scripts.bench.health [--runs 30] [--containers 20] [--window 30] [--interval 2s]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

from scripts.bench.timing import bench_stack, push_busybox, tool
from tests.support.procs import command_lines

CLK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    """utime + stime, plus cutime + cstime: the children it reaped (a shim reaps each ``runc exec`` and, as
    subreaper, each probe process), so what an exec costs outside the long-lived processes is counted too."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except (OSError, IndexError, ValueError):
        return 0


def _classify(base: str, daemon_pid: int) -> dict[str, list[int]]:
    """Pids of this bench's containerd, shims, loggers and health runners."""
    groups: dict[str, list[int]] = {"containerd": [daemon_pid], "shims": [], "loggers": [], "runners": []}
    for pid, cmd in command_lines():
        if base not in cmd:
            continue
        if "containerd-shim" in cmd:
            groups["shims"].append(pid)
        elif "ctk_run.health_runner" in cmd:
            groups["runners"].append(pid)
        elif "ctk-run-logger" in cmd:
            groups["loggers"].append(pid)
    return groups


def _cpu_window(base: str, daemon_pid: int, window: float) -> dict[str, float]:
    """CPU % of one core per group over ``window`` seconds (processes alive at the start)."""
    groups = _classify(base, daemon_pid)
    before = {g: {p: _cpu_ticks(p) for p in pids} for g, pids in groups.items()}
    time.sleep(window)
    out = {}
    for g, pids in groups.items():
        used = sum(max(_cpu_ticks(p) - before[g][p], 0) for p in pids)
        out[g] = round(100.0 * used / CLK / window, 2)
    out["total"] = round(sum(out.values()), 2)
    return out


def _mem_mib(pids: list[int], field: str) -> float:
    """Sum of ``Rss:`` or ``Pss:`` (shared pages split among their users) of ``pids``, in MiB."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += int(f.read().split(f"\n{field}:")[1].split()[0])
        except (OSError, IndexError):
            pass
    return round(total / 1024, 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--window", type=float, default=30.0, help="seconds of CPU accounting per phase")
    ap.add_argument("--interval", default="2s", help="--health-interval of the steady-state containers")
    args = ap.parse_args()
    with bench_stack("health") as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        ref = push_busybox(base, reg)
        subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        report: dict[str, object] = {"runs": args.runs}
        report["probe"] = _probe(args.runs, base, daemon, ctk, ref, env)
        report["steady_state"] = _steady(args, base, daemon, ctk, ref, env)
        print(json.dumps(report, indent=2))
        return 0


def _probe(runs: int, base, daemon, ctk: list[str], ref: str, env: dict[str, str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from ctk_run import healthcheck as hcfg
    from ctk_run.execs import process_spec
    from ctk_run.health_runner import Runner
    from ctk_shared.containerd import Client

    cid = subprocess.run(ctk + ["-d", "-q", "--network", "none", "--name", "probe", "--health-cmd", "true",
                                "--health-interval", "1s", ref, "sleep", "3600"],
                         check=True, capture_output=True, text=True, env=env).stdout.strip()
    client = Client(daemon.address, "bench")
    c = client.containers.get(cid)
    hc = hcfg.from_label(c.labels[hcfg.LABEL])
    proc = process_spec(json.loads(c.spec), ("true",), tty=False, env=(), workdir=None, user=None,
                        privileged=False)
    cdir = str(base / "bench-probe")
    os.makedirs(cdir, exist_ok=True)
    runner = Runner(client, cid, cdir, hc, proc)
    ctr = ["ctr", "-a", daemon.address, "-n", "bench", "task", "exec"]
    ours, theirs = [], []
    runner.probe()  # warm
    subprocess.run(ctr + ["--exec-id", "warm", cid, "true"], check=True, capture_output=True)
    for i in range(runs):
        t0 = time.perf_counter()
        result = runner.probe()
        ours.append(time.perf_counter() - t0)
        assert result and result["ExitCode"] == 0, result
        t0 = time.perf_counter()
        subprocess.run(ctr + ["--exec-id", f"b{i}-{secrets.token_hex(3)}", cid, "true"], check=True,
                       capture_output=True)
        theirs.append(time.perf_counter() - t0)
    log = json.loads(subprocess.run(ctk + ["inspect", "--format", "{{json .State.Health}}", "probe"], check=True,
                                    capture_output=True, text=True, env=env).stdout)
    from datetime import datetime

    live = [(datetime.fromisoformat(e["End"]) - datetime.fromisoformat(e["Start"])).total_seconds()
            for e in log["Log"]]
    subprocess.run(ctk + ["rm", "-f", "probe"], check=False, capture_output=True, env=env)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    return {"ctk_probe_median_s": round(m_ours, 4), "ctr_task_exec_median_s": round(m_theirs, 4),
            "ratio": round(m_ours / m_theirs, 2), "target_ratio": 1.5,
            "live_runner_probe_median_s": round(statistics.median(live), 4) if live else None}


def _steady(args, base, daemon, ctk: list[str], ref: str, env: dict[str, str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out: dict[str, object] = {"containers": args.containers, "interval": args.interval, "window_s": args.window}
    for phase, extra in (("without_checks", []),
                         ("with_checks", ["--health-cmd", "true", "--health-interval", args.interval])):
        ids = [subprocess.run(ctk + ["-d", "-q", "--network", "none", *extra, ref, "sleep", "3600"], check=True,
                              capture_output=True, text=True, env=env).stdout.strip()
               for _ in range(args.containers)]
        if extra:
            for cid in ids:
                subprocess.run(ctk + ["wait", "--condition", "healthy", cid], check=True, capture_output=True,
                               env=env, timeout=120)
        time.sleep(3)  # past the start-up work (label updates, first probes)
        cpu = _cpu_window(str(base), daemon.proc.pid, args.window)
        groups = _classify(str(base), daemon.proc.pid)
        n = max(len(groups["runners"]), 1)
        cpu["runner_rss_mib_each"] = round(_mem_mib(groups["runners"], "Rss") / n, 1)
        cpu["runner_pss_mib_each"] = round(_mem_mib(groups["runners"], "Pss") / n, 1)
        out[phase] = cpu
        subprocess.run(ctk + ["rm", "-f", *ids], check=False, capture_output=True, env=env)
        print(f"{phase}: {cpu}", file=sys.stderr)
    w, wo = out["with_checks"], out["without_checks"]
    out["checks_cost_cpu_percent_of_one_core"] = round(w["total"] - wo["total"], 2)  # type: ignore[index]
    return out


if __name__ == "__main__":
    sys.exit(main())
