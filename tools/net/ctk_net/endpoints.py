"""The attached containers, one JSON record each under ``<data_root>/net/endpoints``.

The hook keeps this registry so that it can answer, without asking containerd, the two questions every
attach and detach raises: which host ports are taken by other containers, and who shares a network with
whom (for the generated /etc/hosts files). Every change happens under one flock, which the kernel drops
if the hook dies, so a crash leaves no stale lock.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctk_shared import dataroot
from ctk_shared.outputs import open_owned

from . import jsonfiles


class Endpoints:
    def __init__(self, data_root: str) -> None:
        self.data_root = data_root
        self.root = Path(data_root) / "net"
        self.dir = self.root / "endpoints"

    @contextmanager
    def locked(self) -> Iterator[None]:
        dataroot.makedirs(self.data_root, self.dir)  # the data root 0710 first
        fd = open_owned(self.root / "endpoints.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _path(self, namespace: str, container_id: str) -> Path:
        return self.dir / f"{namespace}--{container_id}.json"

    def all(self) -> list[dict[str, Any]]:
        return jsonfiles.read_dir(self.dir)

    def get(self, namespace: str, container_id: str) -> dict[str, Any] | None:
        return jsonfiles.read(self._path(namespace, container_id))

    def put(self, record: dict[str, Any]) -> None:
        jsonfiles.write(self._path(record["namespace"], record["id"]), record)

    def remove(self, namespace: str, container_id: str) -> None:
        self._path(namespace, container_id).unlink(missing_ok=True)
