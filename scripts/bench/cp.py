"""`ctk-run cp` benchmark (run as root: `python3 -m scripts.bench.cp [--runs N]`). Prints JSON with medians and
the ratio to the peer.

A running busybox container holds a 200 MiB tree at /data (3,200 files of 64 KiB in 32 directories, plus
a symlink per directory), put there once with `ctk-run cp`. Per run, alternating order, the tree is copied
out to a fresh directory on the same filesystem by

* ctk: `ctk-run cp CONTAINER:/data DEST`
* peer: `tar -C /proc/PID/root -c data | tar -x -C DEST` (what a user would do by hand as root; it follows no
  link of the container only because tar never dereferences, and resolves /proc/PID/root on the host)

Target (issue 14): ctk ≤ 1.3× the peer. State lives on the loop-mounted journaled ext4 of the other benchmarks;
the page cache is warm (one untimed round first), so both read from memory and write to the same disk, and
each sample starts after a sync.
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

FILES = 3200
DIRS = 32
SIZE = 64 << 10  # 3,200 x 64 KiB = 200 MiB


def _tree(root) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(14)
    for i in range(FILES):
        d = root / f"d{i % DIRS:02d}"
        if not d.exists():
            d.mkdir(parents=True)
            os.symlink("../d00", d / "up")
        (d / f"f{i:04d}").write_bytes(rng.randbytes(SIZE))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    mnt = loop_fs()
    with bench_stack("cp", str(mnt)) as (base, daemon, reg):
        env = {**os.environ, "CTK_DATA_ROOT": str(base / "data")}
        bb = push_busybox(base, reg)
        run = [tool("ctk-run"), "--address", daemon.address, "-n", "bench"]
        cid = subprocess.run(run + ["run", "-d", "-q", "--network", "none", "--name", "cpbench", bb, "sleep",
                                    "3600"], check=True, capture_output=True, text=True, env=env).stdout.strip()
        _tree(base / "src" / "data")
        subprocess.run(run + ["cp", str(base / "src" / "data"), "cpbench:/data"], check=True, env=env)
        shutil.rmtree(base / "src")

        from ctk_shared.containerd import Client

        pid = Client(daemon.address, "bench").tasks.get(cid).pid
        cmds = {
            "ctk_run_cp": " ".join(run) + " cp cpbench:/data {dst}",
            "tar_pipe": f"tar -C /proc/{pid}/root -c data | tar -x -C {{dst}}",
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}

        def sample(who: str, i: int) -> None:
            dst = base / f"out-{who}-{i}"
            dst.mkdir()
            where = dst if who == "tar_pipe" else dst / "data"
            os.sync()  # no dirty pages of the previous sample left for this one to wait on
            times[who].append(timed(cmds[who].format(dst=where)))
            got = sum(len(files) + len(dirs) for _, dirs, files in os.walk(dst / "data"))
            if got != FILES + 2 * DIRS:  # files, directories, one link in each
                raise SystemExit(f"{who}: {got} entries copied, expected {FILES + 2 * DIRS}")
            shutil.rmtree(dst)

        for who in cmds:  # warm-up: page cache, the interpreter's own files
            sample(who, -1)
            times[who].clear()
        for i in range(args.runs):
            for who in (list(cmds) if i % 2 == 0 else list(cmds)[::-1]):
                sample(who, i)
        med = {k: round(statistics.median(v), 3) for k, v in times.items()}
        one_file = [timed(" ".join(run) + f" cp cpbench:/etc/hostname {base}/hostname-{i}")
                    for i in range(5)]
        print(json.dumps({
            "runs": args.runs,
            "tree": {"files": FILES, "dirs": DIRS, "bytes": FILES * SIZE},
            "median_s": med,
            "ratio_ctk_vs_tar_pipe": round(med["ctk_run_cp"] / med["tar_pipe"], 3),
            "ctk_run_cp_one_small_file_median_s": round(statistics.median(one_file), 3),  # the fixed cost
            "target": "<= 1.3",
        }, indent=2))
        subprocess.run(run + ["rm", "-f", "cpbench"], capture_output=True, env=env)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
