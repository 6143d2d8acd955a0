"""The lazy snapshotter's layer process honours --registry-timeout: a registry that accepts the connection and
never answers fails the mount in seconds (with the phase named), not after the 30 s default per attempt."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ctk_pull.snapshotter.remote import LazyMounter, RemoteLayer

from tests.support.sockets import silent_server

DIGEST = "sha256:" + "ab" * 32


def test_layer_process_gives_up_on_a_silent_registry_within_the_timeout(tmp_path):
    (tmp_path / "mnt").mkdir()
    with silent_server() as host:
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "ctk_pull.snapshotter.lazyfs", "--ref", f"{host}/silent/img",
                            "--digest", DIGEST, "--toc-digest", DIGEST, "--insecure", "--registry-timeout", "1,1,1",
                            "--no-prefetch", str(tmp_path / "mnt")], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - t0
    assert p.returncode == 2, p.stderr
    assert elapsed < 40, f"took {elapsed:.1f}s: --registry-timeout was not applied"
    assert "accepted the connection but sent no response in 1 s" in p.stderr, p.stderr


def test_lazy_serve_hands_its_registry_timeout_to_each_layer_process(tmp_path, monkeypatch):
    m = LazyMounter(tmp_path / "cache", insecure=True, registry_timeout=(2.0, 3.0, 4.5), timeout=0.01)
    seen: list[list[str]] = []
    monkeypatch.setattr(m, "_fork", lambda argv, log: seen.append(argv) or 999_999_999)
    layer = RemoteLayer("127.0.0.1:1", "r/x", DIGEST, DIGEST)
    try:
        m.mount(layer, tmp_path / "mnt", tmp_path / "log")
    except Exception:  # noqa: BLE001 - the fake pid never mounts anything
        pass
    assert seen and seen[0][seen[0].index("--registry-timeout") + 1] == "2,3,4.5"
    assert Path(seen[0][-1]) == tmp_path / "mnt"
