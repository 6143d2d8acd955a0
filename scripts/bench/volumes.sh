#!/usr/bin/env bash
# Volume benchmark: copy-up of a 100 MiB, 5,000-file image directory into a new volume (`ctk-run create -v
# NEW:/data IMG` minus `ctk-run create IMG`) vs `cp -a` of the same tree; `ctk-run volume ls` with 500 volumes.
# Usage: sudo scripts/bench/volumes.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.volumes "$@"
