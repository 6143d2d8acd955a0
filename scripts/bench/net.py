"""Published-port benchmark harness (through scripts/bench/net.sh, as root). Prints JSON with medians and ratios.

Each sample: start a detached busybox httpd container with one published port, then poll
http://127.0.0.1:PORT/ every 5 ms until it answers 200; the sample is the wall time from the start of the
command to that answer. Containers are removed between samples (not timed). ctk and podman alternate.
Everything is private: containerd, registry, conflist dir, bridge (ctkb<hex>, 10.199.x.0/24), podman root.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from scripts.bench.timing import bench_stack, tool
from tests.support import images as im

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until_200(port: int, t0: float, limit: float = 30.0) -> float:
    while time.perf_counter() - t0 < limit:
        try:
            with _OPENER.open(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"nothing answered on {port} within {limit} s")


def sample(start: list[str], stop: list[str], port: int, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(start, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(start[:3])}…: {p.stderr.strip()}")
    try:
        return until_200(port, t0)
    finally:
        subprocess.run(stop + [p.stdout.strip()], capture_output=True, env=env, check=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    bridge = f"ctkb{secrets.token_hex(2)}"
    with bench_stack("net") as (base, daemon, reg):
        netconf = base / "net.d"
        netconf.mkdir()
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data"), "NETCONFPATH": str(netconf),
               "CTK_BRIDGE_NAME": bridge, "CTK_BRIDGE_SUBNET": f"10.199.{random.randint(1, 250)}.0/24",
               "CTK_DEBUG": "1"}
        try:
            return _measure(args.runs, base, daemon, reg, env)
        finally:
            ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
            left = subprocess.run([*ctk, "ps", "-aq"], capture_output=True, text=True, env=env).stdout.split()
            if left:
                subprocess.run([*ctk, "rm", "-f", *left], capture_output=True, env=env, check=False)
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            from ctk_net.store import delete_isolation_rules

            delete_isolation_rules(bridge)


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    layout = base / "layout"
    im.web_image(layout, "latest")
    ref = f"{reg.host}/bench/web:latest"
    im.push_layout(layout, "latest", ref)
    g = ["--address", daemon.address, "-n", "bench"]
    subprocess.run([tool("ctk-pull"), *g, "-q", ref], check=True, stdout=subprocess.DEVNULL, env=env)
    tools: dict[str, tuple] = {
        "ctk": (lambda p: [tool("ctk-run"), *g, "-d", "-q", "-p", f"{p}:80", ref], [tool("ctk-run"), *g, "rm", "-f"]),
    }
    pod_root = base / "podman"
    pod = ["podman", "--root", str(pod_root / "root"), "--runroot", str(pod_root / "run"), "--runtime", "runc",
           "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    if shutil.which("podman"):
        tools["podman"] = (lambda p: [*pod, "run", "-d", "-p", f"{p}:80", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                      "--pids-limit", "1024", f"oci:{layout}:latest"], [*pod, "rm", "-f"])
    for name in list(tools):  # warm up: image import, default network creation
        try:
            port = free_port()
            sample(tools[name][0](port), tools[name][1], port, env)
        except (RuntimeError, OSError) as e:
            print(f"{name} unusable here: {e}", file=sys.stderr)
            del tools[name]
    times: dict[str, list[float]] = {k: [] for k in tools}
    for i in range(runs):
        order = list(tools) if i % 2 == 0 else list(tools)[::-1]
        for name in order:
            port = free_port()
            times[name].append(sample(tools[name][0](port), tools[name][1], port, env))
    # the same start without a network: what networking adds to ctk-run
    nonet = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([tool("ctk-run"), *g, "-d", "-q", "--network", "none", ref], capture_output=True,
                             text=True, env=env, check=True).stdout.strip()
        nonet.append(time.perf_counter() - t0)
        subprocess.run([tool("ctk-run"), *g, "rm", "-f", out], capture_output=True, env=env, check=False)
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    report: dict[str, object] = {"runs": runs, "median_s_to_first_200": med,
                                 "ctk_run_d_network_none_median_s": round(statistics.median(nonet), 4)}
    if "podman" in med and "ctk" in med:
        report["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
    log = base / "data" / "net" / "hook.log"
    if log.exists():
        by_phase: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            phase, _, secs = line.split()
            by_phase.setdefault(phase, []).append(float(secs.rstrip("s")))
        report["hook_in_process_median_s"] = {k: round(statistics.median(v), 4) for k, v in by_phase.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
