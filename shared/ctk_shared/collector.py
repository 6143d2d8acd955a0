"""Python's cyclic garbage collector while a ctk command starts.

With its default threshold the collector runs every ~700 net allocations, and while a command imports its
modules (click, grpc, protobuf and the generated stubs, ctk's own) each run walks the growing heap of objects
those imports just made and that live as long as the process: 3-5% of the CPU of a ``ctk-run --rm``
(issue 20, 31 interleaved runs: 0.131 s -> 0.125-0.127 s) and ~6% of a cached ``ctk-build`` rebuild.

So a command starts with a threshold no import reaches (:func:`startup`: the user-command launchers do it in
their first line, see ``ctk_shared.launchers``, and ``ctk_shared.cli.run`` for every other start), and the
first containerd call, made once grpc and the stubs are in, brings the default back with everything made
so far frozen out of the collector's walks (:func:`imports_done`). A short command that never calls keeps the
raised threshold, which still collects (every million net allocations); the one long-lived command that never
dials, ``ctk-pull lazy-serve`` (a server containerd calls), calls :func:`imports_done` itself once it has imported
what it serves with.
"""
from __future__ import annotations

import gc

STARTUP_THRESHOLD = 1_000_000
_DEFAULT = (700, 10, 10)


def startup() -> None:
    """Raise the first generation's threshold out of the imports' reach (unless already raised or changed)."""
    if gc.isenabled() and gc.get_threshold() == _DEFAULT:
        gc.set_threshold(STARTUP_THRESHOLD, *_DEFAULT[1:])


def imports_done() -> None:
    """Back to the default collector, what exists now frozen out of its walks; only after :func:`startup`."""
    if gc.get_threshold()[0] == STARTUP_THRESHOLD:
        gc.freeze()
        gc.set_threshold(*_DEFAULT)


def launcher_line() -> str:
    """What a command launcher runs first: :func:`startup` before it imports anything of ctk's."""
    return f"import gc; gc.set_threshold({STARTUP_THRESHOLD}, {_DEFAULT[1]}, {_DEFAULT[2]})  # ctk_shared.collector\n"
