"""Encryption benchmark harness (run through scripts/bench/crypt.sh, as root).

One image with one layer of SIZE MiB (random bytes in an uncompressed tar, so the layer blob is that
size), as an OCI layout and in a private containerd. Timed, alternating, per run:
  ctk-crypt encrypt -r jwe:RSA IMG ENC        vs  skopeo copy --encryption-key jwe:RSA oci:SRC oci:ENC
  ctk-crypt decrypt -k RSA ENC DEC            vs  skopeo copy --decryption-key RSA oci:ENC oci:DEC
ctk works between images in containerd's store (content read and written over gRPC), skopeo between
local OCI layouts. Before each ctk decrypt the plaintext blob is removed from the store, so the decrypted
layer is really written (ctk skips the write when the store already has it). Peak RSS of every timed
process is taken from wait4(). State lives on the loop-mounted journaled ext4 the other benchmarks use.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from scripts.bench.pull import loop_fs
from scripts.bench.timing import tool
from tests.support.containerd_daemon import start_containerd

NS = "cryptbench"
REF = "bench.local/crypt/one:latest"


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``cmd``, which must succeed."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024


def build_layout(out: Path, size_mib: int) -> dict[str, str]:
    """An OCI layout with one uncompressed layer holding SIZE MiB of random data; returns the digests."""
    if (out / "index.json").exists():
        return json.loads((out / "digests.json").read_text())
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = out / "layer.tmp"
    with open(tmp, "wb") as f:
        info = tarfile.TarInfo("data.bin")
        info.size, info.mtime, info.mode = size_mib << 20, 1704067200, 0o644
        f.write(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
        f.write(b"\0" * 1024)
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    layer = f"sha256:{h.hexdigest()}"
    layer_size = tmp.stat().st_size
    tmp.rename(blobs / layer.split(":")[1])

    def put(doc: dict) -> tuple[str, int]:
        data = json.dumps(doc, separators=(",", ":")).encode()
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return f"sha256:{d}", len(data)

    config, csize = put({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer]}})
    manifest, msize = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                      "size": csize},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                                       "size": layer_size}]})
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": msize,
         "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    digests = {"layer": layer, "layer_size": str(layer_size), "config": config, "manifest": manifest,
               "manifest_size": str(msize)}
    (out / "digests.json").write_text(json.dumps(digests))
    return digests


def import_layout(client, layout: Path, d: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Blobs into containerd under a lease, then the image record (no unpack: crypt never needs it)."""
    from ctk_shared import labels as L
    from ctk_shared import oci
    from ctk_shared.containerd import Image

    blobs = layout / "blobs" / "sha256"
    with client.lease_scope() as leased:
        for digest, labels in ((d["layer"], {}), (d["config"], {}),
                               (d["manifest"], {**L.gc_config(d["config"]), **L.gc_layers([d["layer"]])})):
            path = blobs / digest.split(":")[1]
            with leased.content.writer(f"bench-{digest}", path.stat().st_size, digest) as w:
                if not (w.exists or w.offset == w.total):
                    w.truncate()
                    with open(path, "rb") as f:
                        while chunk := f.read(1 << 20):
                            w.write(chunk)
                w.commit(labels)
        leased.images.put(Image(REF, oci.Descriptor(oci.OCI_MANIFEST, d["manifest"], int(d["manifest_size"]))))


def drop_all(client) -> None:  # type: ignore[no-untyped-def]
    for img in client.images.list():
        client.images.delete(img.name, sync=True)


def wait_gone(root: Path, digest: str) -> None:
    path = root / "io.containerd.content.v1.content" / "blobs" / "sha256" / digest.split(":")[1]
    for _ in range(200):
        if not path.exists():
            return
        time.sleep(0.05)
    raise SystemExit(f"{path} was not garbage collected")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--keep", action="store_true", help="keep the containerd state after the run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (containerd)")
    mnt = loop_fs()
    layout = mnt / f"crypt-src-{args.size_mib}"
    print(f"building the {args.size_mib} MiB image layout…", file=sys.stderr)
    d = build_layout(layout, args.size_mib)
    work = mnt / "crypt-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    keys = work / "keys"
    keys.mkdir()
    subprocess.run([tool("ctk-crypt"), "keygen", "-t", "rsa", "--bits", "2048", "-o", str(keys / "k")], check=True,
                   stdout=subprocess.DEVNULL)
    priv, pub = keys / "k.pem", keys / "k.pub.pem"
    base = mnt / "ctd-crypt"
    shutil.rmtree(base, ignore_errors=True)
    daemon = start_containerd(base)
    client = daemon.client(NS)
    ctk = [tool("ctk-crypt"), "--address", daemon.address, "-n", NS]
    times: dict[str, list[float]] = {k: [] for k in ("ctk-enc", "sko-enc", "ctk-dec", "sko-dec")}
    rss: dict[str, list[float]] = {k: [] for k in times}
    try:
        for i in range(args.runs):
            drop_all(client)
            wait_gone(daemon.root, d["layer"])
            import_layout(client, layout, d)
            order = ["ctk", "sko"] if i % 2 == 0 else ["sko", "ctk"]
            for who in order:
                if who == "ctk":
                    t, m = run_measured([*ctk, "encrypt", "-q", "-r", f"jwe:{pub}", REF, f"{REF}-enc"])
                else:
                    shutil.rmtree(work / "enc", ignore_errors=True)
                    t, m = run_measured(["skopeo", "copy", "-q", "--encryption-key", f"jwe:{pub}",
                                         f"oci:{layout}:bench", f"oci:{work / 'enc'}:bench"])
                times[f"{who}-enc"].append(t)
                rss[f"{who}-enc"].append(m)
            # the plaintext must really be written by the decrypt: remove it from the store first
            client.images.delete(REF, sync=True)
            wait_gone(daemon.root, d["layer"])
            for who in order:
                if who == "ctk":
                    t, m = run_measured([*ctk, "decrypt", "-q", "-k", str(priv), f"{REF}-enc", f"{REF}-dec"])
                else:
                    shutil.rmtree(work / "dec", ignore_errors=True)
                    t, m = run_measured(["skopeo", "copy", "-q", "--decryption-key", str(priv),
                                         f"oci:{work / 'enc'}:bench", f"oci:{work / 'dec'}:bench"])
                times[f"{who}-dec"].append(t)
                rss[f"{who}-dec"].append(m)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s/{rss[k][-1]:.0f}MiB" for k, v in times.items()),
                  file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"one {args.size_mib} MiB layer, {args.runs} runs, medians (peak RSS max):")
        for op in ("enc", "dec"):
            c, s = med[f"ctk-{op}"], med[f"sko-{op}"]
            name = "encrypt" if op == "enc" else "decrypt"
            print(f"  {name}: ctk-crypt {c:.2f}s ({max(rss[f'ctk-{op}']):.0f} MiB) / skopeo {s:.2f}s "
                  f"({max(rss[f'sko-{op}']):.0f} MiB) = {c / s:.2f}x")
    finally:
        client.close()
        if not args.keep:
            daemon.stop()
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
