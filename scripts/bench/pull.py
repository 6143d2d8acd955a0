"""Pull benchmark harness (run through scripts/bench/pull.sh, as root).

Builds the deterministic 8 x 64 MiB image, serves it from a private registry, and times, alternating:
  ctk-pull (unpack)         vs  ctr images pull (unpack)          same containerd, fresh namespace, cold store
  ctk-pull --unpack false   vs  skopeo copy docker:// -> oci:DIR  fetch only
Before each run every blob and snapshot is removed from all namespaces and the script waits until the
blob files are gone (content is shared across namespaces). State lives on a loop-mounted journaled ext4.
With --rate, the registry runs in a network namespace behind a veth shaped with tc (e.g. 200mbit).
Also reports start-up time of `ctk-pull --help` and `ctk-pull images` on an empty namespace.

Beside each wall-clock median: the client's CPU seconds (user + system of the command and its children, from
wait4), the load-robust figure on a shared machine, and its ratio to ctr's; and the load average (`uptime`).
"""
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

from scripts.bench.timing import drop_everything, timed
from tests.support.containerd_daemon import ContainerdDaemon, start_containerd
from tests.support.registry_daemon import free_port

BENCH = Path(os.environ.get("CTK_BENCH_DIR", "/var/tmp/ctk-bench"))
NETNS = "ctkbench"
HOST_IP, NS_IP = "10.213.7.1", "10.213.7.2"


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, **kw)


def timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``cmd``: user + system time of the process and the children it waited for,
    as wait4 reports them. It must succeed."""
    import tempfile

    with tempfile.TemporaryFile() as errf:  # not a pipe: a chatty command cannot fill it and stall
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        took = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            errf.seek(0)
            raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {errf.read().decode(errors='replace').strip()}")
    return took, usage.ru_utime + usage.ru_stime


def _baseline_env(env: dict[str, str], baseline: str) -> dict[str, str]:
    """``env`` with another tree's shared library first on the path (--baseline)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, (baseline, env.get("PYTHONPATH"))))}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def loop_fs() -> Path:
    """A journaled ext4 on a loop device: `/` here has no journal and slows down run after run."""
    mnt = BENCH / "mnt"
    if subprocess.run(["mountpoint", "-q", str(mnt)]).returncode == 0:
        return mnt
    BENCH.mkdir(parents=True, exist_ok=True)
    mnt.mkdir(exist_ok=True)
    img = BENCH / "fs.img"
    if not img.exists():
        sh("truncate", "-s", "16G", str(img))
        sh("mkfs.ext4", "-q", str(img))
    sh("mount", "-o", "loop", str(img), str(mnt))
    return mnt


def build_image(mnt: Path, zstd: bool) -> Path:
    out = mnt / ("image-zstd" if zstd else "image-gzip")
    if not (out / "index.json").exists():
        args = [sys.executable, "scripts/bench/make-bench-image.py", "--out", str(out)]
        if zstd:
            args.append("--zstd")
        sh(*args, stdout=subprocess.DEVNULL)
    return out


def start_registry_process(mnt: Path, listen: str, netns: str | None, *, name: str = "registry",
                           proxy_remote: str | None = None) -> subprocess.Popen:
    """docker-registry on ``listen`` with its storage under ``mnt/name``; ``proxy_remote``: a pull-through cache."""
    data = mnt / name
    cfg = mnt / f"{name}.yml"
    proxy = f"proxy:\n  remoteurl: {proxy_remote}\n" if proxy_remote else ""
    cfg.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                   f"  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {listen}\n{proxy}")
    cmd = ["docker-registry", "serve", str(cfg)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://{listen}/v2/", timeout=1)
            return p
        except requests.RequestException:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("registry did not start")


def serve_image(mnt: Path, layout: Path, host: str, netns: str | None) -> tuple[subprocess.Popen, str]:
    """A registry on ``host`` (in ``netns``) with the bench image pushed to it: its process and the image's ref."""
    proc = start_registry_process(mnt, host, netns)
    ref = f"{host}/bench/image:latest"
    sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}")
    return proc, ref


def blobs_of(daemon: ContainerdDaemon) -> Path:
    """Where ``daemon`` keeps its blobs: empty once a clean-up's GC is done."""
    return daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256"


