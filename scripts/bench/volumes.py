"""Volume benchmark harness (through scripts/bench/volumes.sh, as root). Prints JSON with medians and ratios.

* copy-up: an image (busybox + ``COPY tree /data``, built by ctk-build) whose ``/data`` holds 5,000 files,
  100 MiB in all, in 50 directories. Per run, alternating order: ``ctk-run create -v NEWVOL:/data IMG``,
  ``ctk-run create IMG`` (the same without the volume) and ``cp -a`` of the same tree (the build context's
  copy) to a fresh directory on the same filesystem. copy-up = the first minus the second.
* ``volume ls`` with 500 volumes (made in-process through ctk_run.volumes), table and ``-q``.

State lives on the loop-mounted journaled ext4 the other benchmarks use.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess

from scripts.bench.pull import loop_fs
from scripts.bench.timing import bench_stack, push_busybox, timed, tool

FILES = 5000
TOTAL = 100 << 20
DIRS = 50


def _tree(root) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(15)
    size = TOTAL // FILES
    for i in range(FILES):
        d = root / f"d{i % DIRS:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}").write_bytes(rng.randbytes(size))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    mnt = loop_fs()
    with bench_stack("volumes", str(mnt)) as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        bb = push_busybox(base, reg)
        common = ["--address", daemon.address, "-n", "bench"]
        subprocess.run([tool("ctk-pull"), *common, "-q", bb], check=True, stdout=subprocess.DEVNULL, env=env)
        ctx = base / "ctx"
        _tree(ctx / "tree")
        (ctx / "Dockerfile").write_text(f"FROM {bb}\nCOPY tree /data\n")
        img = "localhost/bench/volumes:latest"
        subprocess.run([tool("ctk-build"), *common, "-q", "--network", "none", "-t", img, str(ctx)], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        run = [tool("ctk-run"), *common]
        times: dict[str, list[float]] = {"create_volume": [], "create_plain": [], "cp_a": []}

        def sample(who: str, i: int) -> None:
            if who == "cp_a":
                dst = base / f"cp-{i}"
                times[who].append(timed(["cp", "-a", str(ctx / "tree"), str(dst)]))
                shutil.rmtree(dst)
                return
            name = f"bench-{who}-{i}"
            extra = ["-v", f"vol{i}:/data"] if who == "create_volume" else []
            times[who].append(timed(run + ["create", "-q", "--network", "none", "--name", name, *extra, img, "true"],
                                    env))
            subprocess.run(run + ["rm", name], check=True, capture_output=True, env=env)
            if extra:
                subprocess.run(run + ["volume", "rm", f"vol{i}"], check=True, capture_output=True, env=env)

        for who in times:  # warm-up: page cache, unpacked image
            sample(who, -1)
        for who in times:
            times[who].clear()
        for i in range(args.runs):
            order = list(times) if i % 2 == 0 else list(times)[::-1]
            for who in order:
                sample(who, i)
        med = {k: round(statistics.median(v), 3) for k, v in times.items()}
        copyup = med["create_volume"] - med["create_plain"]

        from ctk_run import volumes

        for i in range(500):
            volumes.create(env["CTK_DATA_ROOT"], "bench", f"ls{i:03d}", {"bench": "1"})
        ls = {"table": [], "quiet": []}
        for _ in range(max(args.runs, 7)):
            ls["table"].append(timed(run + ["volume", "ls"], env))
            ls["quiet"].append(timed(run + ["volume", "ls", "-q"], env))
        report = {
            "runs": args.runs,
            "tree": {"files": FILES, "bytes": TOTAL, "dirs": DIRS},
            "median_s": med,
            "copy_up_s": round(copyup, 3),
            "ratio_copy_up_vs_cp_a": round(copyup / med["cp_a"], 3),
            "volume_ls_500_median_s": {k: round(statistics.median(v), 3) for k, v in ls.items()},
            "help_median_s": round(statistics.median(timed(run + ["--help"], env) for _ in range(5)), 3),
        }
        print(json.dumps(report, indent=2))
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
