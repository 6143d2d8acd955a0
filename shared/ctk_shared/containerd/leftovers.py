"""What a killed or failed pull leaves behind, and taking it back without touching a pull still running.

A pull holds everything it makes under one lease labelled ``ctk/pull.ref``: ingests (partial downloads),
committed blobs, committed layer snapshots and the active ``extract-*`` snapshot a layer is being unpacked
into. When the pull dies, the lease keeps all of that for its 24 h expiry. Only part of it is worth keeping:

* ingests and blobs let the next pull resume instead of downloading again; committed layer snapshots save
  unpacking them again;
* an ``extract-*`` snapshot is half of one layer's unpack, which is always restarted from scratch: it is
  only dead weight (about 200 MiB for a redis layer).

So :func:`reclaim_pulls` removes the ``extract-*`` snapshots of every pull lease whose owner process is gone
(:mod:`.owners`); a lease of the ref being pulled hands the rest to the new pull's lease (the new pull resumes
from it, and it is released with the new lease), and a lease left with nothing is deleted. A lease whose owner
still runs — a concurrent pull — is never touched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CtkError, NotFound
from ..labels import PULL_REF
from .owners import owner_gone

if TYPE_CHECKING:
    from .client import Client
    from .models import Lease, LeaseResource

EXTRACT_PREFIX = "extract-"  # the key prefix of the active snapshot a layer is unpacked into (images.Unpacker)


@dataclass
class Reclaimed:
    """What :func:`reclaim_pulls` took back."""

    snapshots: list[str] = field(default_factory=list)  # extract-* keys removed
    snapshot_bytes: int = 0  # their size, as the snapshotter counted it before removal
    leases: list[str] = field(default_factory=list)  # leases deleted
    download_bytes: int = 0  # partial downloads dropped (with drop_downloads)


def is_half_extracted(resource: LeaseResource) -> bool:
    return resource.type.startswith("snapshots/") and resource.id.startswith(EXTRACT_PREFIX)


def stale_pull_leases(client: Client) -> list[Lease]:
    """Pull (and load) leases whose owner process is certainly gone."""
    return [lease for lease in client.leases.list([f'labels."{PULL_REF}"']) if owner_gone(lease.labels)]


def remove_half_extracted(client: Client, lease_id: str, out: Reclaimed) -> list[LeaseResource]:
    """Remove the ``extract-*`` snapshots lease ``lease_id`` holds (and drop them from it); return the resources still held (the others,
    and any snapshot that could not be removed, e.g. one still mounted by a dying Apply)."""
    kept: list[LeaseResource] = []
    for r in client.leases.list_resources(lease_id):
        if not is_half_extracted(r):
            kept.append(r)
            continue
        sn = client.snapshots(r.type.split("/", 1)[1])
        try:
            size = sn.usage(r.id)[0]
        except CtkError:
            size = 0
        try:
            sn.remove(r.id)
        except NotFound:
            size = 0
        except CtkError:
            kept.append(r)
            continue
        try:
            client.leases.delete_resource(lease_id, r.id, r.type)
        except NotFound:
            pass
        out.snapshots.append(r.id)
        out.snapshot_bytes += size
    return kept


def reclaim_pulls(client: Client, *, ref: str | None = None, adopt_into: str | None = None,
                  drop_downloads: bool = False) -> Reclaimed:
    """Take back what pulls whose process is gone left behind (see the module doc).

    ``ref`` and ``adopt_into``: the pull of ``ref`` now running under lease ``adopt_into`` takes over what a
    dead pull of the same ref kept (so it resumes, and nothing outlives it). ``drop_downloads`` (prune -a)
    also releases partial downloads and unpacked layers of dead pulls of other refs.
    """
    out = Reclaimed()
    for lease in stale_pull_leases(client):
        try:
            held = remove_half_extracted(client, lease.id, out)
            if adopt_into and ref and lease.labels.get(PULL_REF) == ref:
                for r in held:
                    client.leases.add_resource(adopt_into, r.id, r.type)
                held = []
            elif drop_downloads and not any(is_half_extracted(r) for r in held):
                out.download_bytes += _ingest_bytes(client, held)
                held = []
            if not held:
                client.leases.delete(lease.id)
                out.leases.append(lease.id)
        except NotFound:
            continue  # another ctk reclaimed it at the same moment
    return out


def _ingest_bytes(client: Client, resources: list[LeaseResource]) -> int:
    refs = {r.id for r in resources if r.type == "ingests"}
    if not refs:
        return 0
    try:
        return sum(s.offset for s in client.content.statuses() if s.ref in refs)
    except CtkError:
        return 0
