#!/usr/bin/env bash
# Lazy-pulling benchmark: pull + first command of a ~1 GiB image, eStargz through ctk's snapshotter (ctk-lazy)
# vs a full pull (ctk-pull + ctk-run on overlayfs, and ctr), plus read throughput of the lazy mounts.
# Usage: sudo scripts/bench/lazy.sh [--runs N] [--size-mib 1024] [--layers 8] [--rate 200mbit] [--skip …]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.lazy "$@"
