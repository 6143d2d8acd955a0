"""Where a pull + unpack spends its time, layer by layer (issue 20): containerd's own Diff.Apply durations.

Same image, registry and loop-mounted ext4 as pull.sh, but containerd logs at debug level, so each Apply's
duration ("diff applied … d=…") is read from its log for every pull. Alternating, from a cold store each time:
`ctk-pull` (plus any `--variant ARGS`) and `ctr images pull`. Per pull: wall time, the client's CPU (wait4),
containerd's CPU (itself and the decompressors it reaped) and the registry's, the eight Apply durations and
their sum, and when the first Apply ended (seconds from the start).

The question it answers: is the unpack chain slower for one client than for the other, and where. On this
2-core machine a pull keeps both cores busy; an Apply that runs beside downloads takes longer than one alone.

Usage (as root): python3 -m scripts.bench.pull_applies [--runs N] [--variant "--max-concurrent-downloads 1"]
One JSON record on stdout (medians and every sample), one line per pull on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from scripts.bench.pull import blobs_of, build_image, clean_store, loop_fs, serve_image, timed_cpu
from scripts.bench.timing import proc_cpu
from tests.support.containerd_daemon import start_containerd
from tests.support.registry_daemon import free_port

_APPLIED = re.compile(r' d=([0-9.]+)(µs|ms|s)\b')
_SCALE = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}


def applies_in(log: str) -> list[float]:
    """The durations of the Diff.Applys that ``log`` (containerd's debug output) reports, in order."""
    out = []
    for line in log.splitlines():
        if "diff applied" in line:
            m = _APPLIED.search(line)
            if m:
                out.append(float(m.group(1)) * _SCALE[m.group(2)])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variant", default="", metavar="ARGS", help="also time `ctk-pull ARGS REF`")
    args = ap.parse_args()
    tools = ["ctk", "ctr", *(["variant"] if args.variant else [])]

    mnt = loop_fs()
    layout = build_image(mnt, False)
    ddir = mnt / "ctd-applies"
    shutil.rmtree(ddir, ignore_errors=True)
    daemon = start_containerd(ddir)
    reg = None
    try:
        daemon.config.write_text(daemon.config.read_text().replace('level = "info"', 'level = "debug"'))
        daemon.restart()
        reg, ref = serve_image(mnt, layout, f"127.0.0.1:{free_port()}", None)
        from ctk_shared.containerd import Client

        client = Client(daemon.address, "default")
        blobs = blobs_of(daemon)
        samples: dict[str, list[dict[str, object]]] = {t: [] for t in tools}
        for i in range(args.runs):
            for tool in (tools if i % 2 == 0 else tools[::-1]):
                clean_store(client, blobs)
                ns = f"applies{i}{tool}"
                if tool == "ctr":
                    cmd = ["ctr", "-a", daemon.address, "-n", ns, "images", "pull", "--plain-http", ref]
                else:
                    cmd = ["ctk-pull", "--address", daemon.address, "-n", ns, "-q",
                           *(args.variant.split() if tool == "variant" else ()), ref]
                assert daemon.proc is not None
                mark = daemon.log_path.stat().st_size
                before = (proc_cpu(daemon.proc.pid, True), proc_cpu(reg.pid, True))
                wall, used = timed_cpu(cmd, dict(os.environ))
                after = (proc_cpu(daemon.proc.pid, True), proc_cpu(reg.pid, True))
                with open(daemon.log_path, "rb") as f:
                    f.seek(mark)
                    durations = applies_in(f.read().decode(errors="replace"))
                sample = {"wall_s": round(wall, 3), "client_cpu_s": round(used, 3),
                          "containerd_cpu_s": round(after[0] - before[0], 2),
                          "registry_cpu_s": round(after[1] - before[1], 2),
                          "applies_s": [round(d, 3) for d in durations], "applies_sum_s": round(sum(durations), 3)}
                samples[tool].append(sample)
                print(f"run {i + 1}/{args.runs} {tool:>7}: wall {wall:.2f} s, client {used:.2f} / containerd "
                      f"{sample['containerd_cpu_s']} / registry {sample['registry_cpu_s']} CPU s, applies "
                      f"{' '.join(f'{d:.2f}' for d in durations)} (sum {sum(durations):.2f})", file=sys.stderr)
                time.sleep(0.5)

        def med(tool: str, key: str) -> float:
            return round(statistics.median(float(s[key]) for s in samples[tool]), 3)  # type: ignore[arg-type]

        report: dict[str, object] = {"runs": args.runs, "variant": args.variant or None, "samples": samples}
        report["median"] = {t: {k: med(t, k) for k in ("wall_s", "client_cpu_s", "containerd_cpu_s",
                                                        "registry_cpu_s", "applies_sum_s")} for t in tools}
        report["median_apply_s_per_layer"] = {
            t: [round(statistics.median(s["applies_s"][j] for s in samples[t]  # type: ignore[index]
                                        if len(s["applies_s"]) > j), 3)  # type: ignore[arg-type]
                for j in range(max(len(s["applies_s"]) for s in samples[t]))]  # type: ignore[arg-type]
            for t in tools}
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if reg is not None:
            reg.terminate()
            reg.wait()
        daemon.stop()
        shutil.rmtree(ddir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
