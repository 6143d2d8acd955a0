"""Label keys containerd's garbage collector and unpacker understand, plus ctk's own.

Content is only kept while something references it: an image roots its target, and these labels
carry the reference down to children, configs, layers and snapshots.
"""
from __future__ import annotations

GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot"
GC_EXPIRE = "containerd.io/gc.expire"
UNCOMPRESSED = "containerd.io/uncompressed"
DISTRIBUTION_SOURCE = "containerd.io/distribution.source"
SNAPSHOT_REF = "containerd.io/snapshot.ref"

# ctk's own keys
PULL_REF = "ctk/pull.ref"


def gc_config(digest: str) -> dict[str, str]:
    return {f"{GC_REF_CONTENT}.config": digest}


def gc_layers(digests: list[str]) -> dict[str, str]:
    return {f"{GC_REF_CONTENT}.l.{i}": d for i, d in enumerate(digests)}


def gc_manifests(digests: list[str]) -> dict[str, str]:
    return {f"{GC_REF_CONTENT}.m.{i}": d for i, d in enumerate(digests)}


def gc_snapshot(snapshotter: str, chain_id: str) -> dict[str, str]:
    return {f"{GC_REF_SNAPSHOT}.{snapshotter}": chain_id}


def distribution_source(host: str, repo: str) -> dict[str, str]:
    """Where a blob came from, so a later push to the same registry can mount instead of upload."""
    # containerd's Go client drops the port; ctk keeps it so two registries on one host stay apart
    return {f"{DISTRIBUTION_SOURCE}.{host}": repo}
