"""Mirror benchmark: a pull through a warm pull-through cache vs the same pull straight from the registry.

Same image and store handling as pull.py (8 x 64 MiB, every blob gone from containerd before each run,
alternating order). The mirror is docker-registry in proxy mode in front of the registry, named in a hosts.toml
``[host]`` entry with capabilities pull and resolve; one pull through it before timing makes it warm (it then
serves every blob from its own storage). Target: mirror <= 1.1 x direct.

Usage: sudo python3 -m scripts.bench.mirror [--runs N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from scripts.bench.pull import build_image, clean_store, loop_fs, sh, start_registry_process
from scripts.bench.timing import timed
from tests.support.containerd_daemon import start_containerd
from tests.support.registry_daemon import free_port


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    mnt = loop_fs()
    layout = build_image(mnt, zstd=False)
    daemon_dir = mnt / "ctd-mirror"
    shutil.rmtree(daemon_dir, ignore_errors=True)
    daemon = start_containerd(daemon_dir)
    procs: list[subprocess.Popen] = []
    try:
        upstream = f"127.0.0.1:{free_port()}"
        procs.append(start_registry_process(mnt, upstream, None))
        mirror = f"127.0.0.1:{free_port()}"
        shutil.rmtree(mnt / "mirror", ignore_errors=True)  # a cold cache, warmed below
        procs.append(start_registry_process(mnt, mirror, None, name="mirror", proxy_remote=f"http://{upstream}"))
        ref = f"{upstream}/bench/image:latest"
        sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}")
        hosts = mnt / "mirror-certs.d"
        shutil.rmtree(hosts, ignore_errors=True)
        (hosts / upstream).mkdir(parents=True)
        (hosts / upstream / "hosts.toml").write_text(
            f'server = "http://{upstream}"\n[host."http://{mirror}"]\n  capabilities = ["pull", "resolve"]\n')
        from ctk_shared.containerd import Client

        client = Client(daemon.address, "default")
        blobs = daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
        ctk = ["ctk-pull", "--address", daemon.address]
        via = [*ctk, "--hosts-dir", str(hosts)]
        env = dict(os.environ)
        clean_store(client, blobs)
        subprocess.run([*via, "-n", "warm", "-q", ref], check=True, env=env,  # the mirror fetches everything once
                       stdout=subprocess.DEVNULL)
        results: dict[str, list[float]] = {"direct": [], "mirror": []}
        for i in range(args.runs):
            for kind in (("direct", "mirror") if i % 2 == 0 else ("mirror", "direct")):
                clean_store(client, blobs)
                cmd = (via if kind == "mirror" else ctk) + ["-n", f"b{i}{kind}", "-q", ref]
                results[kind].append(timed(cmd, env))
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in results.items()),
                  file=sys.stderr)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(json.dumps({"image": "8 layers x 64 MiB", "runs": args.runs,
                          "median_s": {k: round(v, 3) for k, v in med.items()},
                          "ratio_mirror_vs_direct": round(med["mirror"] / med["direct"], 3)}, indent=2))
        return 0
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
