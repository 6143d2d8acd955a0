"""arm64 build benchmark (issue 19): ``ctk-build --platform linux/arm64`` vs ``buildah bud --platform linux/arm64``
of the same Dockerfile, same run, alternating order. Run as root after scripts/setup (QEMU registered).

The base is the real Debian arm64 image of scripts/images (``debian-arm64``: mmdebstrap under QEMU, cached
under .cache/images; a cold cache adds ~2.5 min once), pushed to the bench's registry; buildah pulls it from
there into its own storage. Two RUN steps run under QEMU user emulation: a loop of 200 shell forks writing
files, and a dpkg query. Cold builds: ``ctk-build --no-cache --network none`` vs ``buildah bud`` with the
isolation a buildah user gets by default (``oci``: runc, as ctk-build's steps and BuildKit's), with
``--isolation chroot`` (no container at all: the cheapest buildah can do), and ``--layers --no-cache`` (a
commit per step, as ctk-build does; chroot).

Besides wall-clock time, the CPU seconds of each tool's whole process tree: for buildah its children (runc,
the emulated steps); for ctk-build the client, the bench's containerd with its shims and runc (moved into a
cgroup of their own) and the step containers (the cgroup of the namespace, where runc puts them). On a
machine shared with other work the CPU seconds are the load-robust figure.

``--favour``: both tools' whole trees (this bench and its children, the bench's containerd with its shims, the
step containers' namespace cgroup) run in cgroups of the highest CPU weight, so the other work of a shared
machine delays both sides less and alike: the wall-clock figures of a loaded machine come nearer the quiet ones.

``--log DIR``: every build's output (``--progress=plain``, buildah without ``-q``) with each line's arrival
time, to read where the time of each phase goes (FROM, each RUN, the commits).

Usage: python3 -m scripts.bench.build_arm64 [--runs N] [--favour] [--log DIR]   (prints JSON: medians, ratios, load)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from scripts.bench.build import _buildah_storage, require_buildah
from scripts.bench.timing import bench_stack, bridged_env, tool

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /data && for i in $(seq 1 200); do echo "line $i $(uname -m)" > /data/f$i; done
RUN dpkg-query -W -f '${{Package}} ${{Architecture}}\\n' > /packages.txt && uname -m > /arch
ENV APP=bench
CMD ["bash"]
"""
NAMESPACE = "bench-arm64"  # ctk-build's steps run in the cgroup /NAMESPACE/<step>: ours alone
CGROUP = "/sys/fs/cgroup"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_dir(name: str) -> Path:
    """The cgroup directory that counts CPU time (v1: the cpuacct hierarchy; v2: the unified one)."""
    v1 = Path(CGROUP, "cpuacct")
    return (v1 if v1.is_dir() else Path(CGROUP)) / name


