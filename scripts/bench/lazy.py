"""Lazy-pulling benchmark harness (run through scripts/bench/lazy.sh, as root).

One image of SIZE MiB in LAYERS layers: a busybox base, then layers of incompressible random files
(``/data/layerN/fNNNN.bin``), the top one also holding ``/etc/hello.txt``. Pushed to a private registry as
``bench/lazy:plain`` (gzip), converted with ``ctk-pull convert --estargz`` and pushed as ``bench/lazy:esgz``.
The registry's storage is kept between runs under the cache dir (keyed by size, layers and file size; the
eStargz copy also by the source of ctk's converter), so only the first run pays for generation and conversion.

Timed per run, in alternating order, each from a cold store (image removed with ``ctk-pull rm``, a synchronous
GC, then waited for until no blob, no snapshot, no lazily mounted layer and no cached chunk is left):
  full      ctk-pull REF_PLAIN; ctk-run --rm --network none REF_PLAIN cat /etc/hello.txt       (overlayfs)
  ctr       ctr images pull --plain-http REF_PLAIN; ctr run --rm REF_PLAIN ID cat /etc/hello.txt (overlayfs)
  lazy      ctk-pull --snapshotter ctk-lazy REF_ESGZ; ctk-run --snapshotter ctk-lazy … REF_ESGZ cat …
  lazy-run  ctk-run --snapshotter ctk-lazy --rm … REF_ESGZ cat …  (ctk-run pulls the missing image itself)
The time is from the start of the pull to the end of the command (whose output is checked); bytes fetched are
the bodies the registry sent (its access log) while the variant ran.

Then read throughput: every file of the image read once inside a container (``find / -xdev -type f -exec dd
bs=1M``, timed by busybox ``time`` inside the container), through the lazy mounts right after a fresh lazy pull (cold:
nothing fetched yet) and again (warm, median of 3), and through overlayfs after a full pull with the page cache
dropped (cold) and again (warm, median of 3).

The private stack (snapshotter daemon ``ctk-pull lazy-serve``, containerd with it as proxy plugin ``ctk-lazy``,
registry) lives on the loop-mounted journaled ext4 the other benchmarks use and is torn down, unmounted and
removed at the end, also on failure. With --rate the registry runs in a network namespace behind a veth shaped
with tc (tbf, both directions). Human table on stderr, one JSON record on stdout.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.pull import NETNS, NS_IP, loop_fs, shaped_netns, teardown_netns
from scripts.bench.timing import bench_stack, drop_everything, proc_cpu, tool
from tests.support.lazy_fixtures import SNAPSHOTTER, LazyEnv
from tests.support.registry_daemon import free_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CTK_BENCH_LAZY_CACHE", "/var/tmp/ctk-bench-lazy"))
NS = "lazybench"
PREP_NS = "lazyprep"

REPO = "bench/lazy"
HELLO_PATH = "/etc/hello.txt"
HELLO = b"hello from the ctk lazy-pull benchmark\n"
VARIANTS = ("full", "ctr", "lazy", "lazy-run")
# named images (MiB of random data, layers): the default 1 GiB one, and issue 20's 9-layer ~350 MiB gzip image
CASES = {"1g": (1024, 8), "9x350": (350, 9)}
# every file read once with 1 MiB read()s, timed inside the container; then the bytes that makes (metadata only).
# Not `cat … | wc -c`: busybox's wc caps a pipe at ~110 MB/s here, far below a page-cache read.
READ_ALL = ("busybox time -p sh -c 'find / -xdev -type f -exec dd if={} of=/dev/null bs=1M \\; 2>/dev/null'; "
            "find / -xdev -type f -exec stat -c %s {} + | awk '{s += $1} END {print s}'")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the image --------------------------------------------------------------------------------------------------
def cache_key(size_mib: int, layers: int, file_mib: int) -> str:
    return f"{size_mib}m-{layers}l-{file_mib}f"


def converter_hash() -> str:
    """What the cached eStargz copy depends on: the source of ctk's eStargz writer and converter."""
    h = hashlib.sha256()
    for rel in ("shared/ctk_shared/estargz/writer.py", "shared/ctk_shared/estargz/format.py",
                "shared/ctk_shared/image_convert.py", "shared/ctk_shared/containerd/convert.py",
                "tools/pull/ctk_pull/convert_cmds.py"):
        p = ROOT / rel
        if p.exists():
            h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def image_layers(size_mib: int, layers: int, file_mib: int) -> Iterator[bytes]:
    """Uncompressed layer tars, base first: busybox, then LAYERS-1 layers of random files sharing SIZE MiB, the
    last one with HELLO_PATH too. A generator, so build_image compresses a layer while the next is generated."""
    from tests.support import images as im

    yield im.busybox_layer_tar()
    n = max(1, layers - 1)
    per_layer = (size_mib << 20) // n
    file_size = file_mib << 20
    for i in range(n):
        data = im.random_bytes(f"ctk-lazy-bench/{i}", per_layer)
        t = im.LayerTar()
        for j, off in enumerate(range(0, per_layer, file_size)):
            t.file(f"data/layer{i}/f{j:04d}.bin", data[off:off + file_size])
        if i == n - 1:
            t.file(HELLO_PATH, HELLO)
        del data
        yield t.to_bytes()


