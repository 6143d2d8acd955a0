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

# The remote-snapshot protocol: a Prepare carrying SNAPSHOT_REF plus these labels lets a snapshotter that can serve
# the layer from its registry (stargz, ctk-lazy) commit it at once and answer AlreadyExists, so the layer is never
# downloaded. stargz reads either set; ctk's client sends both, as nerdctl does.
SNAPSHOT_LABEL_PREFIX = "containerd.io/snapshot/"  # what containerd passes from layer annotations to a snapshotter
REMOTE_SNAPSHOT = "containerd.io/snapshot/remote"  # on a committed snapshot the snapshotter serves remotely
STARGZ_REFERENCE = "containerd.io/snapshot/remote/stargz.reference"
STARGZ_DIGEST = "containerd.io/snapshot/remote/stargz.digest"
STARGZ_LAYERS = "containerd.io/snapshot/remote/stargz.layers"
CRI_IMAGE_REF = "containerd.io/snapshot/cri.image-ref"
CRI_LAYER_DIGEST = "containerd.io/snapshot/cri.layer-digest"
CRI_IMAGE_LAYERS = "containerd.io/snapshot/cri.image-layers"
CRI_MANIFEST_DIGEST = "containerd.io/snapshot/cri.manifest-digest"
_LAYERS_LABEL_LIMIT = 4096  # containerd caps a label at 4 KiB: list as many following layers as fit

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
# the container's name: a label on the container (ctk-run) and an annotation in its spec (for ctk-net's hook)
NAME = "ctk/name"
ANN_NAME = NAME
ANN_HOSTNAME = "ctk/hostname"
ANN_STATE_DIR = "ctk/state-dir"  # the container's directory under the data root (hosts file, network state)
ANN_IP = "ctk/ip"  # --ip, for the first network
# per network: {"Aliases": [...], "IPAddress": "..."} (--network-alias, --network name=…,alias=…,ip=…)
ANN_ENDPOINTS = "ctk/endpoints"
# written by the hook into the state dir, read by ctk-run (ps PORTS, inspect NetworkSettings, port):
# {"Networks": {name: {"IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "Interface"}}, "Ports": [mapping]}
NETWORK_STATE_FILE = "network.json"


def remote_layer_labels(ref: str, manifest_digest: str, layer_digests: list[str], i: int) -> dict[str, str]:
    """What a remote snapshotter needs to fetch layer ``i`` itself: where it lives and which layers follow."""
    following: list[str] = []
    size = 0
    for d in layer_digests[i:]:
        size += len(d) + 1
        if size > _LAYERS_LABEL_LIMIT - len(STARGZ_LAYERS):
            break
        following.append(d)
    layers = ",".join(following)
    return {STARGZ_REFERENCE: ref, STARGZ_DIGEST: layer_digests[i], STARGZ_LAYERS: layers,
            CRI_IMAGE_REF: ref, CRI_LAYER_DIGEST: layer_digests[i], CRI_IMAGE_LAYERS: layers,
            CRI_MANIFEST_DIGEST: manifest_digest}


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
