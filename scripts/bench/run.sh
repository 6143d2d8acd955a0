#!/usr/bin/env bash
# Container start benchmark: `ctk-run --rm --network none IMG true` vs `ctr run --rm IMG id true`
# (and `podman run --rm` when podman is installed); `ctk-run ps` with 50 containers; logger RSS.
# Images: the busybox test image and the real Debian nginx image (scripts/images). Usage:
# sudo scripts/bench/run.sh [--runs N] [--image busybox|nginx|both]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.run "$@"