def manifest_layers(host: str, ref: str) -> list[dict[str, Any]]:
    import requests

    repo, _, tag = ref.rpartition(":")
    r = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", timeout=30, headers={"Accept": ", ".join((
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"))})
    r.raise_for_status()
    return list(r.json()["layers"])


# --- the registry (storage in the cache dir, access log for bytes fetched) -----------------------------------------
@dataclass
class Registry:
    storage: Path
    log_path: Path
    listen: str
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self.listen

    def start(self) -> None:
        import requests

        cfg = self.log_path.with_suffix(".yml")
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n"
                       f"  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
                       f"  maintenance:\n    uploadpurging:\n      enabled: false\n"
                       f"http:\n  addr: {self.listen}\n  secret: ctk-bench\n")
        cmd = ["docker-registry", "serve", str(cfg)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise SystemExit(f"registry exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                requests.get(f"http://{self.listen}/v2/", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"registry on {self.listen} did not answer: {self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, n: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def mark(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    _LINE = re.compile(rb'"(?:GET) (/v2/\S+/blobs/\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')

    def blob_bytes_since(self, mark: int) -> tuple[int, int]:
        """(body bytes of blob GETs, number of blob GETs) in the access log after ``mark``."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            text = f.read()
        total = n = 0
        for m in self._LINE.finditer(text):
            if m.group(2) in (b"200", b"206"):
                n += 1
                total += int(m.group(3)) if m.group(3) != b"-" else 0
        return total, n


# --- running and cleaning -------------------------------------------------------------------------------------------
@dataclass
class Bench:
    daemon: Any
    reg: Registry
    sn: LazyEnv
    data_root: Path
    insecure: bool
    ctr_ids: int = 0
    fetched: dict[str, list[int]] = field(default_factory=dict)

    def ref(self, tag: str) -> str:
        return f"{self.reg.host}/{REPO}:{tag}"

    def ctk(self, name: str, ns: str = NS, snapshotter: str | None = None) -> list[str]:
        cmd = [tool(name), "--address", self.daemon.address, "-n", ns, "--data-root", str(self.data_root)]
        if snapshotter:
            cmd += ["--snapshotter", snapshotter]
        if self.insecure:
            cmd.append("--insecure-registry")
        return cmd

    def ctr(self, ns: str = NS) -> list[str]:
        return ["ctr", "-a", self.daemon.address, "-n", ns]

    def clean(self) -> None:
        """Every image gone from every namespace, then wait for GC: no blob, no snapshot (containerd's view and the
        snapshotter's own), no lazily mounted layer, no cached chunk."""
        from ctk_shared.containerd import Client

        client = Client(self.daemon.address, "default")
        try:
            names = [img.name for img in client.with_namespace(NS).images.list()]
            if names:
                subprocess.run(self.ctk("ctk-pull") + ["rm", "-f", *names], capture_output=True, check=False)
            drop_everything(client)
            blobs = self.daemon.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
            direct = Client(str(self.sn.socket), "unused")
            try:
                left: list[str] = []
                for _ in range(400):
                    left = []
                    if blobs.exists() and any(blobs.iterdir()):
                        left.append("blobs")
                    for ns in client.namespaces.list():
                        for sn in ("overlayfs", SNAPSHOTTER):
                            if client.with_namespace(ns).snapshots(sn).list():
                                left.append(f"{ns}/{sn} snapshots")
                    if direct.snapshots(SNAPSHOTTER).list():
                        left.append("ctk-lazy's own snapshots")
                    if self.sn.layer_processes():
                        left.append("lazyfs processes")
                    if not left:
                        break
                    time.sleep(0.05)
                else:
                    raise SystemExit(f"still present after clean-up: {', '.join(left)}\n{self.sn.log_tail()}")
            finally:
                direct.close()
        finally:
            client.close()
        shutil.rmtree(self.sn.root / "cache", ignore_errors=True)

    def stack_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the long-lived servers (containerd, the registry, the snapshotter daemon and its
        zygote) and of the layer processes alive now: beside the clients' own CPU (``wait4``), what a variant
        costs the machine, a figure that holds up when other work loads it (wall time does not)."""
        sn_pid = self.sn.proc.pid if self.sn.proc is not None else 0
        layer = sum(proc_cpu(p) for p in self.sn.layer_processes())
        zygotes = [p for p in child_pids(sn_pid) if p not in set(self.sn.layer_processes())] if sn_pid else []
        return {"containerd": proc_cpu(self.daemon.proc.pid, True) if self.daemon.proc else 0.0,
                "registry": proc_cpu(self.reg.proc.pid, True) if self.reg.proc else 0.0,
                "snapshotter": (proc_cpu(sn_pid) + sum(proc_cpu(z) for z in zygotes)) if sn_pid else 0.0,
                "layer_processes": layer}

    def run(self, cmd: list[str]) -> tuple[float, str, str]:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if p.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr.strip()}\n"
                             f"snapshotter log:\n{self.sn.log_tail()}")
        return dt, p.stdout, p.stderr

    def hello_cmd(self, variant: str) -> list[list[str]]:
        """The commands of one variant: [pull, run] or [run]."""
        plain, esgz = self.ref("plain"), self.ref("esgz")
        cat = ["cat", HELLO_PATH]
        if variant == "full":
            return [self.ctk("ctk-pull") + ["pull", "-q", "--format", "json", plain],
                    self.ctk("ctk-run") + ["run", "--rm", "-q", "--network", "none", plain, *cat]]
        if variant == "ctr":
            self.ctr_ids += 1
            return [self.ctr() + ["images", "pull", "--plain-http", plain],
                    self.ctr() + ["run", "--rm", plain, f"lazybench-{os.getpid()}-{self.ctr_ids}", *cat]]
        if variant == "lazy":
            return [self.ctk("ctk-pull", snapshotter=SNAPSHOTTER) + ["pull", "-q", "--format", "json", esgz],
                    self.ctk("ctk-run", snapshotter=SNAPSHOTTER) + ["run", "--rm", "-q", "--network", "none", esgz,
                                                                    *cat]]
        if variant == "lazy-run":
            return [self.ctk("ctk-run", snapshotter=SNAPSHOTTER) + ["run", "--rm", "-q", "--network", "none", esgz,
                                                                    *cat]]
        raise ValueError(variant)

    def measure(self, variant: str) -> dict[str, Any]:
        """One cold pull + first command: total, pull and run seconds, bytes fetched, the pull's own record."""
        self.clean()
        mark = self.reg.mark()
        sn_mark = self.sn.log_path.stat().st_size if self.sn.log_path.exists() else 0
        cmds = self.hello_cmd(variant)
        times, rec = [], {}
        wall0 = time.time()
        cpu0 = self.stack_cpu()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for cmd in cmds:
            dt, out, _ = self.run(cmd)
            times.append(dt)
            if cmd is cmds[-1]:
                if out.encode() != HELLO:
                    raise SystemExit(f"{variant}: the command printed {out!r}, not {HELLO!r}")
            elif out.strip().startswith("{"):
                rec = json.loads(out.strip().splitlines()[-1])
        total = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1 = self.stack_cpu()
        cpu = {k: round(cpu1[k] - (cpu0[k] if k != "layer_processes" else 0.0), 3) for k in cpu1}
        cpu["clients"] = round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 3)
        time.sleep(0.2)  # the registry writes its access log line after the body
        fetched, requests_ = self.reg.blob_bytes_since(mark)
        res = {"total": total, "pull": times[0] if len(times) == 2 else None, "run": times[-1],
               "fetched": fetched, "blob_requests": requests_, "cpu": cpu | {"all": round(sum(cpu.values()), 3)},
               "load": os.getloadavg()[0]}
        if rec:
            res["remote_layers"] = rec.get("RemoteLayers")
        if variant.startswith("lazy"):
            with open(self.sn.log_path, "rb") as f:
                f.seek(sn_mark)
                text = f.read().decode(errors="replace")
            res["phases"] = lazy_phases(text, wall0, times[0] if len(times) == 2 else None) | {"end": round(total, 3)}
        return res

    def read_all(self, ref: str, snapshotter: str | None) -> tuple[float, int]:
        """(seconds, bytes) of reading every file of the image once inside a container, timed in the container."""
        cmd = self.ctk("ctk-run", snapshotter=snapshotter) + ["run", "--rm", "-q", "--network", "none", ref,
                                                              "sh", "-c", READ_ALL]
        _, out, err = self.run(cmd)
        m = re.search(r"^real\s+([\d.]+)", err, re.M)
        if not m:
            raise SystemExit(f"no `real` time in {err!r}")
        return float(m.group(1)), int(out.strip())


_SN_LINE = re.compile(r"^ctk-pull lazy-serve: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+) (.*)$")


def lazy_phases(log_text: str, t0: float, pull_end: float | None) -> dict[str, float]:
    """Where a lazy sample's time went, from the snapshotter's time-stamped (``--debug``) log: seconds from the
    start of the pull to the first layer's Prepare (the client's start, resolve, manifest and config), the
    Prepares of all layers (the snapshotter's manifest read, every TOC fetch and FUSE mount, each Prepare
    adopting its mount), the end of the pull, and, in the run, up to the Prepare of the container's own snapshot
    (ctk-run's start, image and config read), then from there to the end (create, start, first output, exit,
    removal)."""
    from datetime import UTC, datetime

    events: list[tuple[float, str]] = []
    for line in log_text.splitlines():
        m = _SN_LINE.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp() - t0
            events.append((t, m.group(3)))

    def first(pred: Any) -> float | None:
        return next((t for t, msg in events if pred(msg)), None)

    def last(pred: Any) -> float | None:
        return next((t for t, msg in reversed(events) if pred(msg)), None)

    out: dict[str, float] = {}
    layer_prep = first(lambda m: m.startswith("Prepare key=") and "/extract-" in m)
    manifest = first(lambda m: '"GET /v2/' in m and "/manifests/" in m)
    mounted = last(lambda m: " mounted lazily at " in m)
    adopted = last(lambda m: m.startswith("Prepare: snapshot ") and "already exists" in m)
    container = last(lambda m: m.startswith("Prepare key=") and "/extract-" not in m)
    for name, at in (("first_layer_prepare", layer_prep), ("manifest_read", manifest), ("last_mount", mounted),
                     ("last_layer_adopted", adopted), ("pull_end", pull_end), ("container_snapshot", container)):
        if at is not None:
            out[name] = round(at, 3)
    out["mounts"] = len([1 for _, m in events if " mounted lazily at " in m])
    return out


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for t in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in t.read_text().split()]
        except OSError:
            pass
    return out


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another lazy benchmark holds {path}") from None
        yield


# --- preparation ------------------------------------------------------------------------------------------------------
def prepare(b: Bench, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Make sure the registry storage in ``cache`` holds the plain and the eStargz image; returns the state."""
    from tests.support import images as im

    state_path = cache / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    plain, esgz = b.ref("plain"), b.ref("esgz")
    t_all = time.perf_counter()
    if "plain" not in state:
        layout = cache / "layout"
        shutil.rmtree(layout, ignore_errors=True)
        log(f"generating {args.size_mib} MiB in {args.layers} layers ({args.file_mib} MiB random files) and "
            f"gzipping it…")
        t0 = time.perf_counter()
        info = im.build_image(layout, "latest", image_layers(args.size_mib, args.layers, args.file_mib),
                              config={"Env": [im.DEFAULT_PATH], "Cmd": ["cat", HELLO_PATH]},
                              history=[f"lazy bench layer {i}" for i in range(args.layers)])
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        digest = im.push_layout(layout, "latest", plain)
        t_push = time.perf_counter() - t0
        shutil.rmtree(layout, ignore_errors=True)
        state = {"plain": {"digest": digest, "generate_s": round(t_gen, 1), "push_s": round(t_push, 1),
                           "uncompressed": sum(x.uncompressed_size for x in info.layers)}}
        state_path.write_text(json.dumps(state, indent=1))
        log(f"  generated in {t_gen:.1f}s, pushed in {t_push:.1f}s")
    want = converter_hash()
    if state.get("esgz", {}).get("converter") != want:
        log("converting to eStargz with ctk-pull convert --estargz…")
        t0 = time.perf_counter()
        b.run(b.ctk("ctk-pull", ns=PREP_NS) + ["pull", "-q", "--unpack", "false", plain])
        t_pull = time.perf_counter() - t0
        t0 = time.perf_counter()
        b.run(b.ctk("ctk-pull", ns=PREP_NS) + ["convert", "-q", "--estargz", plain, esgz])
        t_conv = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, out, _ = b.run(b.ctk("ctk-pull", ns=PREP_NS) + ["push", "-q", esgz])
        t_push = time.perf_counter() - t0
        digest = out.strip().rpartition("@")[2]
        state["esgz"] = {"digest": digest, "converter": want, "pull_s": round(t_pull, 1),
                         "convert_s": round(t_conv, 1), "push_s": round(t_push, 1)}
        state_path.write_text(json.dumps(state, indent=1))
        log(f"  fetched in {t_pull:.1f}s, converted in {t_conv:.1f}s, pushed in {t_push:.1f}s")
        b.clean()
    state["prepare_s"] = round(time.perf_counter() - t_all, 1)
    pl, el = manifest_layers(b.reg.host, f"{REPO}:plain"), manifest_layers(b.reg.host, f"{REPO}:esgz")
    toc = "containerd.io/snapshot/stargz/toc.digest"
    if not all(toc in x.get("annotations", {}) for x in el):
        raise SystemExit("the eStargz image has layers without a TOC digest annotation")
    state["plain_blob_bytes"] = sum(int(x["size"]) for x in pl)
    state["esgz_blob_bytes"] = sum(int(x["size"]) for x in el)
    state["layers"] = len(pl)
    return state


# --- reporting --------------------------------------------------------------------------------------------------------
def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--case", choices=sorted(CASES), help="a named image: " + "; ".join(
        f"{k}: {v[0]} MiB in {v[1]} layers" for k, v in CASES.items()) + " (--size-mib/--layers win over it)")
    ap.add_argument("--size-mib", type=int, help="random data in the image (default 1024)")
    ap.add_argument("--layers", type=int, help="layers in all, the busybox base included (default 8)")
    ap.add_argument("--file-mib", type=int, default=32, help="size of each random file (default 32)")
    ap.add_argument("--rate", help="shape the registry link, e.g. 200mbit (registry in a network namespace)")
    ap.add_argument("--skip", default="", help="comma list of: " + ",".join(VARIANTS) + ",throughput")
    ap.add_argument("--cache-dir", type=Path, default=CACHE, help=f"image cache (default {CACHE})")
    ap.add_argument("--rebuild", action="store_true", help="generate and convert the image again")
    ap.add_argument("--no-drop-caches", action="store_true",
                    help="do not drop the page cache before the cold overlayfs read")
    args = ap.parse_args()
    size, layers = CASES[args.case or "1g"]
    args.size_mib = args.size_mib or size
    args.layers = args.layers or layers
    if os.geteuid() != 0:
        raise SystemExit("run as root (containerd, mounts)")
    if args.layers < 2:
        raise SystemExit("--layers must be at least 2 (the base and one data layer)")
    skip = set(filter(None, args.skip.split(",")))
    variants = [v for v in VARIANTS if v not in skip]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the stack down on `kill` too

    cache = args.cache_dir / cache_key(args.size_mib, args.layers, args.file_mib)
    mnt = loop_fs()
    with locked(args.cache_dir / ".lock"):
        if args.rebuild:
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="lazy-", dir=mnt))
        sn = LazyEnv(work, flags=("--debug", "--insecure-registry") if args.rate else ("--debug",))
        reg: Registry | None = None
        try:
            sn.start_snapshotter()
            with bench_stack("lazy", str(work), extra_config=sn.proxy_config(), registry=False) as (base, daemon, _):
                reg = Registry(cache / "registry", work / "registry.log", f"127.0.0.1:{free_port()}")
                reg.start()
                b = Bench(daemon, reg, sn, base / "data", insecure=False)
                t0 = time.perf_counter()
                state = prepare(b, cache, args)
                log(f"image ready in {time.perf_counter() - t0:.1f}s: {state['layers']} layers, "
                    f"plain {mib(state['plain_blob_bytes'])}, eStargz {mib(state['esgz_blob_bytes'])}")
                if args.rate:
                    reg.stop()
                    shaped_netns(args.rate)
                    reg = Registry(cache / "registry", work / "registry-ns.log", f"{NS_IP}:5000", NETNS)
                    reg.start()
                    b.reg, b.insecure = reg, True
                report = measure_all(b, args, variants, skip, state)
        finally:
            if reg is not None:
                reg.stop()
            if args.rate:
                teardown_netns()
            sn.stop()  # the daemon, then every layer mount under work and any layer process left
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


def measure_all(b: Bench, args: argparse.Namespace, variants: list[str], skip: set[str],
                state: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for i in range(args.runs if variants else 0):
        order = variants[i % len(variants):] + variants[:i % len(variants)] if variants else []
        for v in order:
            results[v].append(b.measure(v))
        log(f"run {i + 1}/{args.runs}: " + ", ".join(
            f"{v} {results[v][-1]['total']:.2f}s/{mib(results[v][-1]['fetched'])}" for v in variants))
    med: dict[str, dict[str, Any]] = {}
    for v, rs in results.items():
        if not rs:
            continue
        m: dict[str, Any] = {"total_s": round(statistics.median(r["total"] for r in rs), 3),
                             "cpu_s": {k: round(statistics.median(r["cpu"][k] for r in rs), 3) for k in rs[0]["cpu"]},
                             "load_1min": [round(r["load"], 1) for r in rs],
                             "run_s": round(statistics.median(r["run"] for r in rs), 3),
                             "fetched_bytes": int(statistics.median(r["fetched"] for r in rs)),
                             "samples_s": [round(r["total"], 3) for r in rs]}
        if rs[0]["pull"] is not None:
            m["pull_s"] = round(statistics.median(r["pull"] for r in rs), 3)
        if "remote_layers" in rs[0]:
            m["remote_layers"] = rs[0]["remote_layers"]
        if "phases" in rs[0]:
            keys = [k for k in rs[0]["phases"] if all(k in r["phases"] for r in rs)]
            m["phases_s"] = {k: round(statistics.median(r["phases"][k] for r in rs), 3) for k in keys}
        med[v] = m
    report: dict[str, Any] = {
        "image": {"layers": state["layers"], "data_mib": args.size_mib, "file_mib": args.file_mib,
                  "plain_blob_bytes": state["plain_blob_bytes"], "esgz_blob_bytes": state["esgz_blob_bytes"]},
        "rate": args.rate or "loopback", "runs": args.runs, "prepare": {k: state.get(k) for k in ("plain", "esgz")},
        "prepare_s": state.get("prepare_s"), "median": med}
    ratios: dict[str, float] = {}
    for lazy in ("lazy", "lazy-run"):
        for full in ("full", "ctr"):
            if lazy in med and full in med:
                ratios[f"{lazy}/{full}"] = round(med[lazy]["total_s"] / med[full]["total_s"], 3)
    report["ratios"] = ratios
    cpu_ratios: dict[str, float] = {}
    for lazy in ("lazy", "lazy-run"):
        for full in ("full", "ctr"):
            if lazy in med and full in med and med[full]["cpu_s"]["all"]:
                cpu_ratios[f"{lazy}/{full}"] = round(med[lazy]["cpu_s"]["all"] / med[full]["cpu_s"]["all"], 3)
    report["cpu_ratios"] = cpu_ratios

    if not med:
        return report | ({"throughput": throughput(b, args)} if "throughput" not in skip else {})
    rows = [["variant", "total s", "pull s", "run s", "CPU s (all)", "fetched", "remote layers"]]
    for v, m in med.items():
        rows.append([v, f"{m['total_s']:.2f}", f"{m['pull_s']:.2f}" if "pull_s" in m else "-", f"{m['run_s']:.2f}",
                     f"{m['cpu_s']['all']:.2f}", mib(m["fetched_bytes"]), str(m.get("remote_layers", "-"))])
    log(f"\npull + `cat {HELLO_PATH}`, {state['layers']} layers, {args.size_mib} MiB random data, "
        f"{args.rate or 'loopback'}, {args.runs} runs, medians:")
    log(table(rows))
    for k, r in ratios.items():
        log(f"  {k} = {r:.3f}" + ("  (target <= 0.1)" if k == "lazy/full" else "")
            + (f"; CPU {cpu_ratios[k]:.3f}" if k in cpu_ratios else ""))
    for v, m in med.items():
        log(f"  {v} CPU s (medians): " + ", ".join(f"{k} {t:g}" for k, t in m["cpu_s"].items())
            + f"; load {m['load_1min']}")
    for v, m in med.items():
        if "phases_s" in m:
            log(f"  {v} phases (s from the start, medians): "
                + ", ".join(f"{k} {t:g}" for k, t in m["phases_s"].items()))

    if "throughput" not in skip:
        report["throughput"] = throughput(b, args)
    return report


def throughput(b: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Read every file once: lazy (fresh pull, nothing fetched yet; then again) vs overlayfs (page cache dropped;
    then again)."""
    res: dict[str, Any] = {}
    esgz, plain = b.ref("esgz"), b.ref("plain")
    b.clean()
    b.run(b.ctk("ctk-pull", snapshotter=SNAPSHOTTER) + ["pull", "-q", esgz])
    mark = b.reg.mark()

    def record(name: str, ref: str, snapshotter: str | None, times: int = 1) -> None:
        """The median of ``times`` reads (busybox's `time` has centisecond resolution: warm reads are short)."""
        reads = [b.read_all(ref, snapshotter) for _ in range(times)]
        secs, n = statistics.median(r[0] for r in reads), reads[0][1]
        res[name] = {"s": secs, "bytes": n, "mb_s": round(n / max(secs, 0.01) / 1e6, 1)}

    record("lazy_cold", esgz, SNAPSHOTTER)
    time.sleep(0.2)
    res["lazy_cold"]["fetched_bytes"] = b.reg.blob_bytes_since(mark)[0]
    record("lazy_warm", esgz, SNAPSHOTTER, 3)
    b.clean()
    b.run(b.ctk("ctk-pull") + ["pull", "-q", plain])
    if not args.no_drop_caches:
        drop_caches()
    record("overlay_cold", plain, None)
    record("overlay_warm", plain, None, 3)
    b.clean()
    res["ratio_lazy_cold/overlay_cold"] = round(res["lazy_cold"]["mb_s"] / res["overlay_cold"]["mb_s"], 3)
    res["ratio_lazy_warm/overlay_warm"] = round(res["lazy_warm"]["mb_s"] / res["overlay_warm"]["mb_s"], 3)
    rows = [["read every file", "s", "MB/s", "bytes"]]
    for k in ("lazy_cold", "lazy_warm", "overlay_cold", "overlay_warm"):
        rows.append([k.replace("_", " "), f"{res[k]['s']:.2f}", f"{res[k]['mb_s']:.1f}", mib(res[k]["bytes"])])
    log("\n" + table(rows))
    log(f"  lazy/overlayfs cold = {res['ratio_lazy_cold/overlay_cold']:.3f}, "
        f"warm = {res['ratio_lazy_warm/overlay_warm']:.3f}"
        + ("" if not args.no_drop_caches else "  (page cache not dropped)"))
    return res


if __name__ == "__main__":
    sys.exit(main())
