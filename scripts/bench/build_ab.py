"""A/B timing of two ctk-build source trees on one private stack (as root), for changes to ctk-build itself.

``python3 -m scripts.bench.build_ab --a DIR --b DIR [--runs N] [--tar-from /usr/include,/usr/share/doc]``

DIR is a directory holding the ``ctk_build`` package (e.g. a copy of ``tools/build`` at another commit); it is
put first on PYTHONPATH of the installed ``ctk-build``. Alternating A/B order each run, medians of:

* cold / cached: the build benchmark's Dockerfile (scripts/bench/build.py: RUN of 200 files, COPY 50 MiB),
  RUN with ``--network none`` (no bridge on this stack; the network is not what A/B compares)
* add-tar: ``FROM scratch`` + ``ADD big.tar /`` with ``--no-cache``, the tar made from ``--tar-from``
* extract: the same tar unpacked in-process by each tree's copier (``copier.copy`` with ``add=True``)
  into a fresh directory, without containerd, to isolate the unpacking
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from scripts.bench.build import bench_context
from scripts.bench.timing import bench_stack, timed, tool

EXTRACT = """
import sys, time
from ctk_build import copier
from ctk_build.sources import SourceTree
t0 = time.perf_counter()
copier.copy(sys.argv[1], SourceTree(sys.argv[2], context=True), ["big.tar"], "/", "/", add=True)
print(time.perf_counter() - t0)
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tar-from", default="/usr/include,/usr/share/doc")
    ap.add_argument("--phases", default="cold,cached,add-tar,extract", help="comma-separated subset")
    args = ap.parse_args()
    trees = {"a": os.path.abspath(args.a), "b": os.path.abspath(args.b)}
    with bench_stack("build-ab", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg):
        ref, ctx = bench_context(base, reg)
        tctx = base / "tctx"
        tctx.mkdir()
        (tctx / "Dockerfile").write_text("FROM scratch\nADD big.tar /\n")
        paths = [p.lstrip("/") for p in args.tar_from.split(",")]
        subprocess.run(["tar", "-C", "/", "--xattrs", "-cf", str(tctx / "big.tar"), *paths], check=True)
        n_members = int(subprocess.run(["sh", "-c", f"tar -tf {tctx / 'big.tar'} | wc -l"], check=True,
                                       capture_output=True, text=True).stdout)
        env = {w: {**os.environ, "CTK_DATA_ROOT": str(base / "data"), "PYTHONPATH": d} for w, d in trees.items()}
        ctk = [tool("ctk-build"), "--address", daemon.address, "-n", "bench", "--network", "none"]
        subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL, env=env["a"])
        cmds = {"cold": ctk + ["-q", "--no-cache", "-t", "bench", str(ctx)],
                "cached": ctk + ["-q", "-t", "bench", str(ctx)],
                "add-tar": ctk + ["-q", "--no-cache", "-t", "bigtar", str(tctx)]}
        phases = args.phases.split(",")
        times: dict[str, dict[str, list[float]]] = {p: {"a": [], "b": []} for p in phases}
        for phase, cmd in cmds.items():
            if phase not in phases:
                continue
            for w in trees:
                timed(cmd, env[w])  # warm-up (and the cache for "cached")
            for i in range(args.runs):
                for w in (("a", "b") if i % 2 == 0 else ("b", "a")):
                    times[phase][w].append(timed(cmd, env[w]))
        for i in range(args.runs if "extract" in phases else 0):
            for w in (("a", "b") if i % 2 == 0 else ("b", "a")):
                dest = base / f"x-{w}-{i}"
                dest.mkdir()
                out = subprocess.run([sys.executable, "-c", EXTRACT, str(dest), str(tctx)], check=True,
                                     capture_output=True, text=True, env=env[w]).stdout
                times["extract"][w].append(float(out))
                shutil.rmtree(dest)
        med = {p: {w: round(statistics.median(v), 3) for w, v in d.items()} for p, d in times.items()}
        print(json.dumps({"runs": args.runs, "a": trees["a"], "b": trees["b"], "tar_members": n_members,
                          "tar_bytes": (tctx / "big.tar").stat().st_size, "median_s": med,
                          "ratio_b_over_a": {p: round(m["b"] / m["a"], 3) for p, m in med.items()}},
                         indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
