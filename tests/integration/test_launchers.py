"""The ctk-* commands as scripts/setup installs them (ctk_shared.launchers: no ``site``), against the test stack.

What ``site`` used to provide must still be there: the ``google`` namespace package of protobuf and grpc
(every containerd call), requests and certifi for an https registry (the same verification: an unknown CA
is refused with the hint, a hosts-dir CA is trusted), the logger and the network hook, which the CLI now
also starts through launchers in the data root.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ctk_shared import launchers

from tests.support import images as im
from tests.support.cli import Result, run_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("bin")
    assert set(launchers.install(str(dest)).values()) == {"written"}
    return dest


def test_pull_over_tls_with_a_launcher(bin_dir: Path, containerd: Any, ctd: Any, registry_tls_auth: Any,
                                       tmp_path: Path) -> None:
    reg = registry_tls_auth
    im.build_image(tmp_path / "layout", "v1", [im.busybox_layer_tar()])
    ref = f"{reg.host}/private/bb:v1"
    im.push_layout(tmp_path / "layout", "v1", ref, tls_verify=True, creds=("ctk", "s3cret"),
                   cert_dir=reg.certs_dir / reg.host)
    env = {"DOCKER_CONFIG": str(tmp_path / "docker")}

    def pull(*args: str, **kw: Any) -> Result:
        return run_tool(str(bin_dir / "ctk-pull"), *args, address=containerd.address, namespace=ctd.namespace,
                        env=env, **kw)

    r = pull("-q", ref)  # certifi's bundle, as requests uses it: the test CA is unknown
    assert r.code == 1 and "certificate" in r.err.lower() and "--insecure-registry" in r.err, r.err
    tls = ["--hosts-dir", str(reg.certs_dir)]
    r = pull("login", *tls, "-u", "ctk", "--password-stdin", reg.host, input="s3cret\n")
    assert r.code == 0, r.err
    r = pull(*tls, "-q", ref)
    assert r.code == 0, r.err
    assert ctd.images.get(ref).name == ref


def test_networked_and_detached_runs_with_a_launcher(bin_dir: Path, run: Callable[..., Result], bb: str) -> None:
    """A bridge-networked run gets its address from the hook launcher in the data root; a detached one logs
    through the logger launcher; both as the installed ctk-run launcher runs them."""
    ctk_run = str(bin_dir / "ctk-run")
    r = run("run", "--rm", bb, "ip", "-4", "-o", "addr", "show", "eth0", tool=ctk_run)
    assert r.code == 0 and " inet " in r.out, r.out + r.err
    data_root = Path(run.data_root)  # type: ignore[attr-defined]
    hook = data_root / "bin" / "ctk-net-hook"
    assert launchers.is_launcher(hook) and b" -IS\n" in hook.read_bytes().split(b"\n", 1)[0] + b"\n"

    r = run("run", "-d", "--name", "lz", "--network", "none", bb, "sh", "-c", "echo hello-from-launcher; sleep 30",
            tool=ctk_run)
    assert r.code == 0, r.err
    assert launchers.is_launcher(data_root / "bin" / "ctk-run-logger")
    deadline = time.monotonic() + 20
    while "hello-from-launcher" not in (out := run("logs", "lz", tool=ctk_run).out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "hello-from-launcher" in out
    assert run("rm", "-f", "lz", tool=ctk_run).code == 0
