"""Pytest plugin: one private containerd for the session, and a fresh namespace per test.

* ``containerd`` (session) — a :class:`ContainerdDaemon` under a short ``/tmp/ctk-XXXX`` directory.
* ``ctd`` (function) — a :class:`Client` on a namespace named from the test's node id; on teardown
  everything left in it (leases, images, snapshots, content, ingests) and the namespace are removed,
  best-effort.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ctk_shared.containerd import Client
from ctk_shared.errors import AlreadyExists, CtkError

from .containerd_daemon import ContainerdDaemon, start_containerd

_MAX_NAMESPACE = 76  # identifiers/validate.go


def namespace_for(nodeid: str) -> str:
    """A valid containerd namespace (``[A-Za-z0-9]+([._-][A-Za-z0-9]+)*``) unique to ``nodeid``."""
    name = nodeid.rsplit("/", 1)[-1].removesuffix(".py").replace(".py::", "-")
    name = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "test"
    suffix = hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    name = name[: _MAX_NAMESPACE - len(suffix) - 1].strip("-")
    return f"{name}-{suffix}"


@pytest.fixture(scope="session")
def containerd() -> Iterator[ContainerdDaemon]:
    base = Path(tempfile.mkdtemp(prefix="ctk-", dir="/tmp"))
    try:
        daemon = start_containerd(base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


def _best_effort(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except CtkError:
        pass


def clean_namespace(client: Client, snapshotters: tuple[str, ...] = ("overlayfs", "native")) -> None:
    """Remove what a test left behind, then the namespace itself. Never raises."""
    try:
        for lease in client.leases.list():
            _best_effort(client.leases.delete, lease.id)
        for image in client.images.list():
            _best_effort(client.images.delete, image.name)
        for name in snapshotters:
            sn = client.snapshots(name)
            for _ in range(50):  # leaves first: a snapshot with children cannot be removed
                try:
                    infos = sn.list()
                except CtkError:
                    break
                if not infos:
                    break
                parents = {i.parent for i in infos}
                for info in infos:
                    if info.name not in parents:
                        _best_effort(sn.remove, info.name)
        for info in client.content.list():
            _best_effort(client.content.delete, info.digest)
        for st in client.content.statuses():
            _best_effort(client.content.abort, st.ref)
        _best_effort(client.namespaces.delete, client.namespace)
    except CtkError:
        pass


@contextmanager
def fresh_namespace(address: str, nodeid: str,
                    snapshotters: tuple[str, ...] = ("overlayfs", "native")) -> Iterator[Client]:
    """A client in the test's own namespace, emptied before (left over from an interrupted run) and after."""
    client = Client(address, namespace_for(nodeid))
    try:
        client.namespaces.create(client.namespace)
    except AlreadyExists:
        clean_namespace(client, snapshotters)
        client.namespaces.create(client.namespace)
    try:
        yield client
    finally:
        clean_namespace(client, snapshotters)
        client.close()


@pytest.fixture
def ctd(containerd: ContainerdDaemon, request: pytest.FixtureRequest) -> Iterator[Client]:
    with fresh_namespace(containerd.address, request.node.nodeid) as client:
        yield client
