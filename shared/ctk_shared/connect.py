"""Build the containerd and registry clients from the global options, the same way in every tool."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import GlobalOptions
    from .containerd import Client
    from .registry.client import RegistryClient
    from .registry.mirrors import MirroredClient


def containerd(gopts: GlobalOptions) -> Client:
    from .containerd import Client

    return Client(gopts.address, gopts.namespace)


def registry(host: str, gopts: GlobalOptions) -> RegistryClient | MirroredClient:
    """The registry ``host``, through the mirrors its ``hosts.toml`` lists (pull and resolve go there first)."""
    from . import auth
    from .registry.mirrors import open_registry

    return open_registry(host, insecure=gopts.insecure_registry, hosts_dirs=gopts.hosts_dir,
                         credentials=auth.get_credentials, timeout=gopts.registry_timeout)
