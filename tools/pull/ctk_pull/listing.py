"""``images`` and ``inspect``: read-only views of the image store, as tables or JSON records.

JSON field names follow nerdctl's ``images --format json`` (Repository, Tag, ID, Digest, CreatedAt,
CreatedSince, Platform, Size, BlobSize, Name): they are the documented contract.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Image

    from .options import ImagesOptions, InspectOptions

COLUMNS = [("REPOSITORY", "Repository"), ("TAG", "Tag"), ("IMAGE ID", "ID"), ("CREATED", "CreatedSince"),
           ("PLATFORM", "Platform"), ("SIZE", "SizeHuman"), ("BLOB SIZE", "BlobSizeHuman")]
# The keys of :func:`image_record`: what ``images --format '{{.Field}}'`` may name (checked before listing).
FIELDS = ("Repository", "Tag", "Name", "ID", "Digest", "CreatedAt", "CreatedSince", "Platform", "Size", "BlobSize",
          "SizeHuman", "BlobSizeHuman")


def split_name(name: str) -> tuple[str, str]:
    """(repository as Docker shows it, tag) for an image-record name; foreign names pass through."""
    try:
        r = refs.parse(name, default_tag=False)
    except UsageError:
        return name, "<none>"
    repo = refs.Reference(r.domain, r.path).familiar()
    return repo, r.tag or "<none>"


def image_record(client: Client, image: Image, snapshotter: str, no_trunc: bool = False) -> dict[str, Any]:
    from ctk_shared import images as store

    repo, tag = split_name(image.name)
    rec: dict[str, Any] = {
        "Repository": repo, "Tag": tag, "Name": image.name,
        "ID": image.target.digest if no_trunc else image.target.digest.split(":", 1)[-1][:12],
        "Digest": image.target.digest,
    }
    created: datetime | None = image.created_at
    platform, size, blob = "", 0, image.target.size
    try:
        img = store.load_local(client, image.name)
        platform = str(img.config.platform)
        size, blob = store.image_sizes(client, img, snapshotter)
        if img.config.created:
            created = _parse_time(img.config.created) or created
    except CtkError:
        platform = "(content missing)"  # e.g. made by another tool for another platform: still listed
    now = datetime.now(UTC)
    rec.update({
        "CreatedAt": created.isoformat() if created else "",
        "CreatedSince": output.human_duration_ago((now - created).total_seconds()) if created else "",
        "Platform": platform, "Size": size, "BlobSize": blob,
        "SizeHuman": output.human_size(size), "BlobSizeHuman": output.human_size(blob),
    })
    return rec


def _parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Listing:
    """``images``: the records and the table's columns (the cli prints them: a table, JSON lines or a template)."""

    records: list[dict[str, Any]]
    columns: list[tuple[str, str]]


def images(client: Client, gopts: GlobalOptions, opts: ImagesOptions) -> Listing:
    output.parse_format(opts.fmt, FIELDS)  # a bad template is a usage error before any containerd call
    found = sorted(client.images.list(), key=lambda i: i.name)
    records = [image_record(client, i, gopts.snapshotter, opts.no_trunc) for i in found]
    repository = opts.repository
    if repository:
        records = [r for r in records if repository in (r["Repository"], f"{r['Repository']}:{r['Tag']}", r["Name"])]
    columns = list(COLUMNS)
    if opts.digests:
        columns.insert(2, ("DIGEST", "Digest"))
    return Listing(records, columns)


@dataclass(frozen=True)
class Inspected:
    """``inspect``: the documents (printed as one JSON array, or a template each), or with ``--raw`` the stored
    target documents as they are (printed one per line)."""

    docs: list[dict[str, Any]]
    raw: list[str]
    error: CtkError | None = None  # the ref that failed (the ones before it are in docs/raw), the rest not tried


def inspect(client: Client, gopts: GlobalOptions, opts: InspectOptions) -> Inspected:
    """Image documents as ``docker image inspect`` has them; ``raw``: each stored target document instead."""
    from ctk_shared import images as store

    if opts.raw and opts.fmt:
        raise UsageError("--raw and --format are mutually exclusive")
    output.parse_format(opts.fmt)  # a syntax error before any work
    docs: list[dict[str, Any]] = []
    raws: list[str] = []
    for text in opts.refs:
        try:
            img = store.load_local(client, text, opts.platform)
        except CtkError as e:
            return Inspected(docs, raws, e)
        if opts.raw:
            raws.append(store.read_blob(client, img.image.target).decode())
            continue
        repo, tag = split_name(img.image.name)
        doc: dict[str, Any] = {
            "Name": img.image.name,
            "Id": img.manifest.config.digest,
            "RepoTags": [f"{repo}:{tag}"] if tag != "<none>" else [],
            "RepoDigests": [f"{repo}@{img.image.target.digest}"],
            "Digest": img.image.target.digest,
            "MediaType": img.image.target.media_type,
            "Created": img.config.created,
            "Os": img.config.raw.get("os", ""),
            "Architecture": img.config.raw.get("architecture", ""),
            "Variant": img.config.raw.get("variant", ""),
            "Config": img.config.config,
            "RootFS": img.config.raw.get("rootfs", {}),
            "ManifestDescriptor": img.manifest_desc.to_json(),
            "Manifest": json.loads(store.read_blob(client, img.manifest_desc)),
            "ImageConfig": img.config.raw,
        }
        docs.append(doc)
    return Inspected(docs, raws)
