"""The containerd event ctk publishes when a container's health status changes.

Docker emits ``health_status: healthy`` (and ``unhealthy``/``starting``) for a container; ctk has no daemon,
so the process that runs the checks (see health.py) publishes one event per status change through
containerd's own event service, where ``ctk-run events`` (and anything subscribed to containerd) sees it:

- topic ``/ctk/health`` in the container's namespace;
- an ``Any`` whose type URL is ``ctk.health.v1`` and whose value is JSON bytes
  ``{"id": "<container id>", "status": "starting" | "healthy" | "unhealthy"}``.

JSON rather than a protobuf message: ctk declares no proto of its own for this, and a consumer needs nothing
but a JSON parser. Only the standard ``json`` module is imported (the logger's start-up stays small).
"""
from __future__ import annotations

import json

TOPIC = "/ctk/health"
TYPE_URL = "ctk.health.v1"
STATUSES = ("starting", "healthy", "unhealthy")
MAX_EVENT = 4096  # a value this long is not ours: decode refuses it


def encode(container_id: str, status: str) -> bytes:
    """The event value for a status change of ``container_id``."""
    return json.dumps({"id": container_id, "status": status}, separators=(",", ":")).encode()


def decode(type_url: str, value: bytes) -> dict[str, str] | None:
    """``{"id": …, "status": …}`` for a health event's Any, None for anything else (another type URL, a value
    that is not a JSON object with string ``id`` and ``status``): events are published by anyone who can
    reach the socket, so they are read as untrusted input."""
    if type_url.removeprefix("type.googleapis.com/") != TYPE_URL or len(value) > MAX_EVENT:
        return None
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    cid, status = doc.get("id"), doc.get("status")
    if not isinstance(cid, str) or not isinstance(status, str):
        return None
    return {"id": cid, "status": status}
