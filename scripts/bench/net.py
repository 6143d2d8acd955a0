"""Published-port benchmark harness (through scripts/bench/net.sh, as root). Prints JSON with medians and ratios.

Each sample: start a detached web server container with one published port, then poll
http://127.0.0.1:PORT/ every 5 ms until it answers 200; the sample is the wall time from the start of the
command to that answer. Containers are removed between samples (not timed). ctk and podman alternate.
Images (``--image``): busybox (httpd from the static busybox test image) and nginx (the real Debian image of
scripts/images, built by ctk-build; podman gets it through ``ctk-pull save`` + ``podman load``).
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


def sample(start: list[str], remove: list[str], port: int, env: dict[str, str],
           stop: list[str] | None = None) -> tuple[float, float]:
    """(seconds from the start command to the first 200, seconds of the teardown): the teardown is ``remove``
    (``rm -f``) of the running container, or with ``stop`` given, ``stop`` timed and the ``rm`` after it not."""
    t0 = time.perf_counter()
    p = subprocess.run(start, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(start[:3])}…: {p.stderr.strip()}")
    cid = p.stdout.strip()
    try:
        up = until_200(port, t0)
    except BaseException:
        subprocess.run(remove + [cid], capture_output=True, env=env, check=False)
        raise
    t1 = time.perf_counter()
    r = subprocess.run((stop or remove) + [cid], capture_output=True, text=True, env=env, check=False)
    down = time.perf_counter() - t1
    if stop:
        subprocess.run(remove + [cid], capture_output=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join((stop or remove)[:3])}…: {r.stderr.strip()}")
    return up, down


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--image", choices=["busybox", "nginx", "both"], default="both")
    args = ap.parse_args()
    bridge = f"ctkb{secrets.token_hex(2)}"
    with bench_stack("net") as (base, daemon, reg):
        netconf = base / "net.d"
        netconf.mkdir()
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data"), "NETCONFPATH": str(netconf),
               "CTK_BRIDGE_NAME": bridge, "CTK_BRIDGE_SUBNET": f"10.199.{random.randint(1, 250)}.0/24",
               "CTK_DEBUG": "1"}
        # the warm-up run writes the .pyc files an install has: without them every run compiles its sources again
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        try:
            return _measure(args.runs, base, daemon, reg, env, args.image)
        finally:
            ctk = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
            left = subprocess.run([*ctk, "ps", "-aq"], capture_output=True, text=True, env=env).stdout.split()
            if left:
                subprocess.run([*ctk, "rm", "-f", *left], capture_output=True, env=env, check=False)
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            from ctk_net.store import delete_isolation_rules

            delete_isolation_rules(bridge)


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str], which: str) -> int:  # type: ignore[no-untyped-def]
    g = ["--address", daemon.address, "-n", "bench"]
    pod_root = base / "podman"
    pod = ["podman", "--root", str(pod_root / "root"), "--runroot", str(pod_root / "run"), "--runtime", "runc",
           "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    podman = shutil.which("podman") is not None
    report: dict[str, object] = {"runs": runs}
    if which in ("busybox", "both"):
        layout = base / "layout"
        im.web_image(layout, "latest")
        ref = f"{reg.host}/bench/web:latest"
        im.push_layout(layout, "latest", ref)
        subprocess.run([tool("ctk-pull"), *g, "-q", ref], check=True, stdout=subprocess.DEVNULL, env=env)
        report["busybox"] = _measure_image(runs, g, ref, [*pod, "run", "-d"] if podman else None,
                                           f"oci:{layout}:latest", env)
    if which in ("nginx", "both"):
        from scripts.bench.realimage import nginx_image, podman_load

        t0 = time.perf_counter()
        ref, archive = nginx_image(base, daemon, reg, env)
        pod_ref = None
        if podman:
            try:
                pod_ref = podman_load(pod, archive, ref)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"podman unusable here: {e}", file=sys.stderr)
        print(f"nginx image built, pushed, saved and loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        report["nginx"] = _measure_image(runs, g, ref, [*pod, "run", "-d", "--pull", "never"] if pod_ref else None,
                                         pod_ref or "", env)
    log = base / "data" / "net" / "hook.log"
    if log.exists():
        by_phase: dict[str, list[float]] = {}
        rss: dict[str, list[float]] = {}
        plugins: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            phase, _, secs, *more = line.split()
            by_phase.setdefault(phase, []).append(float(secs.rstrip("s")))
            for field in more:  # maxrss=KiB (the hook's peak RSS, its CNI plugins not included)
                if field.startswith("maxrss="):
                    rss.setdefault(phase, []).append(int(field.split("=", 1)[1]) / 1024)
                elif field.startswith(("ADD:", "DEL:")) and "=" in field:  # one CNI plugin's run, seconds
                    name, _, took = field.partition("=")
                    plugins.setdefault(name.replace(":", " "), []).append(float(took))
        report["hook_in_process_median_s"] = {k: round(statistics.median(v), 4) for k, v in by_phase.items()}
        if plugins:
            report["cni_plugin_median_s"] = {k: round(statistics.median(v), 4) for k, v in sorted(plugins.items())}
        if rss:
            report["hook_peak_rss_mib"] = {k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1)}
                                           for k, v in rss.items()}
    print(json.dumps(report, indent=2))
    return 0


def _measure_image(runs: int, g: list[str], ref: str, pod_run: list[str] | None, pod_image: str,
                   env: dict[str, str]) -> dict[str, object]:
    """ctk-run -d -p vs podman run -d -p of one image (podman's copy named ``pod_image``), alternating."""
    ctk = [tool("ctk-run"), *g]
    # start, rm -f, stop -t 0 (podman's rm -f first waits its stop timeout; Docker's and ctk's kill at once)
    tools: dict[str, tuple] = {
        "ctk": (lambda p: [*ctk, "-d", "-q", "-p", f"{p}:80", ref], [*ctk, "rm", "-f"], [*ctk, "stop", "-t", "0"]),
    }
    if pod_run:
        pod = pod_run[:pod_run.index("run")]
        tools["podman"] = (lambda p: [*pod_run, "-p", f"{p}:80", "--ulimit", "nofile=1024:1024", "--ulimit",
                                      "nproc=1024:1024", "--pids-limit", "1024", pod_image], [*pod, "rm", "-f", "-t", "0"],
                           [*pod, "stop", "-t", "0"])
    for name in list(tools):  # warm up: image import, default network creation
        try:
            port = free_port()
            sample(tools[name][0](port), tools[name][1], port, env)
        except (RuntimeError, OSError) as e:
            print(f"{name} unusable here: {e}", file=sys.stderr)
            del tools[name]
    times: dict[str, list[float]] = {k: [] for k in tools}
    downs: dict[str, dict[str, list[float]]] = {k: {"rm_f": [], "stop_t0": []} for k in tools}
    for i in range(runs):
        order = list(tools) if i % 2 == 0 else list(tools)[::-1]
        for name in order:
            port = free_port()
            start, remove, stop = tools[name]
            # the teardown alternates too: rm -f of the running container, or stop -t 0 (then an untimed rm)
            up, down = sample(start(port), remove, port, env, stop if i % 4 >= 2 else None)
            times[name].append(up)
            downs[name]["stop_t0" if i % 4 >= 2 else "rm_f"].append(down)
    # the same start without a network: what networking adds to ctk-run
    nonet = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([tool("ctk-run"), *g, "-d", "-q", "--network", "none", ref], capture_output=True,
                             text=True, env=env, check=True).stdout.strip()
        nonet.append(time.perf_counter() - t0)
        subprocess.run([tool("ctk-run"), *g, "rm", "-f", out], capture_output=True, env=env, check=False)
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    out: dict[str, object] = {"image": ref, "median_s_to_first_200": med,
                              "ctk_run_d_network_none_median_s": round(statistics.median(nonet), 4),
                              "uptime": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    if "podman" in med and "ctk" in med:
        out["ratio_ctk_vs_podman"] = round(med["ctk"] / med["podman"], 3)
    for what in ("rm_f", "stop_t0"):
        dm = {k: round(statistics.median(v[what]), 4) for k, v in downs.items() if v[what]}
        out[f"{what}_median_s"] = dm
        if "podman" in dm and "ctk" in dm:
            out[f"{what}_ratio_ctk_vs_podman"] = round(dm["ctk"] / dm["podman"], 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
