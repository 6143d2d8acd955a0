"""The real nginx image (scripts/images: Debian's nginx-light, built FROM scratch by ctk-build from the cached
root filesystem) in a benchmark's private stack, and the same image exported to podman's store."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from scripts.bench.timing import tool


def nginx_image(base: Path, daemon: Any, reg: Any, env: dict[str, str], namespace: str = "bench") -> tuple[str, Path]:
    """Build the nginx image into ``namespace`` and push it to ``reg``; save it with ``ctk-pull save`` for
    ``podman load``. Returns (ref, archive). The root filesystem comes from the maker's cache (mmdebstrap
    runs only on a cold machine, ~1 min)."""
    from scripts.images.make import build_image

    ref = f"{reg.host}/bench/nginx:latest"
    build_image("nginx", ref, base / "nginx-context", address=daemon.address, namespace=namespace, push=True,
                quiet=True, env=env)
    archive = base / "nginx-image.tar"
    subprocess.run([tool("ctk-pull"), "--address", daemon.address, "-n", namespace, "save", "-o", str(archive), ref],
                   check=True, stdout=subprocess.DEVNULL, env=env)
    return ref, archive


def podman_load(pod: list[str], archive: Path, ref: str) -> str:
    """``podman load`` of a ``ctk-pull save`` archive into podman's own root; the name podman knows it by."""
    p = subprocess.run([*pod, "load", "-q", "-i", str(archive)], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"podman load: {p.stderr.strip()}")
    return ref
