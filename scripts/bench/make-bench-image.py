#!/usr/bin/env python3
"""Build the deterministic pull-benchmark image as an OCI layout and print the layout's path.

8 layers of 64 MiB uncompressed each: 4 of incompressible random bytes, 1 of ~20,000 small text files and
3 of compressible log-like text, interleaved; gzip layers (zlib level 6, mtime 0) or, with --zstd, zstd
level 3. Tagged ``latest`` in the layout (``oci:DIR:latest`` for skopeo). Same bytes on every run on a
machine: contents come from fixed seeds, layers are compressed whole, one per thread.

Usage: scripts/bench/make-bench-image.py [--out DIR] [--zstd] [--layers 8] [--layer-mib 64] [--files 20000]
"""
# ruff: noqa: N999  (the file name is the command name)
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import images as im  # noqa: E402 - importable only after the sys.path line above (a script, run by path)

KINDS = ("random", "text", "random", "files", "random", "text", "random", "text")


def layer_plan(count: int) -> list[str]:
    """The first ``count`` kinds of the repeating pattern: half random, one in eight many-files, the rest text."""
    return [KINDS[i % len(KINDS)] for i in range(count)]


def make_layer(kind: str, index: int, size: int, files: int) -> bytes:
    seed = f"ctk-bench/{index}"
    if kind == "random":
        return im.random_layer_tar(seed, size, 0.0, file_size=16 << 20, prefix=f"layer{index}")
    if kind == "text":
        return im.random_layer_tar(seed, size, 1.0, file_size=16 << 20, prefix=f"layer{index}")
    return im.many_files_layer_tar(seed, files, total_size=size, prefix=f"layer{index}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="layout directory (default $CTK_BENCH_DIR/image-{gzip,zstd}, "
                                             "CTK_BENCH_DIR defaulting to /var/tmp/ctk-bench)")
    ap.add_argument("--zstd", action="store_true", help="zstd layers instead of gzip")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--layer-mib", type=float, default=64.0, help="uncompressed size of each layer")
    ap.add_argument("--files", type=int, default=20000, help="files in the many-files layer")
    ap.add_argument("--ref", default="latest", help="ref name in the layout's index.json")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()

    compression: im.Compression = "zstd" if args.zstd else "gzip"
    out = args.out or Path(os.environ.get("CTK_BENCH_DIR", "/var/tmp/ctk-bench")) / f"image-{compression}"
    size = int(args.layer_mib * (1 << 20))
    t0 = time.monotonic()
    if out.exists():
        shutil.rmtree(out)  # a previous build with other parameters must not leave stray blobs
    kinds = layer_plan(args.layers)
    layers = (make_layer(kind, i, size, args.files) for i, kind in enumerate(kinds))  # built while compressing
    info = im.build_image(out, args.ref, layers, compression=compression,
                          config={"Env": [im.DEFAULT_PATH], "Cmd": ["sh"]},
                          history=[f"bench layer {i}: {kind}" for i, kind in enumerate(kinds)],
                          annotations={"org.opencontainers.image.title": "ctk pull benchmark"})
    if not args.quiet:
        total = sum(x.size for x in info.layers)
        raw = sum(x.uncompressed_size for x in info.layers)
        print(f"make-bench-image: {len(info.layers)} {compression} layers, {raw / (1 << 20):.0f} MiB -> "
              f"{total / (1 << 20):.0f} MiB, manifest {info.manifest_digest} in {time.monotonic() - t0:.1f}s",
              file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
