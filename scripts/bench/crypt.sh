#!/usr/bin/env bash
# Encryption benchmark: ctk-crypt encrypt/decrypt vs `skopeo copy --encryption-key/--decryption-key`.
# Usage: sudo scripts/bench/crypt.sh [--runs N] [--size-mib 512]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.crypt "$@"
