"""Where containerd listens, and the error for when nothing does: shared by the channel (which dials) and the error
mapping (which explains a failed call), and cheap to import (no grpc)."""
from __future__ import annotations

import os

from ..errors import Unavailable

NOT_RUNNING_HINT = "start containerd, or point --address / CONTAINERD_ADDRESS at its socket"


def socket_path(address: str) -> str:
    """The filesystem path of ``address`` (``/run/x.sock``, ``unix:///run/x.sock`` or ``unix:/run/x.sock``)."""
    path = address.removeprefix("unix://") if address.startswith("unix://") else address.removeprefix("unix:")
    return os.path.abspath(path)


def not_running(address: str) -> Unavailable:
    return Unavailable(f"containerd is not running at {address}", hint=NOT_RUNNING_HINT)
