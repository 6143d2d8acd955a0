"""Fixtures for ctk-run against the session's containerd, with ctk-net's hook on the test's private CNI setup."""
from __future__ import annotations

import pytest

from tests.support.cli import remove_containers, tool_runner


@pytest.fixture
def run(containerd, ctd, tmp_path, cni_env):
    """ctk-run (or ``tool="ctk-net"``) in the test's namespace, data root and CNI environment; ``run.env`` and
    ``run.data_root`` for tests that start ctk-run themselves. Containers left over are removed afterwards."""
    go = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=tmp_path / "data",
                     env=cni_env.env)
    yield go
    remove_containers(go)


@pytest.fixture
def bb(test_images):
    return test_images["busybox"].ref
