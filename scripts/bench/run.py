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

from scripts.bench.timing import bench_stack, timed, tool
from tests.support import images as im


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with bench_stack("run") as (base, daemon, reg):
        im.build_image(base / "layout", "latest", [im.busybox_layer_tar()])
        ref = f"{reg.host}/bench/busybox:latest"
        im.push_layout(base / "layout", "latest", ref)
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        ctr = ["ctr", "-a", daemon.address, "-n", "bench", "run", "--rm", ref, "bench-id", "true"]
        podman = shutil.which("podman")
        pod_root = base / "podman"
        pod = ["podman", "--root", str(pod_root / "root"), "--runroot", str(pod_root / "run"), "--runtime", "runc",
               "--cgroup-manager", "cgroupfs", "--events-backend", "none", "run", "--rm", "--network", "none",
               "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--pids-limit", "1024",
               f"oci:{base / 'layout'}:latest", "true"]
        times: dict[str, list[float]] = {"ctk": [], "ctr": []}
        if podman:
            times["podman"] = []
            try:  # first podman run imports the image
                subprocess.run(pod, check=True, capture_output=True, timeout=120)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                print(f"podman unusable here: {e}", file=sys.stderr)
                del times["podman"]
        timed(ctk + ["--rm", "-q", "--network", "none", ref, "true"], env)  # warm caches
        for i in range(args.runs):
            order = list(times)
            for name in (order if i % 2 == 0 else order[::-1]):
                cmd = ctk + ["--rm", "-q", "--network", "none", ref, "true"] if name == "ctk" else \
                    ctr if name == "ctr" else pod
                times[name].append(timed(cmd, env))
        med = {k: round(statistics.median(v), 4) for k, v in times.items()}
        report: dict[str, object] = {"runs": args.runs, "median_s": med,
                                     "ratio_ctk_vs_ctr": round(med["ctk"] / med["ctr"], 3)}
        if "podman" in med:
            report["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
        # ps with 50 containers (detached, sleeping), and what each leaves running (its logger)
        ids = []
        for _ in range(50):
            out = subprocess.run(ctk + ["-d", "-q", "--network", "none", ref, "sleep", "600"], check=True,
                                 capture_output=True, text=True, env=env).stdout.strip()
            ids.append(out)
        time.sleep(1)
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
                                        "count": len(rss)}
        subprocess.run(ctk + ["rm", "-f", *ids], check=False, capture_output=True, env=env)
        print(json.dumps(report, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
