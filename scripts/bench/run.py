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
    ap.add_argument("--image", choices=["busybox", "nginx", "both"], default="both",
                    help="busybox: the static test image; nginx: the real Debian image of scripts/images")
    args = ap.parse_args()
    with bench_stack("run") as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        pod_root = base / "podman"
        pod = ["podman", "--root", str(pod_root / "root"), "--runroot", str(pod_root / "run"), "--runtime", "runc",
               "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        report: dict[str, object] = {"runs": args.runs}
        if args.image in ("busybox", "both"):
            im.build_image(base / "layout", "latest", [im.busybox_layer_tar()])
            ref = f"{reg.host}/bench/busybox:latest"
            im.push_layout(base / "layout", "latest", ref)
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
    for i in range(runs):
        order = list(times)
        for name in (order if i % 2 == 0 else order[::-1]):
            cmd = run_ctk if name == "ctk" else ctr if name == "ctr" else podman
            times[name].append(timed(cmd, env))
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    out: dict[str, object] = {"image": ref, "median_s": med, "ratio_ctk_vs_ctr": round(med["ctk"] / med["ctr"], 3)}
    if "podman" in med:
        out["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
