"""Pytest plugin: the fixtures the ctk-run, ctk-net and ctk-build tests share (one home, not one copy per folder).

* ``data_root`` (function) — the test's ctk data root (``CTK_DATA_ROOT``), under its ``tmp_path``.
* ``run`` (function) — ctk-run (or ``tool="ctk-net"``, …) in the test's namespace, data root and CNI environment;
  ``run.env`` and ``run.data_root`` for tests that start a tool themselves. Containers left over are removed
  afterwards.
* ``bb`` (function) — the busybox test image's reference.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Result, remove_containers, tool_runner


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(containerd: Any, ctd: Any, data_root: Path, cni_env: Any) -> Iterator[Callable[..., Result]]:
    go = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=data_root,
                     env=cni_env.env)
    yield go
    remove_containers(go)


@pytest.fixture
def bb(test_images: Any) -> str:
    return str(test_images["busybox"].ref)
