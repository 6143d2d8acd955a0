"""Build benchmark harness (through scripts/bench/build.sh, as root): ctk-build vs buildah bud, same run.

The Dockerfile: FROM a local busybox base, RUN writing 200 files, COPY of a 50 MiB random file, ENV, CMD.
Measured, alternating the order of the tools each run:

* cold: ``ctk-build --no-cache`` vs ``buildah bud`` (default: one commit at the end) and
  ``buildah bud --layers --no-cache`` (a commit per step, like ctk-build); also ``ctk-build --network none``,
  to show what attaching the RUN step to the bridge network costs (ctk-build's default since issue 12;
  ``buildah --isolation chroot`` runs steps in the host's network)
* cached: a rebuild with nothing changed, ``ctk-build`` vs ``buildah bud --layers``
* invalidation: one byte of the 50 MiB file changes; both rebuild from the COPY on (checked for ctk-build
  from its step lines: the RUN before the COPY is cached, the COPY is not)

Prints JSON with medians and ratios (ctk / buildah). RUN steps join a private bridge and conflist directory
(never the host's ``/etc/cni/net.d``), removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.timing import bench_stack, bridged_env, timed, tool
from tests.support import images as im

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /data && for i in $(seq 1 200); do echo "line $i" > /data/f$i; done
COPY big.bin /big.bin
ENV APP=bench
CMD ["sh"]
"""
BIG = 50 << 20



def require_buildah() -> None:
    """The peer must be there before any stack is started."""
    if shutil.which("buildah") is None:
        raise SystemExit("buildah is not installed (apt-get install buildah)")


def _buildah_storage(root: Path) -> list[str]:
    """overlay when the kernel lets buildah use it here, else vfs."""
    for driver in ("overlay", "vfs"):
        g = ["buildah", "--root", str(root / driver / "root"), "--runroot", str(root / driver / "run"),
             "--storage-driver", driver]
        if subprocess.run([*g, "images"], capture_output=True).returncode == 0:
            return g
    raise SystemExit("buildah cannot initialise its storage here")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    require_buildah()
    with bench_stack("build", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.198") as env:
        return _measure(args.runs, base, daemon, reg, env)


def cached_steps(err: str) -> list[str]:
    """The names of the steps a ``--progress=plain`` build reused (``#N name`` … ``#N CACHED``)."""
    names: dict[str, str] = {}
    cached = []
    for line in err.splitlines():
        no, _, rest = line.partition(" ")
        if not no.startswith("#"):
            continue
        if no not in names:
            names[no] = rest
        elif rest == "CACHED":
            cached.append(names[no])
    return cached


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_context(base: Path, reg) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    """The busybox base pushed to the bench registry, and the benchmark's build context: (base ref, context)."""
    im.build_image(base / "layout", "latest", [im.busybox_layer_tar()])
    ref = f"{reg.host}/bench/busybox:latest"
    im.push_layout(base / "layout", "latest", ref)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=ref))
    (ctx / "big.bin").write_bytes(random.Random(1).randbytes(BIG))
    return ref, ctx


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    ref, ctx = bench_context(base, reg)
    ctk = [tool("ctk-build"), "--address", daemon.address, "-n", "bench"]
    subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", "bench", "-q", ref], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    bh = _buildah_storage(base / "buildah")
    subprocess.run([*bh, "pull", "--tls-verify=false", "-q", ref], check=True, stdout=subprocess.DEVNULL)
    bud = [*bh, "bud", "--isolation", "chroot", "--tls-verify=false", "-q"]

    cmds = {
        "cold": {"ctk": ctk + ["-q", "--no-cache", "-t", "bench", str(ctx)],
                 "ctk_network_none": ctk + ["-q", "--no-cache", "--network", "none", "-t", "bench", str(ctx)],
                 "buildah": bud + ["-t", "bench", str(ctx)],
                 "buildah_layers": bud + ["--layers", "--no-cache", "-t", "bench", str(ctx)]},
        "cached": {"ctk": ctk + ["-q", "-t", "bench", str(ctx)],
                   "buildah_layers": bud + ["--layers", "-t", "bench", str(ctx)]},
    }
    times: dict[str, dict[str, list[float]]] = {k: {t: [] for t in v} for k, v in cmds.items()}
    cpu: dict[str, dict[str, list[float]]] = {k: {t: [] for t in v} for k, v in cmds.items()}
    loads = [os.getloadavg()[0]]
    for phase in ("cold", "cached"):
        for _t, cmd in cmds[phase].items():  # warm-up: page cache, and the cache for the cached phase
            timed(cmd, env)
        for i in range(runs):
            order = list(cmds[phase])
            for who in (order if i % 2 == 0 else order[::-1]):
                before = _children_cpu()
                times[phase][who].append(timed(cmds[phase][who], env))
                cpu[phase][who].append(_children_cpu() - before)
        loads.append(os.getloadavg()[0])

    # invalidation: a new content of the COPY source each run; both rebuild from that step on
    inval: dict[str, list[float]] = {"ctk": [], "buildah_layers": []}
    data = bytearray((ctx / "big.bin").read_bytes())
    ctk_ok = True
    for i in range(runs):
        data[i] ^= 0xFF
        (ctx / "big.bin").write_bytes(bytes(data))
        order = ["ctk", "buildah_layers"] if i % 2 == 0 else ["buildah_layers", "ctk"]
        for who in order:
            if who == "buildah_layers":
                inval[who].append(timed(cmds["cached"][who], env))
                continue
            t0 = time.perf_counter()
            r = subprocess.run(ctk + ["--progress=plain", "-t", "bench", str(ctx)], capture_output=True, text=True,
                               env=env)
            inval[who].append(time.perf_counter() - t0)
            cached = cached_steps(r.stderr)
            ctk_ok &= r.returncode == 0 and any(" RUN " in c for c in cached) and \
                not any(" COPY " in c for c in cached)

    med = {phase: {t: round(statistics.median(v), 3) for t, v in d.items()} for phase, d in times.items()}
    report = {
        "runs": runs,
        "ctk_build": ctk[0],
        "buildah_storage": bh[bh.index("--storage-driver") + 1],
        "median_s": med,
        "ratio_cold_ctk_vs_buildah": round(med["cold"]["ctk"] / med["cold"]["buildah"], 3),
        "ratio_cold_ctk_vs_buildah_layers": round(med["cold"]["ctk"] / med["cold"]["buildah_layers"], 3),
        "ratio_cold_ctk_network_none_vs_buildah": round(med["cold"]["ctk_network_none"] / med["cold"]["buildah"], 3),
        "ratio_cached_ctk_vs_buildah_layers": round(med["cached"]["ctk"] / med["cached"]["buildah_layers"], 3),
        # user+sys CPU of the command's own process tree (ctk-build and the ctk-net hooks it starts; not
        # containerd, its shims or runc, which work for ctk-build; all of buildah, which has no daemon)
        "median_cpu_s": {phase: {t: round(statistics.median(v), 3) for t, v in d.items()} for phase, d in cpu.items()},
        "load_average_1min": [round(x, 1) for x in loads + [os.getloadavg()[0]]],
        "invalidation_median_s": {t: round(statistics.median(v), 3) for t, v in inval.items()},
        "ctk_copy_change_invalidates_from_copy": ctk_ok,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
