#!/usr/bin/env bash
# Pull benchmark: ctk-pull vs `ctr images pull` (unpack included) and vs `skopeo copy` (fetch only).
# Usage: sudo scripts/bench/pull.sh [--runs N] [--rate 200mbit] [--zstd] [--keep]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.pull "$@"
