#!/usr/bin/env bash
# Build benchmark: ctk-build vs `buildah bud` (Debian's buildah, its own storage in a temp root), same run:
# cold build, fully cached rebuild, and a rebuild after the COPY source changed.
# Usage: sudo scripts/bench/build.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.build "$@"
