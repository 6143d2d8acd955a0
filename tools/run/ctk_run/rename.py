"""``rename OLD NEW``: a container's name is its ``ctk/name`` label, plus the name its network hook announces
to peers on user networks (the spec annotation, read at each start). The hostname is not changed (as Docker).
The check and the change happen under the namespace's name lock, so two renames or a ``run --name`` racing
for one name cannot both win."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ctk_shared import labels as SL
from ctk_shared.errors import AlreadyExists, UsageError

from . import labels as L
from . import state

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client


def rename(client: Client, gopts: GlobalOptions, text: str, new_name: str) -> None:
    from .lookup import display_name, find_container, name_in_use

    new_name = new_name.removeprefix("/")
    if not new_name:
        raise UsageError("Neither old nor new names may be empty")
    state.validate_name(new_name)
    with state.name_lock(gopts.data_root, client.namespace):
        c = find_container(client, text)
        if display_name(c) == new_name:
            raise UsageError("Renaming a container with the same name as its current name")
        other = name_in_use(client, new_name)
        if other is not None and other.id != c.id:
            raise AlreadyExists(f'the container name "{new_name}" is already in use by container {other.id[:12]}',
                                hint="remove (or rename) that container to be able to reuse that name")
        from ctk_shared.containerd import Container

        spec = _spec_with_name(c.spec, new_name)
        # one update: a rename cut short leaves the old name whole, never half of each
        client.containers.update(Container(c.id, labels={L.NAME: new_name}, spec=spec or b""),
                                 [f"labels.{L.NAME}"] + (["spec"] if spec is not None else []))


def _spec_with_name(raw: bytes | None, name: str) -> bytes | None:
    """The spec with the network hook's name annotation changed; None when it has none (no user network)."""
    try:
        spec = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    ann = spec.get("annotations") if isinstance(spec, dict) else None
    if not isinstance(ann, dict) or SL.ANN_NAME not in ann:
        return None
    ann[SL.ANN_NAME] = name
    return json.dumps(spec).encode()
