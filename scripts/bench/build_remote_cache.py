"""A fresh machine building with ``--cache-from`` a registry that holds the complete cache, vs the cold build of
the same Dockerfile on a fresh machine (as root): ``python3 -m scripts.bench.build_remote_cache [--runs N]``.

Every timed build runs on a containerd started for it with empty state (and an empty data root): both pull the
real Debian base (scripts/images, pushed to the bench registry) and then either run every step or take every step
from the cache in the same registry (written once, untimed, by ``--cache-to …,mode=max``). The Dockerfile does
real work: apt-get update + install, a COPY of 24 MiB, xz of it, 3000 small files::

    FROM debian
    COPY apt-sources/ /etc/apt/sources.list.d/
    RUN apt-get update && apt-get install -y --no-install-recommends hello file xz-utils
    COPY data.bin /data.bin
    RUN xz -T1 -6 -k /data.bin && sha256sum /data.bin.xz > /data.sum
    RUN for i in $(seq 1 3000); do echo "line $i" > /srv/f$i; done

Alternating order; prints JSON with the medians, the ratio cached / cold (target <= 0.3), the CPU seconds of the
ctk-build process itself, the load average at each sample, and whether every cached build reused all steps and
gave the digest of the build that exported the cache.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.timing import bench_stack, bridged_env, tool, unmount_under

APT = "-q -o APT::Sandbox::User=root"
DOCKERFILE = f"""\
FROM {{base}}
COPY apt-sources/ /etc/apt/sources.list.d/
RUN apt-get update {APT} && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y {APT} --no-install-recommends hello file xz-utils
COPY data.bin /data.bin
RUN xz -T1 -6 -k /data.bin && sha256sum /data.bin.xz > /data.sum
RUN mkdir -p /srv/files && for i in $(seq 1 3000); do echo "line $i" > /srv/files/f$i; done
CMD ["hello"]
"""
STEPS = 5  # COPY, RUN, COPY, RUN, RUN


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with bench_stack("build-rc", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.198") as env:
        return _measure(args.runs, base, daemon, reg, env)


def _data(path: Path) -> None:
    """24 MiB that xz has real work with: words in random order."""
    rng = random.Random(19)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    with open(path, "wb") as f:
        n = 0
        while n < 24 << 20:
            line = b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
            f.write(line)
            n += len(line)


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr); it must succeed."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {err.decode(errors='replace').strip()[-2000:]}")
    return took, out.decode(), err.decode()


def _fresh_build(base: Path, name: str, ctx: Path, env: dict[str, str], extra: list[str]) -> tuple[float, float, str, str]:
    """One build on a containerd started for it with empty state, then stopped and removed."""
    from tests.support.containerd_daemon import start_containerd

    d = base / name
    daemon = start_containerd(d / "ctd")
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        took, out, err = _run([tool("ctk-build"), "--address", daemon.address, "-n", "bench",
                                  "--progress=plain", *extra, "-t", "app", str(ctx)],
                                 {**env, "CTK_DATA_ROOT": str(d / "data")})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return took, cpu, out, err
    finally:
        daemon.stop()
        unmount_under(str(d))
        shutil.rmtree(d, ignore_errors=True)


def _cached(err: str) -> int:
    return sum(1 for line in err.splitlines() if line.endswith(" CACHED"))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    from scripts.images.make import build_image

    ref = f"{reg.host}/bench/debian:latest"
    build_image("debian", ref, base / "debian-context", address=daemon.address, namespace="bench", push=True,
                quiet=True, env={**env, "CTK_DATA_ROOT": str(base / "data")})
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=ref))
    _data(ctx / "data.bin")
    subprocess.run([sys.executable, "-m", "scripts.images", "sources", str(ctx / "apt-sources")], check=True,
                   stdout=subprocess.DEVNULL)
    cache = f"type=registry,ref={reg.host}/bench/app:buildcache"
    _, _, exported, err = _fresh_build(base, "export", ctx, env, ["--cache-to", f"{cache},mode=max"])
    if "exported build cache" not in err:
        raise SystemExit(f"the cache was not exported:\n{err[-2000:]}")
    cmds = {"cold": [], "cached": ["--cache-from", cache]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    loads: dict[str, list[float]] = {k: [] for k in cmds}
    all_cached, same_digest = True, True
    for i in range(runs):
        for who in (list(cmds) if i % 2 == 0 else list(cmds)[::-1]):
            loads[who].append(_load())
            took, secs, out, err = _fresh_build(base, f"{who}{i}", ctx, env, cmds[who])
            times[who].append(took)
            cpu[who].append(secs)
            if who == "cached":
                all_cached &= _cached(err) == STEPS
                same_digest &= out == exported
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(json.dumps({
        "runs": runs,
        "command": "ctk-build --cache-from type=registry,ref=REG/bench/app:buildcache -t app CTX (fresh containerd)"
                   " vs ctk-build -t app CTX (fresh containerd)",
        "median_s": med,
        "runs_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "cpu_s_median (ctk-build and the processes it waited for)": {
            k: round(statistics.median(v), 2) for k, v in cpu.items()},
        "load_1min_at_start": loads,
        "ratio_cached_vs_cold": round(med["cached"] / med["cold"], 3),
        "ratio_min_cached_vs_min_cold": round(min(times["cached"]) / min(times["cold"]), 3),
        "every_step_cached": all_cached,
        "same_digest_as_exporting_build": same_digest,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
