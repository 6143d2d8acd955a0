"""``login`` and ``logout``: credentials checked against the registry, stored like Docker stores them."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ctk_shared import reference as refs

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

DOCKER_HUB = "docker.io"


def _host(server: str | None) -> str:
    """Accept what Docker accepts: a bare host, host:port, or a URL."""
    if not server:
        return DOCKER_HUB
    s = server.strip()
    for prefix in ("https://", "http://"):
        s = s.removeprefix(prefix)
    s = s.split("/", 1)[0]
    return refs.DEFAULT_DOMAIN if s in ("index.docker.io", "registry-1.docker.io") else s


def login(gopts: GlobalOptions, server: str | None, username: str, password: str) -> None:
    from ctk_shared import auth
    from ctk_shared.registry.client import RegistryClient

    host = _host(server)
    creds = auth.Credentials(username=username, password=password)
    client = RegistryClient(host, insecure=gopts.insecure_registry, hosts_dirs=gopts.hosts_dir,
                            credentials=lambda _h: creds, timeout=gopts.registry_timeout)
    client.check_login()
    auth.store_credentials(host, username, password)
    sys.stderr.write("Login Succeeded\n")


def logout(server: str | None) -> None:
    from ctk_shared import auth

    host = _host(server)
    if auth.erase_credentials(host):
        sys.stderr.write(f"Removing login credentials for {host}\n")
    else:
        sys.stderr.write(f"Not logged in to {host}\n")
