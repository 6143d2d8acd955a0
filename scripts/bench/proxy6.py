"""IPv6 published ports: ctk-net's userland proxy ([::1]:P6) vs the kernel's NAT (portmap, 127.0.0.1:P4) on the
same container, in the same run. Prints JSON with medians and the proxy/NAT ratios.

One busybox httpd container publishes port 80 on both addresses and serves a small page and a 64 MiB file.
Each round fetches with curl (a new process and connection per request): ``--small`` requests of the page
(time per request) and ``--big`` downloads of the file (MB/s), alternating NAT and proxy. Everything is
private: containerd, registry, conflist dir, bridge (ctkb<hex>, 10.199.x.0/24).

Usage: sudo python3 -m scripts.bench.proxy6 [--small 100] [--big 5]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time

from scripts.bench.timing import bench_stack, tool
from tests.support import images as im

BIG_MIB = 64


def _free(family: int, host: str) -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _curl(url: str) -> tuple[float, float]:
    """(seconds, bytes/s) of one GET with a fresh curl process."""
    p = subprocess.run(["curl", "-sf", "-g", "--noproxy", "*", "-o", "/dev/null", "-w",
                        "%{time_total} %{speed_download}", url], capture_output=True, text=True, check=True)
    t, speed = p.stdout.split()
    return float(t), float(speed)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=100, help="small requests per path")
    ap.add_argument("--big", type=int, default=5, help="64 MiB downloads per path")
    args = ap.parse_args()
    bridge = f"ctkb{secrets.token_hex(2)}"
    with bench_stack("proxy6") as (base, daemon, reg):
        netconf = base / "net.d"
        netconf.mkdir()
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data"), "NETCONFPATH": str(netconf),
               "CTK_BRIDGE_NAME": bridge, "CTK_BRIDGE_SUBNET": f"10.199.{random.randint(1, 250)}.0/24"}
        g = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        try:
            layout = base / "layout"
            im.web_image(layout, "latest")
            ref = f"{reg.host}/bench/web:latest"
            im.push_layout(layout, "latest", ref)
            p4, p6 = _free(socket.AF_INET, "127.0.0.1"), _free(socket.AF_INET6, "::1")
            script = f"dd if=/dev/zero of=/www/big bs=1M count={BIG_MIB} 2>/dev/null; exec httpd -f -p 80 -h /www"
            subprocess.run([*g, "-d", "-q", "-p", f"127.0.0.1:{p4}:80", "-p", f"[::1]:{p6}:80", ref, "sh", "-c",
                            script], check=True, env=env, stdout=subprocess.DEVNULL)
            urls = {"nat": f"http://127.0.0.1:{p4}", "proxy": f"http://[::1]:{p6}"}
            end = time.monotonic() + 30
            while True:  # both answer, the big file is complete
                try:
                    if all(_curl(u + "/big")[0] >= 0 for u in urls.values()):
                        break
                except subprocess.CalledProcessError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.2)
            small: dict[str, list[float]] = {k: [] for k in urls}
            big: dict[str, list[float]] = {k: [] for k in urls}
            for i in range(args.small):
                for k in (list(urls) if i % 2 == 0 else list(urls)[::-1]):
                    small[k].append(_curl(urls[k] + "/index.html")[0])
            for i in range(args.big):
                for k in (list(urls) if i % 2 == 0 else list(urls)[::-1]):
                    big[k].append(_curl(urls[k] + "/big")[1] / 2**20)
            med_small = {k: round(statistics.median(v) * 1000, 3) for k, v in small.items()}
            med_big = {k: round(statistics.median(v), 1) for k, v in big.items()}
            report = {"small_requests": args.small, "big_downloads": args.big, "big_mib": BIG_MIB,
                      "median_ms_per_small_request": med_small, "median_mib_per_s_big": med_big,
                      "ratio_small_time_proxy_vs_nat": round(med_small["proxy"] / med_small["nat"], 2),
                      "ratio_throughput_proxy_vs_nat": round(med_big["proxy"] / med_big["nat"], 2)}
            print(json.dumps(report, indent=2))
            return 0
        finally:
            left = subprocess.run([*g, "ps", "-aq"], capture_output=True, text=True, env=env).stdout.split()
            if left:
                subprocess.run([*g, "rm", "-f", *left], capture_output=True, env=env, check=False)
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            from ctk_net.store import delete_isolation_rules

            delete_isolation_rules(bridge)


if __name__ == "__main__":
    sys.exit(main())