def shaped_netns(rate: str) -> None:
    sh("ip", "netns", "del", NETNS, check=False, stderr=subprocess.DEVNULL)
    sh("ip", "link", "del", "ctkb0", check=False, stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", "ctkb0", "type", "veth", "peer", "name", "ctkb1")
    sh("ip", "link", "set", "ctkb1", "netns", NETNS)
    sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", "ctkb0")
    sh("ip", "link", "set", "ctkb0", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_IP}/30", "dev", "ctkb1")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "ctkb1", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    # shape what the registry sends (the pull direction), and the way back too
    for ns in ([], ["ip", "netns", "exec", NETNS]):
        dev = "ctkb1" if ns else "ctkb0"
        sh(*ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms")


def teardown_netns() -> None:
    sh("ip", "netns", "del", NETNS, check=False, stderr=subprocess.DEVNULL)
    sh("ip", "link", "del", "ctkb0", check=False, stderr=subprocess.DEVNULL)


def clean_store(client, blobs_dir: Path) -> None:
    """Remove every image in every namespace and wait for GC to take blobs and snapshots."""
    drop_everything(client)
    for _ in range(200):
        if not any(blobs_dir.iterdir()) if blobs_dir.exists() else True:
            return
        time.sleep(0.05)
    raise SystemExit(f"blobs still present in {blobs_dir} after clean-up")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", help="shape the registry link, e.g. 200mbit (registry in a netns)")
    ap.add_argument("--zstd", action="store_true", help="zstd layers instead of gzip")
    ap.add_argument("--skip", default="", help="comma list of: unpack,fetch,startup")
    ap.add_argument("--ctk-args", default="", help="extra ctk-pull flags, e.g. '--max-concurrent-downloads 2'")
    ap.add_argument("--variant", default="", metavar="ARGS",
                    help="also time `ctk-pull ARGS REF` (unpack included) interleaved with the plain ctk and ctr "
                         "pulls, e.g. '--max-concurrent-downloads 1': an A/B of a setting in the same run")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also time ctk (ctk_base, unpack included) and ctk fetch-only (ctk_fetch_base) with another "
                         "tree's shared library first on PYTHONPATH, interleaved: `git archive REV shared | tar -x -C DIR` then --baseline DIR/shared")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    mnt = loop_fs()
    layout = build_image(mnt, args.zstd)
    daemon_dir = mnt / "ctd"
    shutil.rmtree(daemon_dir, ignore_errors=True)
    daemon = start_containerd(daemon_dir)
    reg_proc = None
    try:
        if args.rate:
            shaped_netns(args.rate)
            reg_proc, ref = serve_image(mnt, layout, f"{NS_IP}:5000", NETNS)
        else:
            reg_proc, ref = serve_image(mnt, layout, f"127.0.0.1:{free_port()}", None)
        from ctk_shared.containerd import Client

        client = Client(daemon.address, "default")
        blobs = blobs_of(daemon)
        insecure = ["--insecure-registry"] if args.rate else []
        ctk = ["ctk-pull", "--address", daemon.address, *insecure, *args.ctk_args.split()]
        ctr = ["ctr", "-a", daemon.address]
        results: dict[str, list[float]] = {k: [] for k in ("ctk", "ctr", *(("ctk_variant",) if args.variant else ()),
                                                             *(("ctk_base",) if args.baseline and "unpack" not in skip
                                                               else ()),
                                                             "ctk_fetch", "skopeo", "ctr_fetch",
                                                             *(("ctk_fetch_base",) if args.baseline else ()))}
        cpu: dict[str, list[float]] = {k: [] for k in results}
        loads = [load_average()]
        env = dict(os.environ)
        for i in range(args.runs):
            ns = f"bench{i}"
            if "unpack" not in skip:
                pulls: tuple[str, ...] = ("ctk", "ctr", *(("ctk_variant",) if args.variant else ()),
                                          *(("ctk_base",) if args.baseline else ()))
                for tool in (pulls if i % 2 == 0 else pulls[::-1]):
                    clean_store(client, blobs)
                    if tool == "ctr":
                        cmd = ctr + ["-n", ns, "images", "pull", "--plain-http", ref]
                    else:
                        cmd = ctk + ["-n", ns, "-q", *(args.variant.split() if tool == "ctk_variant" else ()), ref]
                    wall, used = timed_cpu(cmd, _baseline_env(env, args.baseline) if tool == "ctk_base" else env)
                    results[tool].append(wall)
                    cpu[tool].append(used)
            if "fetch" not in skip:
                order: tuple[str, ...] = ("ctk_fetch", "skopeo", "ctr_fetch",
                                          *(("ctk_fetch_base",) if args.baseline else ()))
                for tool in (order if i % 2 == 0 else order[::-1]):
                    clean_store(client, blobs)
                    run_env = env
                    if tool == "skopeo":
                        dest = mnt / "skopeo-out"
                        shutil.rmtree(dest, ignore_errors=True)
                        cmd = ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:x"]
                    elif tool == "ctr_fetch":
                        cmd = ctr + ["-n", ns, "content", "fetch", "--plain-http", ref]
                    else:
                        cmd = ctk + ["-n", ns, "-q", "--unpack", "false", ref]
                        if tool == "ctk_fetch_base":
                            run_env = _baseline_env(env, args.baseline)
                    wall, used = timed_cpu(cmd, run_env)
                    results[tool].append(wall)
                    cpu[tool].append(used)
            loads.append(load_average())
            print(f"run {i + 1}/{args.runs} (load {loads[-1]}): " +
                  ", ".join(f"{k}={v[-1]:.2f}s/{cpu[k][-1]:.2f}cpu" for k, v in results.items() if v), file=sys.stderr)
        report: dict[str, object] = {"image": "8 layers x 64 MiB", "compression": "zstd" if args.zstd else "gzip",
                                     "rate": args.rate or "loopback", "runs": args.runs}
        med = {k: statistics.median(v) for k, v in results.items() if v}
        report["median_s"] = {k: round(v, 3) for k, v in med.items()}
        cmed = {k: statistics.median(v) for k, v in cpu.items() if v}
        report["median_cpu_s"] = {k: round(v, 3) for k, v in cmed.items()}
        report["load_average"] = {"start": loads[0], "end": loads[-1]}
        if "ctk" in cmed and "ctr" in cmed:
            report["cpu_ratio_ctk_vs_ctr_unpack"] = round(cmed["ctk"] / cmed["ctr"], 3)
        if "ctk_fetch" in cmed and "ctr_fetch" in cmed:
            report["cpu_ratio_ctk_vs_ctr_fetch"] = round(cmed["ctk_fetch"] / cmed["ctr_fetch"], 3)
        if "ctk" in med and "ctr" in med:
            report["ratio_ctk_vs_ctr_unpack"] = round(med["ctk"] / med["ctr"], 3)
        if "ctk_variant" in med:
            report["variant"] = args.variant
            report["ratio_ctk_variant_vs_ctr_unpack"] = round(med["ctk_variant"] / med["ctr"], 3)
            report["cpu_ratio_ctk_variant_vs_ctr_unpack"] = round(cmed["ctk_variant"] / cmed["ctr"], 3)
        if "ctk_base" in med:
            report["ratio_ctk_base_vs_ctr_unpack"] = round(med["ctk_base"] / med["ctr"], 3)
            report["ratio_ctk_vs_baseline_unpack"] = round(med["ctk"] / med["ctk_base"], 3)
        if "ctk_fetch" in med and "skopeo" in med:
            report["ratio_ctk_vs_skopeo_fetch"] = round(med["ctk_fetch"] / med["skopeo"], 3)
        if "ctk_fetch" in med and "ctr_fetch" in med:
            # the floor for anything that stores into containerd: its own Go client's `content fetch`
            report["ratio_ctk_vs_ctr_fetch"] = round(med["ctk_fetch"] / med["ctr_fetch"], 3)
            report["ratio_ctr_fetch_vs_skopeo"] = round(med["ctr_fetch"] / med["skopeo"], 3)
        if "ctk_fetch_base" in med:
            report["ratio_ctk_fetch_vs_baseline"] = round(med["ctk_fetch"] / med["ctk_fetch_base"], 3)
            report["cpu_ratio_ctk_fetch_vs_baseline"] = round(cmed["ctk_fetch"] / cmed["ctk_fetch_base"], 3)
        if "ctk" in med and "ctk_fetch" in med:
            report["ctk_time_split_s"] = {"fetch": round(med["ctk_fetch"], 3),
                                          "unpack_not_overlapped": round(med["ctk"] - med["ctk_fetch"], 3)}
        if "startup" not in skip:
            clean_store(client, blobs)
            report["startup_median_s"] = {
                "ctk-pull --help": round(statistics.median(timed(["ctk-pull", "--help"]) for _ in range(10)), 3),
                "ctk-pull images (empty)": round(statistics.median(
                    timed(ctk + ["-n", "empty", "images"]) for _ in range(10)), 3),
            }
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if reg_proc:
            reg_proc.terminate()
            reg_proc.wait()
        daemon.stop()
        if args.rate:
            teardown_netns()


if __name__ == "__main__":
    sys.exit(main())
