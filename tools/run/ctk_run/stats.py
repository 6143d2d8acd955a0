"""``stats``: Docker's live table of containers' resource use (CPU %, memory, network, block I/O, PIDs).

The figures come from :mod:`.cgroupstats`. CPU % compares two samples: the live view refreshes once a second
(its first screen after :data:`FIRST_WINDOW`), ``--no-stream`` prints one table from two samples
:data:`FIRST_WINDOW` apart (Docker waits about two seconds; ctk keeps a one-shot call fast enough for loops).
Without a terminal on stdout there is one snapshot too, as JSON lines with Docker's ``{{json .}}`` keys.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctk_shared import output

from .cgroupstats import Sample, cpu_percent, sample

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container

    from .options import StatsOptions

COLUMNS = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"), ("MEM USAGE / LIMIT", "MemUsage"),
           ("MEM %", "MemPerc"), ("NET I/O", "NetIO"), ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
FIELDS = ("ID", "Name", "Container", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
FIRST_WINDOW = 0.15  # seconds between the two samples of a one-shot table
REFRESH = 1.0  # seconds between screens of the live view
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


def binary_size(n: float) -> str:
    """Docker's memory figures: powers of 1024, four significant digits (``1.508MiB``, ``7.629GiB``)."""
    i = 0
    while n >= 1024 and i < len(_BINARY) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{_BINARY[i]}"


@dataclass
class Target:
    """A container shown in the table: ``asked`` is the word the user gave (Docker's ``Container`` field)."""

    container: Container
    asked: str
    pid: int  # 0 when it is not running


def record(t: Target, before: Sample | None, after: Sample | None, no_trunc: bool) -> dict[str, Any]:
    """One row with Docker's field names; a container that is not running shows zeros, as Docker's does."""
    from .lookup import display_name

    s = after or Sample(0.0)
    cpu = cpu_percent(before, after) if before is not None and after is not None else 0.0
    mem_pct = s.mem_usage / s.mem_limit * 100 if s.mem_limit else 0.0
    return {
        "ID": t.container.id if no_trunc else t.container.id[:12],
        "Name": display_name(t.container),
        "Container": t.asked,
        "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{binary_size(s.mem_usage)} / {binary_size(s.mem_limit)}",
        "MemPerc": f"{mem_pct:.2f}%",
        "NetIO": f"{output.human_size(s.net_rx)} / {output.human_size(s.net_tx)}",
        "BlockIO": f"{output.human_size(s.blk_read)} / {output.human_size(s.blk_write)}",
        "PIDs": str(s.pids),
    }


def _running(client: Client) -> dict[str, int]:
    """container ID → init pid of every task that runs (paused ones too: Docker shows them)."""
    return {t.id: t.pid for t in client.tasks.list() if t.status in ("running", "paused", "pausing")}


def _targets(client: Client, names: Sequence[str], all_: bool, running: dict[str, int]) -> list[Target]:
    """The named containers (an unknown one is an error), or every running one (with ``-a`` every one)."""
    from datetime import UTC, datetime

    from .listing import _created
    from .lookup import find_container

    if names:
        found = [find_container(client, n) for n in names]
        return [Target(c, n, running.get(c.id, 0)) for c, n in zip(found, names, strict=True)]
    out = [Target(c, c.id[:12], running.get(c.id, 0)) for c in client.containers.list()]
    out = [t for t in out if all_ or t.pid]
    out.sort(key=lambda t: _created(t.container) or datetime.min.replace(tzinfo=UTC), reverse=True)  # as ps
    return out


def _rows(targets: Sequence[Target], before: dict[str, Sample], after: dict[str, Sample],
          no_trunc: bool) -> list[dict[str, Any]]:
    return [record(t, before.get(t.container.id), after.get(t.container.id), no_trunc) for t in targets]


def _sample_all(targets: Sequence[Target]) -> dict[str, Sample]:
    return {t.container.id: sample(t.pid) for t in targets if t.pid}


def stats(client: Client, gopts: GlobalOptions, opts: StatsOptions) -> Iterator[list[dict[str, Any]]]:
    """``stats``: the tables to print, one list of records per screen. With ``no_stream`` (the cli sets it also
    when stdout is no terminal, or for JSON) one table from two samples :data:`FIRST_WINDOW` apart; else a table
    every :data:`REFRESH` seconds until the caller stops (Ctrl-C); without names, containers come and go."""
    names, all_, no_trunc = opts.containers, opts.all_, opts.no_trunc
    output.parse_format(opts.fmt, FIELDS)  # a bad template fails before any work
    running = _running(client)
    # the first sample as early as possible: listing the containers (their specs) then overlaps the window
    before = {} if names else {cid: sample(pid) for cid, pid in running.items()}
    targets = _targets(client, names, all_, running)
    before = before or _sample_all(targets)
    if opts.no_stream:
        first = min((s.at for s in before.values()), default=time.monotonic())
        time.sleep(max(0.0, FIRST_WINDOW - (time.monotonic() - first)))
        yield _rows(targets, before, _sample_all(targets), no_trunc)
        return
    time.sleep(FIRST_WINDOW)
    while True:
        after = _sample_all(targets)
        yield _rows(targets, before, after, no_trunc)
        before = after
        time.sleep(REFRESH)
        running = _running(client)
        if names:
            for t in targets:  # named containers keep their rows: a restarted one gets its new pid, a stopped one 0
                t.pid = running.get(t.container.id, 0)
        else:
            targets = _targets(client, names, all_, running)
