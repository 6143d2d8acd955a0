"""``top``: the processes of a container, as the host's ``ps`` shows them (Docker's way).

Docker runs ``ps`` on the host with the user's options (``-ef`` by default) and keeps the rows whose PID is one
of the container's; so does ctk, with the pids from containerd (``Tasks.ListPids``: every process in the
task's cgroup, exec'd ones included). The last column (``CMD``/``COMMAND``) keeps its spaces.
"""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctk_shared.errors import Conflict, CtkError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

    from .options import TopOptions

DEFAULT_ARGS = ("-ef",)
_MAX_OUTPUT = 64 << 20  # ps of a host with very many processes stays far below this


def parse_ps(text: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """(titles, rows) of ``ps`` output, keeping the rows whose PID column is in ``pids``."""
    lines = text.splitlines()
    if not lines:
        raise CtkError("ps printed nothing")
    titles = lines[0].split()
    if "PID" not in titles:
        raise CtkError("ps output has no PID column", hint="ask for it, e.g. `ctk-run top C -o pid,comm`")
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        cells = line.split(None, len(titles) - 1)
        if len(cells) <= at:
            continue
        try:
            pid = int(cells[at])
        except ValueError:
            continue
        if pid in pids:
            rows.append(cells + [""] * (len(titles) - len(cells)))
    return titles, rows


@dataclass(frozen=True)
class Processes:
    """``top``: one record per process and the table's columns (title, key); the cli prints them."""

    records: list[dict[str, str]]
    columns: list[tuple[str, str]]


def top(client: Client, gopts: GlobalOptions, opts: TopOptions) -> Processes:
    from ctk_shared.errors import NotFound

    from .lookup import find_container

    c = find_container(client, opts.container)
    try:
        task = client.tasks.get(c.id)
    except NotFound:
        task = None
    if task is None or task.status not in ("running", "paused", "pausing"):
        raise Conflict(f"container {c.id[:12]} is not running")
    pids = set(client.tasks.pids(c.id))
    args = list(opts.ps_options) or list(DEFAULT_ARGS)
    try:
        proc = subprocess.run(["ps", *args], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        raise CtkError("ps is not installed on this host", hint="install procps") from None
    except subprocess.TimeoutExpired:
        raise CtkError("ps did not finish within 30s") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CtkError(f"ps {' '.join(args)}: {msg[0] if msg else f'exit status {proc.returncode}'}")
    titles, rows = parse_ps(proc.stdout[:_MAX_OUTPUT].decode(errors="replace"), pids)
    keys = unique_keys(titles)
    records = [dict(zip(keys, row, strict=True)) for row in rows]
    return Processes(records, list(zip(titles, keys, strict=True)))


def unique_keys(titles: Sequence[str]) -> list[str]:
    """JSON keys for ps's titles: ``-o comm,args`` titles both ``COMMAND``; the second becomes ``COMMAND_2``."""
    seen: dict[str, int] = {}
    keys = []
    for t in titles:
        seen[t] = seen.get(t, 0) + 1
        keys.append(t if seen[t] == 1 else f"{t}_{seen[t]}")
    return keys
