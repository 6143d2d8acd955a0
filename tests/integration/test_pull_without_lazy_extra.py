"""ctk-pull installed without its ``lazy`` extra (no FUSE binding): pulls as usual, and ``lazy-serve`` -- the only
command that needs the binding -- says in one line what to install, leaving nothing behind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run_tool
from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration


@pytest.fixture
def no_fuse_binding(tmp_path: Path) -> dict[str, str]:
    """Environment whose interpreters cannot import mfusepy, as if ``ctk-pull[lazy]`` was not installed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['mfusepy'] = None  # import raises ImportError\n")
    env = {"PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import mfusepy"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, "the blocker does not block"
    return env


def test_pull_needs_no_fuse_binding(ctk, ctd, test_images, no_fuse_binding):
    img = test_images["busybox"]
    r = ctk(img.ref, "-q", env=no_fuse_binding)
    assert r.code == 0, r.err
    assert r.lines == [f"{img.ref}@{img.digest}"]
    with mounted_image(ctd, img.ref) as root:
        assert (root / "bin" / "busybox").exists()


def test_lazy_serve_without_fuse_binding_gives_install_hint(containerd, tmp_path, no_fuse_binding):
    root, sock = tmp_path / "lazy-root", tmp_path / "run" / "snapshotter.sock"
    r = run_tool("ctk-pull", "lazy-serve", "--root", str(root), "--socket", str(sock),
                 address=containerd.address, namespace="default", env=no_fuse_binding, timeout=60)
    assert r.code == 1, (r.code, r.err)
    assert r.err.splitlines() == [  # the error and its fix, no traceback
        "ctk-pull: error: the lazy snapshotter needs the FUSE binding mfusepy, which is not installed",
        "ctk-pull: hint: pip install 'ctk-pull[lazy]'"]
    assert not root.exists() and not sock.exists()  # nothing half-made
