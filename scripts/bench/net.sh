#!/usr/bin/env bash
# Published-port start benchmark: time from `ctk-run -d -p P:80 IMG` to the first HTTP 200 on 127.0.0.1:P,
# vs `podman run -d -p P:80` of the same image (Debian's podman, its own storage root) in the same run;
# plus the time ctk-net's hook takes per container start; images: busybox httpd and the real Debian nginx.
# Usage: sudo scripts/bench/net.sh [--runs N] [--image busybox|nginx|both]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m scripts.bench.net "$@"
