"""A fully cached rebuild computes cache keys and names the image: most of what it costs is the interpreter
and its imports, so it must not load what only a running step needs (issue 18's cached-rebuild figure)."""
from __future__ import annotations

import os
import subprocess
import sys

from .conftest import write

# What only a step that runs (or a flag this build does not use) needs: mounting a snapshot, copying into
# it, users and the runtime spec, RUN --mount, the network hooks, the layer tar, --cache-to/--cache-from.
STEP_MODULES = ("ctk_build.mounting", "ctk_build.copier", "ctk_build.users", "ctk_build.rootfs",
                "ctk_build.stepspec", "ctk_build.runmounts", "ctk_build.upperdiff", "ctk_build.cachespecs",
                "ctk_build.cacheimport", "ctk_build.cacheexport", "ctk_shared.nethooks", "ctk_shared.pull",
                "tarfile", "gzip", "ctypes")

_PROBE = ("import os, sys\nfrom ctk_build.cli import main\nsys.argv[0] = 'ctk-build'\n"
          "os._exit = sys.exit  # (the cli leaves without the interpreter's teardown)\ntry:\n    rc = main()\n"
          "except SystemExit as e:\n    rc = e.code\nfinally:\n"
          f"    print(sorted(m for m in {STEP_MODULES!r} if m in sys.modules), file=sys.stderr)\nsys.exit(rc)\n")


def test_a_cached_rebuild_imports_no_step_running_module(build, bb, tmp_path, containerd, ctd):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo ran > /ran\nCOPY a /a\nENV X=1\n",
                                   "a": "copied\n"})
    first = build("-q", "-t", "cachedimports", str(ctx))
    assert first.code == 0, first.err
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}, **build.env}
    p = subprocess.run([sys.executable, "-c", _PROBE, "--address", containerd.address, "--namespace", ctd.namespace,
                        "--progress=plain", "-t", "cachedimports", str(ctx)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == first.out.strip()  # the same image: every step was cached
    assert "#2 CACHED" in p.stderr and "#3 CACHED" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "[]"
