"""The OCI distribution API of one registry host: manifests, blobs, uploads and tags.

Repositories are paths without the host (``library/busybox``); references are tags or digests. The connection
(scheme, TLS, auth, the request with its one 401 retry) is :class:`.session.RegistrySession`; blob bodies are
:mod:`.streams`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urljoin

import requests

from .. import limits, oci
from ..errors import CtkError, IntegrityError, InvalidArgument
from . import bodies, tokens
from . import errors as rerr
from .session import RegistrySession
from .streams import BlobStream, SizedBody, int_header, rechunk, set_read_timeout

log = logging.getLogger(__name__)
_OCTET = "application/octet-stream"
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", _OCTET})


class RegistryClient(RegistrySession):
    """A client for one registry host (``docker.io``, ``ghcr.io``, ``127.0.0.1:5000``)."""

    def resolve(self, repo: str, reference: str) -> oci.Descriptor:
        """The descriptor (media type, digest, size) of a manifest or index, from a HEAD when possible."""
        what = f"resolving {self._ref(repo, reference)}"
        is_digest = ":" in reference
        if is_digest:
            oci.validate_digest(reference)
        resp = self._request("HEAD", f"/v2/{repo}/manifests/{reference}", scopes=[tokens.repository_scope(repo)],
                             what=what, ok=(200, 405, 501), not_found_code=rerr.MANIFEST_UNKNOWN,
                             headers={"Accept": ", ".join(oci.MANIFEST_ACCEPT)})
        with resp:
            if resp.status_code == 200:
                digest = resp.headers.get("Docker-Content-Digest", "")
                size = int_header(resp, "Content-Length")
                media_type = _media_type(resp)
                if is_digest:
                    if digest and digest.split(":")[0] == reference.split(":")[0] and digest != reference:
                        raise IntegrityError(f"{what}: registry says the digest is {digest}")
                    digest = reference
                if digest and size is not None and media_type not in _GENERIC_TYPES:
                    return oci.Descriptor(media_type, oci.validate_digest(digest), size)
        data, media_type, digest = self._fetch_manifest(repo, reference, what)
        return oci.Descriptor(media_type, digest, len(data))

    def get_manifest(self, repo: str, reference: str, size: int | None = None,
                     kind: str = "manifest") -> tuple[bytes, str]:
        """The manifest or index bytes and media type; verified when ``reference`` is a digest.

        ``size`` is the size a descriptor declares (checked against the cap of ``kind`` before asking):
        the read stops there, and a body of any other length is an IntegrityError.
        """
        what = f"fetching {kind} {self._ref(repo, reference)}"
        if size is not None:
            limits.check_declared(kind, size, what)
        data, media_type, _ = self._fetch_manifest(repo, reference, what, size, kind)
        return data, media_type

    def _fetch_manifest(self, repo: str, reference: str, what: str, size: int | None = None,
                        kind: str = "manifest") -> tuple[bytes, str, str]:
        is_digest = ":" in reference
        if is_digest:
            oci.validate_digest(reference)
        resp = self._request("GET", f"/v2/{repo}/manifests/{reference}", scopes=[tokens.repository_scope(repo)],
                             what=what, not_found_code=rerr.MANIFEST_UNKNOWN,
                             headers={"Accept": ", ".join(oci.MANIFEST_ACCEPT)})
        with resp:
            try:  # by tag, an index and a manifest share one cap: which one this is shows only once it is read
                if size is None:
                    data = bodies.read(resp, kind, what)
                else:
                    data = b"".join(limits.exact(bodies.chunks(resp), size, what))
            except requests.exceptions.RequestException as e:
                raise self._transport_error(e, what) from None
            header_digest = resp.headers.get("Docker-Content-Digest", "")
            media_type = _media_type(resp)
        if is_digest:
            oci.verify_bytes(data, reference, what)
            digest = reference
        elif header_digest:
            try:
                oci.verify_bytes(data, header_digest, what)
            except InvalidArgument:  # an algorithm we do not know: trust our own hash
                header_digest = ""
            digest = header_digest or oci.sha256_digest(data)
        else:
            digest = oci.sha256_digest(data)
        if media_type in _GENERIC_TYPES or not media_type:
            try:
                media_type = oci.sniff_media_type(oci.parse_json_document(data, "manifest"))
            except InvalidArgument:
                pass
        return data, media_type, digest

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload a manifest or index under a tag (or its digest); returns its digest."""
        what = f"pushing manifest {self._ref(repo, reference)}"
        if ":" in reference:
            oci.verify_bytes(data, oci.validate_digest(reference), what)
        resp = self._request("PUT", f"/v2/{repo}/manifests/{reference}",
                             scopes=[tokens.repository_scope(repo, push=True)], what=what, ok=(200, 201, 202),
                             headers={"Content-Type": media_type}, data=bytes(data))
        with resp:
            digest = resp.headers.get("Docker-Content-Digest", "")
        if digest:
            oci.verify_bytes(data, digest, f"{what}: registry's digest")
            return digest
        return reference if ":" in reference else oci.sha256_digest(data)

    def open_blob(self, repo: str, digest: str, offset: int = 0, length: int | None = None, *,
                  resumable: bool = False) -> BlobStream:
        """Stream a blob from byte ``offset`` (Range request); the caller verifies the digest.

        A body that sends nothing for the stall limit raises RegistryTimeout naming how far it got; with
        ``resumable`` (the caller keeps what it wrote, as a pull's ingest does) the message says a retry resumes.

        With ``length`` the request asks for ``bytes=offset-(offset+length-1)`` only; a registry may still send
        more (one that ignores Range sends everything from ``offset`` on), so read at most ``length`` bytes.
        """
        oci.validate_digest(digest)
        if offset < 0:
            raise InvalidArgument(f"negative blob offset {offset}")
        if length is not None and length < 1:
            raise InvalidArgument(f"blob range length {length} is not positive")
        what = f"fetching blob {digest} from {self.host}/{repo}"
        headers = {"Accept-Encoding": "identity"}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            headers["Range"] = f"bytes={offset}-"
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scopes=[tokens.repository_scope(repo)], what=what,
                             ok=(200, 206), not_found_code=rerr.BLOB_UNKNOWN, headers=headers)
        set_read_timeout(resp, self.timeouts[2])
        return BlobStream(resp, offset, self.host, what, self._secrets(), stall=self.timeouts[2], resumable=resumable)

    def blob_exists(self, repo: str, digest: str) -> bool:
        oci.validate_digest(digest)
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[tokens.repository_scope(repo)],
                             what=f"checking blob {digest} in {self.host}/{repo}", ok=(200, 404))
        with resp:
            return resp.status_code == 200

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False (with the opened upload cancelled) when the registry declines."""
        oci.validate_digest(digest)
        what = f"mounting blob {digest} from {from_repo} into {self.host}/{repo}"
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo},
                             scopes=[tokens.repository_scope(repo, push=True), tokens.repository_scope(from_repo)],
                             what=what, ok=(201, 202))
        with resp:
            if resp.status_code == 201:
                return True
            location = resp.headers.get("Location")
            upload_url = urljoin(resp.url, location) if location else None
        if upload_url:
            self._cancel_upload(repo, upload_url)
        return False

    def _cancel_upload(self, repo: str, url: str) -> None:
        try:
            resp = self._request("DELETE", url, scopes=[tokens.repository_scope(repo, push=True)],
                                 what=f"cancelling an upload to {self.host}/{repo}", ok=range(200, 500))
            resp.close()
        except CtkError as e:  # best effort: the registry expires abandoned uploads anyway
            log.debug("cancelling upload %s: %s", url, e)

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes], *,
                    chunk_size: int | None = None) -> None:
        """Upload a blob: one PUT by default, or PATCH requests of ``chunk_size`` bytes then a final PUT."""
        oci.validate_digest(digest)
        if size < 0:
            raise InvalidArgument(f"negative blob size {size}")
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidArgument(f"chunk size must be positive, not {chunk_size}")
        what = f"pushing blob {digest} to {self.host}/{repo}"
        scopes = [tokens.repository_scope(repo, push=True)]
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes, what=what, ok=(202,))
        with resp:
            location = self._location(resp, what)
        try:
            if chunk_size is None:
                body = SizedBody(chunks, size, what)
                resp = self._request("PUT", location, params={"digest": digest}, scopes=scopes, what=what,
                                     ok=(201, 204), headers={"Content-Type": _OCTET}, data=body)
            else:
                location = self._patch_chunks(location, chunks, size, chunk_size, scopes, what)
                resp = self._request("PUT", location, params={"digest": digest}, scopes=scopes, what=what,
                                     ok=(201, 204), data=b"")
            resp.close()
        except Exception:  # not on Ctrl-C: the registry purges abandoned uploads itself
            self._cancel_upload(repo, location)
            raise

    def _patch_chunks(self, location: str, chunks: Iterable[bytes], size: int, chunk_size: int,
                      scopes: Sequence[str], what: str) -> str:
        offset = 0
        for piece in rechunk(chunks, chunk_size):
            if offset + len(piece) > size:
                raise IntegrityError(f"{what}: more than the declared {size} bytes")
            while piece:
                end = offset + len(piece) - 1
                resp = self._request("PATCH", location, scopes=scopes, what=what, ok=(202, 204),
                                     headers={"Content-Type": _OCTET, "Content-Range": f"{offset}-{end}"},
                                     data=piece)
                with resp:
                    location = self._location(resp, what, default=location)
                    got = _upload_range_end(resp.headers.get("Range", ""))
                if got is None or got == end:
                    offset = end + 1
                    piece = b""
                elif offset - 1 <= got < end:
                    # the registry kept only part of the chunk: send the rest again from where it stands
                    piece = piece[got + 1 - offset:]
                    offset = got + 1
                else:
                    raise rerr.make(rerr.RegistryError, f"{what}: registry reports {got + 1} bytes received, "
                                    f"expected {end + 1}")
        if offset != size:
            raise IntegrityError(f"{what}: only {offset} of the declared {size} bytes")
        return location

    def _location(self, resp: requests.Response, what: str, default: str | None = None) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            if default is not None:
                return default
            raise rerr.make(rerr.RegistryError, f"{what}: the registry gave no upload location")
        return urljoin(resp.url, loc)

    def list_tags(self, repo: str) -> list[str]:
        """All tags of ``repo``, following ``Link`` pagination."""
        what = f"listing tags of {self.host}/{repo}"
        url: str | None = f"/v2/{repo}/tags/list"
        out: list[str] = []
        while url:
            resp = self._request("GET", url, scopes=[tokens.repository_scope(repo)], what=what,
                                 not_found_code=rerr.NAME_UNKNOWN)
            with resp:
                try:
                    doc = bodies.read_json(resp, "tag list", what)
                except requests.exceptions.RequestException as e:
                    raise self._transport_error(e, what) from None
                if doc is None:
                    raise rerr.make(rerr.RegistryError, f"{what}: the answer is not JSON")
                out += [str(t) for t in (doc.get("tags") or [])] if isinstance(doc, dict) else []
                nxt = resp.links.get("next", {}).get("url")
                url = urljoin(resp.url, nxt) if nxt else None
        return out



def _media_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()



def _upload_range_end(value: str) -> int | None:
    """Last byte the registry holds from an upload's ``Range: 0-N`` (``bytes=0-N`` too); -1 for none."""
    m = re.match(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$", value)
    if not m:
        return None
    return int(m.group(2))

