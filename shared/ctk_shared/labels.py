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
# the networks a container joins (JSON list of names; "none"/"host" are not networks): written by ctk-run,
# read by ctk-net to refuse removing a network in use
NETWORKS = "ctk/networks"

# OCI annotations ctk-run puts in a networked container's runtime spec; runc hands them to ctk-net's hook
# (on stdin, in the container state), so the hook never has to ask containerd.
ANN_NETWORKS = NETWORKS  # JSON list of network names, in interface order (eth0, eth1, …)
ANN_PORTS = "ctk/ports"  # JSON list of {"hostIP", "hostPort" (0 = pick one), "containerPort", "protocol"}
ANN_NAMESPACE = "ctk/namespace"
ANN_NAME = "ctk/name"
ANN_HOSTNAME = "ctk/hostname"
ANN_STATE_DIR = "ctk/state-dir"  # the container's directory under the data root (hosts file, network state)
ANN_IP = "ctk/ip"  # --ip, for the first network
# written by the hook into the state dir, read by ctk-run (ps PORTS, inspect NetworkSettings, port):
# {"Networks": {name: {"IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "Interface"}}, "Ports": [mapping]}
NETWORK_STATE_FILE = "network.json"


def conflist_name(network: str) -> str:
    """The file ctk-net writes for a network in the CNI config dir (ctk-run recognises it without ctk-net)."""
    return f"ctk-{network}.conflist"


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
