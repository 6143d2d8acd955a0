"""The small JSON state files ctk-net keeps (CNI results, endpoints, a container's network state): each is
replaced whole with a rename, so a reader never sees half a file, and an unreadable one is skipped."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_dir(directory: Path, contains: str = "") -> list[Any]:
    """Every readable ``*.json`` record in ``directory`` (sorted by name), optionally only files whose name
    contains ``contains``, so a lookup does not parse every record."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(".json") and contains in name:
            rec = read(directory / name)
            if rec is not None:
                out.append(rec)
    return out


def write(path: Path, record: Any) -> None:
    """Replace ``path`` whole; a link planted at its name (or at a temp name) is never written through."""
    from ctk_shared.outputs import write_owned

    write_owned(path, json.dumps(record).encode())
