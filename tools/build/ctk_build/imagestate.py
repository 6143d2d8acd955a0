"""The image a stage is building: config, layers and history, and how it is written to containerd at the end.

History entries follow the classic builder's wording, which is also what ``buildah bud`` writes:
``/bin/sh -c #(nop) ENV A=b`` for metadata steps (``empty_layer: true``), ``/bin/sh -c <command>`` for RUN
(prefixed ``|N K=V …`` when build args are in scope) and ``/bin/sh -c #(nop) COPY file:<sha256> in <dest> ``.

Times: a layer keeps the time it was first built (cached steps reuse it), metadata steps take the time of
the latest layer, and the image's ``created`` is the last history entry's. So a fully cached rebuild yields
the same config and the same digest; ``--source-date-epoch`` pins them all.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as L
from ctk_shared import oci

if TYPE_CHECKING:
    from ctk_shared.containerd import Client


def rfc3339(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ImageState:
    """Mutable while a stage runs; :meth:`fork` gives an independent copy (``FROM <stage>``)."""

    config: dict[str, Any] = field(default_factory=dict)  # the "config" object: Env, Cmd, WorkingDir …
    diff_ids: list[str] = field(default_factory=list)
    layers: list[oci.Descriptor] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    platform: oci.Platform = field(default_factory=oci.host_platform)
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level config fields (author, os.version…)
    last_created: str = ""
    base_desc: str = ""  # the base manifest digest ("" for scratch): part of the cache key

    @classmethod
    def from_config(cls, raw: dict[str, Any], layers: list[oci.Descriptor], base_desc: str) -> ImageState:
        raw = copy.deepcopy(raw)
        extra = {k: v for k, v in raw.items()
                 if k not in ("config", "rootfs", "history", "created", "architecture", "os", "variant")}
        return cls(dict(raw.get("config") or {}), list(raw.get("rootfs", {}).get("diff_ids", [])), list(layers),
                   list(raw.get("history") or []), oci.Platform.from_json(raw), extra, str(raw.get("created", "")),
                   base_desc)

    def fork(self) -> ImageState:
        return copy.deepcopy(self)

    @property
    def chain_id(self) -> str:
        chain = oci.chain_ids(self.diff_ids)
        return chain[-1] if chain else ""

    # -- config helpers -------------------------------------------------------------------------
    def env_list(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env_list():
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def set_env(self, key: str, value: str) -> None:
        env = self.env_list()
        for i, item in enumerate(env):
            if item.partition("=")[0] == key:
                env[i] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config["Env"] = env

    def add_history(self, created_by: str, *, empty: bool, created: str) -> None:
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        self.history.append(entry)
        self.last_created = created

    def add_layer(self, desc: oci.Descriptor, diff_id: str) -> None:
        self.layers.append(desc)
        self.diff_ids.append(diff_id)

    # -- output ---------------------------------------------------------------------------------
    def config_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.last_created:
            doc["created"] = self.last_created
        doc.update(self.extra)
        doc["architecture"] = self.platform.architecture
        doc["os"] = self.platform.os
        if self.platform.variant:
            doc["variant"] = self.platform.variant
        doc["config"] = {k: v for k, v in self.config.items() if v not in (None, [], {}) or k == "Cmd" and v == []}
        doc["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        doc["history"] = self.history
        return doc


@dataclass(frozen=True)
class WrittenImage:
    """A built image in the content store: its manifest (or index: ``config_digest`` is "") and its config's digest."""

    manifest: oci.Descriptor
    config_digest: str


def write_image(client: Client, state: ImageState, snapshotter: str) -> WrittenImage:
    """Store config and manifest (with the GC labels that keep layers and snapshots) in the content store.
    Call under a lease; an image record (or the lease) must root the result."""
    config_bytes = json.dumps(state.config_json(), separators=(",", ":")).encode()
    config_digest = oci.sha256_digest(config_bytes)
    chain = state.chain_id
    client.content.write_blob(f"ctk-build-config-{config_digest}", config_bytes, config_digest,
                              L.gc_snapshot(snapshotter, chain) if chain else {})
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [d.to_json() for d in state.layers],
    }
    mbytes = json.dumps(manifest, separators=(",", ":")).encode()
    mdigest = oci.sha256_digest(mbytes)
    labels = {**L.gc_config(config_digest), **L.gc_layers([d.digest for d in state.layers])}
    client.content.write_blob(f"ctk-build-manifest-{mdigest}", mbytes, mdigest, labels)
    return WrittenImage(oci.Descriptor(oci.OCI_MANIFEST, mdigest, len(mbytes)), config_digest)
