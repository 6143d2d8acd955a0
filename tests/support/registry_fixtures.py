"""Pytest plugin: real registries for the whole session (``pytest_plugins`` in tests/conftest.py).

* ``registry`` — plain HTTP, no auth, on 127.0.0.1.
* ``registry_tls_auth`` — TLS with a test CA and htpasswd (Basic) auth, user ``ctk`` / ``s3cret``;
  ``certs_dir`` is laid out as ``<certs_dir>/127.0.0.1:PORT/ca.crt`` so it can be a hosts dir.
* ``registry_token_auth`` — plain HTTP with Bearer token auth (a JWT token server), user ``ctk`` /
  ``s3cret``, and the identity token ``ctk-refresh-token`` for user ``ctk``.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .registry_daemon import RegistryDaemon, start_registry

REGISTRY_USER = "ctk"
REGISTRY_PASSWORD = "s3cret"
IDENTITY_TOKEN = "ctk-refresh-token"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryDaemon]:
    daemon = start_registry(tmp_path_factory.mktemp("registry"))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def registry_tls_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryDaemon]:
    daemon = start_registry(tmp_path_factory.mktemp("registry-tls"), tls=True,
                            htpasswd={REGISTRY_USER: REGISTRY_PASSWORD})
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def registry_token_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryDaemon]:
    daemon = start_registry(tmp_path_factory.mktemp("registry-token"),
                            token_users={REGISTRY_USER: REGISTRY_PASSWORD})
    assert daemon.token_server is not None
    daemon.token_server.identity_tokens[IDENTITY_TOKEN] = REGISTRY_USER
    yield daemon
    daemon.stop()
