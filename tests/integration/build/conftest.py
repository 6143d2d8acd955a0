"""Fixtures for ctk-build against the session's containerd and registry."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.support.cli import tool_runner


@pytest.fixture
def build(containerd, ctd, data_root, cni_env):
    """Run ctk-build in the test's namespace: ``build("-t", "app", str(ctx)) -> Result``. RUN steps join the
    session's private bridge network (``cni_env``), never the host's."""
    return tool_runner("ctk-build", address=containerd.address, namespace=ctd.namespace, data_root=data_root,
                       env=cni_env.env)


def write(ctx, files):
    """Create files under ``ctx``: name -> text/bytes, or (content, mode)."""
    for name, content in files.items():
        mode = None
        if isinstance(content, tuple):
            content, mode = content
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        if mode is not None:
            p.chmod(mode)
    return ctx


def cached_steps(err):
    """The names of the steps a ``--progress=plain`` build reused (``#N name`` … ``#N CACHED``)."""
    import re

    names, cached = {}, []
    for line in err.splitlines():
        m = re.match(r"#(\d+) (.*)$", line)
        if not m:
            continue
        no, rest = m.groups()
        if no not in names:
            names[no] = rest
        elif rest == "CACHED":
            cached.append(names[no])
    return cached


@contextmanager
def build_killed_in_a_step(address: str, namespace: str, env: dict[str, str], *args: str,
                           ) -> Iterator[Callable[[], None]]:
    """Run ``ctk-build --address … --namespace … ARGS`` until its RUN step prints ``STARTED``, then hand the body
    a ``kill()`` (SIGKILL, as a user's ``kill -9``); the build is killed on leaving in any case."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    full_env.update(env)
    p = subprocess.Popen(["ctk-build", "--address", address, "--namespace", namespace, *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env)

    def kill() -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)

    try:
        assert p.stderr is not None
        for line in p.stderr:
            if line.rstrip().endswith(" STARTED"):  # "#3 0.012 STARTED"
                break
        yield kill
        kill()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()  # type: ignore[union-attr]