def cgroup_cpu(name: str) -> float:
    """CPU seconds used so far in cgroup ``name`` and below (0 when it does not exist yet)."""
    d = _cpu_dir(name)
    with contextlib.suppress(FileNotFoundError):
        if (d / "cpuacct.usage").exists():
            return int((d / "cpuacct.usage").read_text()) / 1e9
        for line in (d / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    return 0.0


@contextlib.contextmanager
def own_cgroup(name: str, pid: int) -> Iterator[None]:
    """Move ``pid`` (the bench's containerd: its shims and runc start inside) into a CPU-counting cgroup."""
    d = _cpu_dir(name)
    d.mkdir(exist_ok=True)
    (d / "cgroup.procs").write_text(str(pid))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            (d.parent / "cgroup.procs").write_text(str(pid))
        # runc leaves the (empty) namespace cgroup in every hierarchy (v1: one per controller)
        for sub in (d, _cpu_dir(NAMESPACE), *Path(CGROUP).glob(f"*/{NAMESPACE}")):
            with contextlib.suppress(OSError):
                sub.rmdir()


def _weight_dir(name: str) -> tuple[Path, str, str]:
    """(cgroup directory, weight file, highest weight) of the CPU controller: v1 cpu.shares, v2 cpu.weight."""
    v1 = Path(CGROUP, "cpu")
    if v1.is_dir():
        return v1 / name, "cpu.shares", "262144"
    return Path(CGROUP, name), "cpu.weight", "10000"


@contextlib.contextmanager
def favoured(pids: dict[str, int]) -> Iterator[None]:
    """Each ``{cgroup name: pid}`` moved into a CPU cgroup of the highest weight (the namespace's cgroup, where
    runc puts the steps, made with that weight too); everything back and removed at the end."""
    made: list[tuple[Path, int]] = []
    try:
        for name, pid in [*pids.items(), (NAMESPACE, 0)]:
            d, weight, top = _weight_dir(name)
            d.mkdir(exist_ok=True)
            if not (d / weight).exists():  # v2 without the cpu controller enabled below the root
                raise SystemExit(f"--favour: no {d / weight} (enable the cpu controller: +cpu in "
                                 f"{d.parent}/cgroup.subtree_control)")
            (d / weight).write_text(top)
            if pid:
                (d / "cgroup.procs").write_text(str(pid))
            made.append((d, pid))
        yield
    finally:
        for d, pid in reversed(made):
            if pid:
                with contextlib.suppress(OSError):
                    (d.parent / "cgroup.procs").write_text(str(pid))
            with contextlib.suppress(OSError):
                d.rmdir()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(cmd: list[str], env: dict[str, str], daemon_cg: str, log: Path | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole tree) of one build; with ``log``, its output with line times."""
    cpu0 = children_cpu() + cgroup_cpu(daemon_cg) + cgroup_cpu(NAMESPACE)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    lines = [f"{time.perf_counter() - t0:7.3f} {raw.decode(errors='replace').rstrip()}" for raw in p.stdout]
    code = p.wait()
    wall = time.perf_counter() - t0
    cpu = children_cpu() + cgroup_cpu(daemon_cg) + cgroup_cpu(NAMESPACE) - cpu0
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {code}: {' / '.join(lines[-5:])}")
    if log is not None:
        log.write_text("\n".join([" ".join(cmd), *lines, f"{wall:7.3f} exit, CPU {cpu:.3f} s"]) + "\n")
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--favour", action="store_true", help="run both tools at the highest CPU weight (cgroups)")
    ap.add_argument("--log", type=Path, help="write every build's timed output under this directory")
    args = ap.parse_args()
    require_buildah()
    from ctk_build.platforms import emulator_problem
    from ctk_shared.oci import Platform

    problem = emulator_problem(Platform.parse("linux/arm64"))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    if args.log:
        args.log.mkdir(parents=True, exist_ok=True)
    with bench_stack("build-arm64", os.environ.get("CTK_BENCH_DIR", "/var/tmp")) as (base, daemon, reg), \
            bridged_env(base, "10.197") as env:
        return _measure(args.runs, base, daemon, reg, env, args.log, args.favour)


def _measure(runs: int, base: Path, daemon, reg, env: dict[str, str],  # type: ignore[no-untyped-def]
             log: Path | None, favour: bool) -> int:
    from scripts.images.make import build_image

    ref = f"{reg.host}/bench/debian-arm64:latest"
    build_image("debian-arm64", ref, base / "base-context", address=daemon.address, namespace="bench", push=True,
                quiet=True, env=env)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=ref))
    quiet = [] if log else ["-q"]
    ctk = [tool("ctk-build"), "--address", daemon.address, "-n", NAMESPACE]
    bh = _buildah_storage(base / "buildah")
    subprocess.run([*bh, "pull", "--platform", "linux/arm64", "--tls-verify=false", "-q", ref], check=True,
                   stdout=subprocess.DEVNULL)
    bud = [*bh, "bud", "--platform", "linux/arm64", "--tls-verify=false", *quiet]
    env = {k: v for k, v in env.items() if k != "BUILDAH_ISOLATION"}  # buildah's own default: oci
    cmds = {
        # --network none: buildah --isolation chroot sets up no network for its steps either
        "ctk": ctk + [*(["--progress=plain"] if log else ["-q"]), "--no-cache", "--network", "none",
                      "--platform", "linux/arm64", "-t", "bench-arm64", str(ctx)],
        "buildah": bud + ["--isolation", "chroot", "-t", "bench-arm64", str(ctx)],
        "buildah_oci": bud + ["--isolation", "oci", "--network", "none", "-t", "bench-arm64", str(ctx)],
        "buildah_layers": bud + ["--isolation", "chroot", "--layers", "--no-cache", "-t", "bench-arm64", str(ctx)],
    }
    daemon_cg = f"ctk-bench-arm64-{os.getpid()}"
    assert daemon.proc is not None
    # the daemon's weight cgroup has the name of its counting one (one directory where they are one hierarchy)
    favour_cg = {daemon_cg: daemon.proc.pid, f"{daemon_cg}-tools": os.getpid()} if favour else {}
    with own_cgroup(daemon_cg, daemon.proc.pid), favoured(favour_cg):
        for who, cmd in cmds.items():  # warm-up: page cache, the base pulled/unpacked in both stores
            run_one(cmd, env, daemon_cg, log / f"{who}-0.log" if log else None)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        loads = [load()]
        for i in range(runs):
            order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
            for who in order:
                wall, cpu = run_one(cmds[who], env, daemon_cg, log / f"{who}-{i + 1}.log" if log else None)
                times[who].append(wall)
                cpus[who].append(cpu)
            loads.append(load())
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    cpu_med = {k: round(statistics.median(v), 3) for k, v in cpus.items()}
    report = {
        "runs": runs,
        "commands": {k: " ".join(v) for k, v in cmds.items()},
        "median_s": med,
        "all_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "cpu_median_s": cpu_med,
        "ratio_ctk_vs_buildah": round(med["ctk"] / med["buildah"], 3),
        "ratio_ctk_vs_buildah_oci": round(med["ctk"] / med["buildah_oci"], 3),
        "ratio_ctk_vs_buildah_layers": round(med["ctk"] / med["buildah_layers"], 3),
        "cpu_ratio_ctk_vs_buildah": round(cpu_med["ctk"] / cpu_med["buildah"], 3),
        "cpu_ratio_ctk_vs_buildah_oci": round(cpu_med["ctk"] / cpu_med["buildah_oci"], 3),
        "favoured": favour,
        "load_average_1_5_15": loads,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
