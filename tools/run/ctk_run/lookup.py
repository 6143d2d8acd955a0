"""Find containers the way Docker does: full ID, unique ID prefix, or name."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ctk_shared.errors import NotFound, UsageError

from . import labels as L

if TYPE_CHECKING:
    from ctk_shared.containerd import Client, Container


def find_container(client: Client, text: str) -> Container:
    try:
        return client.containers.get(text)
    except NotFound:
        pass
    by_name = client.containers.list([f'labels."{L.NAME}"=={_quote(text)}'])
    if by_name:
        return by_name[0]
    if len(text) >= 1 and all(c in "0123456789abcdef" for c in text):
        hits = [c for c in client.containers.list() if c.id.startswith(text)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UsageError(f"multiple containers match the ID prefix {text!r}")
    raise NotFound(f"no such container: {text}", hint="list containers with `ctk-run ps -a`")


def name_in_use(client: Client, name: str) -> Container | None:
    found = client.containers.list([f'labels."{L.NAME}"=={_quote(name)}'])
    return found[0] if found else None


def display_name(c: Container) -> str:
    """Name for containers made by other tools too (nerdctl's label, else the ID)."""
    return c.labels.get(L.NAME) or c.labels.get("nerdctl/name") or c.id[:12]


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
