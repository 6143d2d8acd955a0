"""OCI and Docker image data: media types, descriptors, manifests, indexes, platforms and digests.

Pure data, no I/O. Registry and containerd code both speak in these types.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError, InvalidArgument
from .hashers import hasher as hasher  # its home is ctk_shared.hashers; re-exported for its callers here
from .limits import MAX_MANIFEST_SIZE as MAX_MANIFEST_SIZE  # every size cap lives in ctk_shared.limits

# --- media types -------------------------------------------------------------------------------
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP,
    OCI_LAYER_NONDIST_ZSTD, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN,
})
ENCRYPTED_SUFFIX = "+encrypted"

# The registry accepts these on manifest GETs; order is preference.
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_layer(media_type: str) -> bool:
    return media_type.removesuffix(ENCRYPTED_SUFFIX) in LAYER_TYPES


def layer_compression(media_type: str) -> str:
    """'gzip', 'zstd' or '' for an uncompressed tar; the encrypted suffix is ignored."""
    mt = media_type.removesuffix(ENCRYPTED_SUFFIX)
    if mt.endswith("+gzip") or mt.endswith(".tar.gzip"):
        return "gzip"
    if mt.endswith("+zstd"):
        return "zstd"
    return ""


# --- digests -----------------------------------------------------------------------------------
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")


def validate_digest(d: str) -> str:
    if not _DIGEST_RE.match(d):
        raise InvalidArgument(f"invalid digest {d!r}")
    return d


def sha256_digest(data: bytes) -> str:
    h = hasher("sha256:", len(data))
    h.update(data)
    return "sha256:" + h.hexdigest()


def verify_bytes(data: bytes, digest: str, what: str = "content") -> None:
    h = hasher(digest, len(data))
    h.update(data)
    got = f"{digest.split(':', 1)[0]}:{h.hexdigest()}"
    if got != digest:
        raise IntegrityError(f"{what}: digest mismatch (expected {digest}, got {got})")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The snapshot identity of each layer stack: chain[i] = sha256(chain[i-1] + ' ' + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256_digest(f"{out[-1]} {d}".encode()))
    return out


# --- platforms ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """An OCI platform (``linux/arm64/v8``): what an index entry is chosen by."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Accepts os/arch[/variant] and bare arch, with Docker's aliases (x86_64, aarch64, armhf…)."""
        parts = text.strip().lower().split("/")
        if not parts[0] or len(parts) > 3:
            raise InvalidArgument(f"invalid platform {text!r} (expected os/arch[/variant])")
        if len(parts) == 1:
            if parts[0] in ("linux", "windows", "darwin"):
                return cls(parts[0], host_platform().architecture, host_platform().variant)
            parts = ["linux", parts[0]]
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else ""
        arch, variant = _normalize_arch(arch, variant)
        return cls(os_, arch, variant)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Platform:
        arch, variant = _normalize_arch(str(d.get("architecture", "")), str(d.get("variant", "") or ""))
        return cls(str(d.get("os", "")), arch, variant)

    def to_json(self) -> dict[str, str]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    def matches(self, other: Platform) -> bool:
        """True if an image for ``other`` runs here; an unset variant matches the default one."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        if not self.variant or not other.variant:
            return True
        if self.architecture == "arm" and self.variant in ("v6", "v7", "v8") and other.variant in ("v5", "v6", "v7"):
            return other.variant <= self.variant
        return self.variant == other.variant


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch = arch.lower()
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant in ("", "v1") else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("", "v8") else variant
    if arch in ("armhf",):
        return "arm", "v7"
    if arch in ("armel",):
        return "arm", "v6"
    if arch == "arm":
        return "arm", variant or "v7"
    if arch in ("i386", "i686", "386"):
        return "386", variant
    return arch, variant


def host_platform() -> Platform:
    arch, variant = _normalize_arch(os.uname().machine, "")  # platform.machine(), without platform's import
    return Platform("linux", arch, variant)


# --- descriptors and documents -----------------------------------------------------------------
@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor; only media type, digest and size take part in equality."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = field(default=None, compare=False, hash=False)
    urls: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @classmethod
    def from_json(cls, d: Any) -> Descriptor:
        if not isinstance(d, dict):
            raise InvalidArgument("descriptor is not a JSON object")
        try:
            media_type = str(d["mediaType"])
            digest = validate_digest(str(d["digest"]))
            size = int(d["size"])
        except KeyError as e:
            raise InvalidArgument(f"descriptor is missing {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"descriptor is malformed: {e}") from None
        if size < 0:
            raise InvalidArgument(f"descriptor {digest} has a negative size")
        plat = Platform.from_json(d["platform"]) if isinstance(d.get("platform"), dict) else None
        ann = d.get("annotations") or {}
        return cls(media_type, digest, size, {str(k): str(v) for k, v in ann.items()}, plat,
                   tuple(str(u) for u in d.get("urls") or ()))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_json()
        return d


def parse_json_document(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def sniff_media_type(doc: dict[str, Any]) -> str:
    """Media type of a manifest/index document when the transport did not say (OCI layouts, tars)."""
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise InvalidArgument("cannot tell the document's media type")


@dataclass(frozen=True)
class Index:
    """An OCI image index (or Docker manifest list), parsed from hostile bytes."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Index:
        doc = parse_json_document(data, "image index")
        mt = media_type or sniff_media_type(doc)
        if not isinstance(doc.get("manifests"), list):
            raise InvalidArgument("image index has no manifests list")
        return cls(mt, tuple(Descriptor.from_json(m) for m in doc["manifests"]), dict(doc.get("annotations") or {}))


