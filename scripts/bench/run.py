"""Run benchmark harness (through scripts/bench/run.sh, as root). Prints JSON with medians and ratios."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.timing import bench_stack, push_busybox, timed, tool


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--image", choices=["busybox", "nginx", "both"], default="both",
                    help="busybox: the static test image; nginx: the real Debian image of scripts/images")
    args = ap.parse_args()
    with bench_stack("run") as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        # the warm-up run writes the .pyc files an install has: without them every run compiles its sources again
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        pod_root = base / "podman"
        pod = ["podman", "--root", str(pod_root / "root"), "--runroot", str(pod_root / "run"), "--runtime", "runc",
               "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        report: dict[str, object] = {"runs": args.runs}
        if args.image in ("busybox", "both"):
            ref = push_busybox(base, reg)
            subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            report["busybox"] = _starts(args.runs, daemon, ctk, pod, ref, f"oci:{base / 'layout'}:latest", env)
        if args.image in ("nginx", "both"):
            from scripts.bench.realimage import nginx_image, podman_load

            ref, archive = nginx_image(base, daemon, reg, env)
            pod_ref = None
            if shutil.which("podman"):
                try:
                    pod_ref = podman_load(pod, archive, ref)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"podman unusable here: {e}", file=sys.stderr)
            report["nginx"] = _starts(args.runs, daemon, ctk, pod if pod_ref else None, ref, pod_ref or "", env)
        # ps with 50 containers (detached, sleeping), and what each leaves running (its logger)
        ref = next(v["image"] for v in report.values() if isinstance(v, dict))  # the first image measured
        ids = []
        for _ in range(50):
            out = subprocess.run(ctk + ["-d", "-q", "--network", "none", ref, "sleep", "600"], check=True,
                                 capture_output=True, text=True, env=env).stdout.strip()
            ids.append(out)
        time.sleep(1)
        report["uptime_at_ps"] = _load()
        report["ps_50_median_s"] = round(statistics.median(timed(ctk + ["ps"], env) for _ in range(7)), 3)
        rss = []
        for pid in subprocess.run(["pgrep", "-f", "ctk-run-logger"], capture_output=True, text=True).stdout.split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                if str(base) in Path(f"/proc/{pid}/cmdline").read_text():
                    rss.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
            except (OSError, IndexError):
                pass
        if rss:
            report["logger_rss_mib"] = {"median": round(statistics.median(rss), 1), "max": round(max(rss), 1),
                                        "count": len(rss), "image": ref}
        subprocess.run(ctk + ["rm", "-f", *ids], check=False, capture_output=True, env=env)
        print(json.dumps(report, indent=2))
        return 0


def _starts(runs: int, daemon, ctk: list[str], pod: list[str] | None, ref: str, pod_image: str,  # type: ignore[no-untyped-def]
            env: dict[str, str]) -> dict[str, object]:
    """``ctk-run --rm --network none REF true`` vs ``ctr run --rm`` (and ``podman run --rm``), alternating."""
    ctr = ["ctr", "-a", daemon.address, "-n", "bench", "run", "--rm", ref, "bench-id", "true"]
    podman = None
    if pod and not shutil.which(pod[0]):
        pod = None  # no podman on this machine: its column is left out
    if pod:
        # an oci: layout is imported by the first run; a loaded image is in podman's store already
        never = [] if pod_image.startswith("oci:") else ["--pull", "never"]
        podman = [*pod, "run", "--rm", "--network", "none", *never, "--ulimit", "nofile=1024:1024",
                  "--ulimit", "nproc=1024:1024", "--pids-limit", "1024", pod_image, "true"]
    times: dict[str, list[float]] = {"ctk": [], "ctr": []}
    if podman:
        times["podman"] = []
        try:  # the first podman run of an oci: layout imports the image
            subprocess.run(podman, check=True, capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            print(f"podman unusable here: {e}", file=sys.stderr)
            del times["podman"]
    run_ctk = ctk + ["--rm", "-q", "--network", "none", ref, "true"]
    timed(run_ctk, env)  # warm caches
    cpu: dict[str, list[float]] = {k: [] for k in times}
    for i in range(runs):
        order = list(times)
        for name in (order if i % 2 == 0 else order[::-1]):
            cmd = run_ctk if name == "ctk" else ctr if name == "ctr" else podman
            wall, secs = _timed_cpu(cmd, env)  # type: ignore[arg-type]
            times[name].append(wall)
            cpu[name].append(secs)
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    out: dict[str, object] = {"image": ref, "median_s": med, "ratio_ctk_vs_ctr": round(med["ctk"] / med["ctr"], 3),
                              "client_cpu_median_s": {k: round(statistics.median(v), 4) for k, v in cpu.items()}}
    if "podman" in med:
        out["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
    out["detached"] = _detached(runs, daemon, ctk, pod if "podman" in times else None, ref, pod_image, env)
    out["uptime"] = _load()
    return out


def _timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the CPU seconds of the command's process tree that it waited for (getrusage of the
    children): the load-robust half of the figure, since on a shared machine the wall time is mostly the
    wait for a CPU. Processes the command leaves running (a shim, a logger) are not in it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _load() -> str:
    """The load average as ``uptime`` shows it, reported beside each figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _detached(runs: int, daemon, ctk: list[str], pod: list[str] | None, ref: str, pod_image: str,  # type: ignore[no-untyped-def]
              env: dict[str, str]) -> dict[str, object]:
    """``ctk-run -d --network none REF sleep 600`` vs ``ctr run -d`` (and ``podman run -d``), alternating; each
    container is removed after its sample (not timed)."""
    ctr = ["ctr", "-a", daemon.address, "-n", "bench"]
    tools: dict[str, tuple[object, object]] = {
        "ctk": (lambda i: ctk + ["-d", "-q", "--network", "none", ref, "sleep", "600"],
                lambda out, i: subprocess.run(ctk + ["rm", "-f", out], capture_output=True, env=env, check=False)),
        "ctr": (lambda i: ctr + ["run", "-d", ref, f"bench-d{i}", "sleep", "600"], _ctr_remove(ctr, env)),
    }
    if pod:
        never = [] if pod_image.startswith("oci:") else ["--pull", "never"]
        tools["podman"] = (
            lambda i: [*pod, "run", "-d", "--network", "none", *never, "--ulimit", "nofile=1024:1024", "--ulimit",
                       "nproc=1024:1024", "--pids-limit", "1024", pod_image, "sleep", "600"],
            lambda out, i: subprocess.run([*pod, "rm", "-f", "-t", "0", out], capture_output=True, check=False))
    times: dict[str, list[float]] = {k: [] for k in tools}
    for i in range(runs):
        for name in (list(tools) if i % 2 == 0 else list(tools)[::-1]):
            start, remove = tools[name]
            t0 = time.perf_counter()
            p = subprocess.run(start(i), capture_output=True, text=True, env=env, check=False)  # type: ignore[operator]
            times[name].append(time.perf_counter() - t0)
            if p.returncode != 0:
                raise SystemExit(f"{name} run -d: exit {p.returncode}: {p.stderr.strip()}")
            remove(p.stdout.strip(), i)  # type: ignore[operator]
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    out: dict[str, object] = {"median_s": med, "ratio_ctk_vs_ctr": round(med["ctk"] / med["ctr"], 3)}
    if "podman" in med:
        out["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
    return out


def _ctr_remove(ctr: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    def remove(_out: str, i: int) -> None:
        cid = f"bench-d{i}"
        subprocess.run(ctr + ["task", "kill", "-s", "SIGKILL", cid], capture_output=True, check=False)
        for _ in range(50):
            if subprocess.run(ctr + ["task", "rm", cid], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.05)
        subprocess.run(ctr + ["container", "rm", cid], capture_output=True, check=False)
    return remove


if __name__ == "__main__":
    sys.exit(main())
