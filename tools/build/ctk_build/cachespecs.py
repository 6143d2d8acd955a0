"""``--cache-to`` and ``--cache-from`` values, read as buildx reads them.

A value is one CSV record (quotes allowed: ``"dest=/a,b"``). When no field has an ``=``, every field is a
registry ref (``--cache-from reg/app:cache``); otherwise the fields are ``key=value`` (keys case-insensitive)
and ``type=`` is required. ctk knows two types: ``registry`` (``ref=``) and ``local`` (an OCI layout directory,
``dest=`` to write, ``src=`` to read). An unknown type or key is a usage error: a typo must not silently mean
"no cache". BuildKit's ``gha``/``s3``/``azblob``/``inline`` backends are refused with that reason.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass

from ctk_shared import oci
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, UsageError

OTHER_BACKENDS = frozenset({"gha", "s3", "azblob", "inline"})
_TO_KEYS = {
    "registry": {"ref", "mode", "compression", "force-compression", "ignore-error", "oci-mediatypes",
                 "image-manifest"},
    "local": {"dest", "tag", "mode", "compression", "force-compression", "ignore-error", "oci-mediatypes",
              "image-manifest"},
}
_FROM_KEYS = {"registry": {"ref"}, "local": {"src", "tag", "digest"}}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool, as buildx reads booleans
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True)
class CacheTo:
    """Where to export the build cache."""

    type: str  # registry | local
    target: str  # the registry ref (normalised), or the layout directory
    mode: str = "min"  # min: the result's steps only; max: every stage's
    compression: str = "gzip"  # of the exported layers: gzip | uncompressed
    force_compression: bool = False  # also recompress layers stored in the other form
    ignore_error: bool = False  # a failed export warns instead of failing the build
    tag: str = "latest"  # local: the name in the layout's index.json

    def __str__(self) -> str:
        return self.target if self.type == "registry" else f"{self.target} (tag {self.tag})"


@dataclass(frozen=True)
class CacheFrom:
    """Where to import build cache from."""

    type: str  # registry | local
    source: str  # the registry ref (normalised), or the layout directory
    tag: str = "latest"  # local: which manifest of the layout's index.json
    digest: str = ""  # local: or this manifest digest

    def __str__(self) -> str:
        return self.source


def _fields(flag: str, text: str) -> list[str]:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as e:
        raise UsageError(f"{flag} {text!r}: {e}") from None
    if len(rows) != 1 or not rows[0] or any(not f for f in rows[0]):
        raise UsageError(f"{flag} {text!r}: expected type=registry,ref=NAME or type=local,…")
    return rows[0]


def _attrs(flag: str, text: str, fields: list[str], known: dict[str, set[str]]) -> tuple[str, dict[str, str]]:
    kind = ""
    attrs: dict[str, str] = {}
    for f in fields:
        key, eq, value = f.partition("=")
        if not eq:
            raise UsageError(f"{flag} {text!r}: invalid value {f!r} (expected key=value)")
        key = key.lower()
        if key == "type":
            kind = value
        else:
            attrs[key] = value
    if not kind:
        raise UsageError(f"{flag} {text!r}: type= is required", hint="type=registry,ref=NAME or type=local,…")
    if kind in OTHER_BACKENDS:
        raise UsageError(f"{flag} {text!r}: cache type {kind!r} is not supported by ctk-build",
                         hint="use type=registry,ref=NAME or type=local (an OCI layout directory)")
    if kind not in known:
        raise UsageError(f"{flag} {text!r}: unknown cache type {kind!r}", hint="registry or local")
    unknown = sorted(set(attrs) - known[kind])
    if unknown:
        raise UsageError(f"{flag} {text!r}: unknown key {unknown[0]!r} for type={kind}",
                         hint="known: " + ", ".join(sorted(known[kind])))
    return kind, attrs


def _bool(flag: str, key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{flag}: {key}={value!r} is not a boolean (true or false)")


def _ref(flag: str, text: str) -> str:
    if not text:
        raise UsageError(f"{flag}: ref= is required for type=registry")
    try:
        return str(refs.parse(text))
    except CtkError as e:
        raise UsageError(f"{flag}: invalid cache ref {text!r}: {e.message}") from None


def parse_cache_to(text: str) -> list[CacheTo]:
    flag = "--cache-to"
    fields = _fields(flag, text)
    if not any("=" in f for f in fields):
        return [CacheTo("registry", _ref(flag, f)) for f in fields]
    kind, a = _attrs(flag, text, fields, _TO_KEYS)
    mode = a.get("mode", "min")
    if mode not in ("min", "max"):
        raise UsageError(f"{flag} {text!r}: mode={mode!r}: expected min or max")
    compression = a.get("compression", "gzip")
    if compression not in ("gzip", "uncompressed"):
        raise UsageError(f"{flag} {text!r}: compression={compression!r} is not supported",
                         hint="gzip (the default) or uncompressed")
    for key in ("oci-mediatypes", "image-manifest"):  # ctk writes only OCI media types, in an image manifest
        if key in a and not _bool(flag, key, a[key]):
            raise UsageError(f"{flag} {text!r}: {key}=false is not supported: the cache is always an OCI image "
                             "manifest")
    force = _bool(flag, "force-compression", a.get("force-compression", "false"))
    ignore = _bool(flag, "ignore-error", a.get("ignore-error", "false"))
    if kind == "registry":
        return [CacheTo("registry", _ref(flag, a.get("ref", "")), mode, compression, force, ignore)]
    if not a.get("dest"):
        raise UsageError(f"{flag} {text!r}: dest=DIR is required for type=local")
    return [CacheTo("local", a["dest"], mode, compression, force, ignore, _tag(flag, a.get("tag", "latest")))]


def parse_cache_from(text: str) -> list[CacheFrom]:
    flag = "--cache-from"
    fields = _fields(flag, text)
    if not any("=" in f for f in fields):
        return [CacheFrom("registry", _ref(flag, f)) for f in fields]
    kind, a = _attrs(flag, text, fields, _FROM_KEYS)
    if kind == "registry":
        return [CacheFrom("registry", _ref(flag, a.get("ref", "")))]
    if not a.get("src"):
        raise UsageError(f"{flag} {text!r}: src=DIR is required for type=local")
    digest = a.get("digest", "")
    if digest:
        try:
            oci.validate_digest(digest)
        except CtkError as e:
            raise UsageError(f"{flag} {text!r}: {e.message}") from None
    return [CacheFrom("local", a["src"], _tag(flag, a.get("tag", "latest")), digest)]


def _tag(flag: str, tag: str) -> str:
    if not tag or len(tag) > 128 or any(c.isspace() for c in tag):
        raise UsageError(f"{flag}: tag={tag!r} is not a valid name")
    return tag


def parse_all(cache_to: tuple[str, ...], cache_from: tuple[str, ...]) -> tuple[list[CacheTo], list[CacheFrom]]:
    """Every flag value, checked before any work (a usage error exits 2 with nothing done)."""
    return ([t for v in cache_to for t in parse_cache_to(v)], [f for v in cache_from for f in parse_cache_from(v)])