@dataclass(frozen=True)
class Manifest:
    """An OCI (or Docker v2) image manifest, parsed from hostile bytes."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        doc = parse_json_document(data, "image manifest")
        if doc.get("schemaVersion") == 1 or media_type == DOCKER_SCHEMA1_SIGNED:
            raise InvalidArgument("Docker schema 1 manifests are not supported (push the image again with a current tool)")
        if "config" not in doc or not isinstance(doc.get("layers"), list):
            raise InvalidArgument("image manifest lacks config or layers")
        mt = media_type or sniff_media_type(doc)
        return cls(mt, Descriptor.from_json(doc["config"]), tuple(Descriptor.from_json(x) for x in doc["layers"]),
                   dict(doc.get("annotations") or {}))


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the image config ctk reads; ``raw`` keeps everything else."""

    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        doc = parse_json_document(data, "image config")
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise InvalidArgument("image config has no rootfs.diff_ids")
        return cls(doc)

    @property
    def diff_ids(self) -> list[str]:
        return [validate_digest(str(d)) for d in self.raw["rootfs"]["diff_ids"]]

    @property
    def platform(self) -> Platform:
        return Platform.from_json(self.raw)

    @property
    def created(self) -> str:
        return str(self.raw.get("created") or "")

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.raw.get("config") or {})


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The best manifest in an index for a platform, as containerd's platform matcher picks it."""
    candidates = [m for m in index.manifests if m.media_type in MANIFEST_TYPES and m.platform is not None
                  and m.platform.os != "unknown" and want.matches(m.platform)]
    if not candidates:
        # an index without platform fields (e.g. single-manifest OCI layouts) still names one image
        bare = [m for m in index.manifests if m.media_type in MANIFEST_TYPES and m.platform is None]
        if len(bare) == 1:
            return bare[0]
        have = ", ".join(sorted({str(m.platform) for m in index.manifests if m.platform})) or "none"
        raise InvalidArgument(f"no image for platform {want} in the index (available: {have})",
                              hint="choose one with --platform")
    exact = [m for m in candidates if m.platform and m.platform.variant == want.variant]
    return (exact or candidates)[0]
