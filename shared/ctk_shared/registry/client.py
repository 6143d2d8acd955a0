"""OCI distribution client on one pooled ``requests.Session``.

One ``RegistryClient`` talks to one registry host. On first use it pings ``/v2/`` to settle the
scheme (https, then http where :mod:`.hosts` allows it) and learn the auth challenge; after that
every request carries a Basic header or a cached Bearer token for the scopes it needs, and a 401
is answered once with a fresh token. Safe to share between threads (a pull downloads layers in
parallel through one client).

Repositories are paths without the host (``library/busybox``); references are tags or digests.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
import requests.adapters
import requests.auth
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from .. import limits, oci
from ..errors import CtkError, IntegrityError, InvalidArgument
from . import bodies, tokens
from . import errors as rerr
from .hosts import DEFAULT_HOSTS_DIRS, HostSettings, host_settings

if TYPE_CHECKING:
    from ..auth import Credentials

log = logging.getLogger(__name__)

BLOB_CHUNK = 1 << 20  # 1 MiB per iteration of a BlobStream
# seconds: (connect, response = first byte of an answer, stall = no body byte for this long); the
# global option registry_timeout (--registry-timeout, $CTK_REGISTRY_TIMEOUT) sets them
DEFAULT_TIMEOUT = (10.0, 30.0, 60.0)
POOL_SIZE = 16  # keep-alive connections per host: room for 8+ parallel blob transfers
_OCTET = "application/octet-stream"
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", _OCTET})


class _HeaderAuth(requests.auth.AuthBase):
    """Sets (or leaves out) the Authorization header; also keeps requests from consulting ~/.netrc."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.value:
            r.headers["Authorization"] = self.value
        return r


class _Retry(Retry):
    """Retries a dropped keep-alive connection, never a timeout: a registry that stayed silent for the
    whole limit does not get the limit a second time (that doubled every wait, and hid which one ran out)."""

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kw: Any) -> Retry:
        error = kw.get("error", args[1] if len(args) > 1 else None)
        if isinstance(error, Urllib3Timeout) and not isinstance(error, NewConnectionError):
            raise MaxRetryError(kw.get("_pool", args[2] if len(args) > 2 else None), url or "", error)
        return super().increment(method, url, *args, **kw)


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    """Let a streamed body wait ``seconds`` per read (the stall limit), not the response limit."""
    sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


class BlobStream:
    """A blob's bytes from ``offset`` on, as an iterator of chunks; close it (or use ``with``).

    ``size`` is the whole blob's size when the registry said (None otherwise); ``offset`` is where the
    stream starts. A registry that ignores ``Range`` is handled by skipping ``offset`` bytes.
    """

    def __init__(self, resp: requests.Response, offset: int, host: str, what: str, secrets: Sequence[str] = (),
                 chunk_size: int = BLOB_CHUNK, stall: float | None = None, resumable: bool = False) -> None:
        self._resp = resp
        self._stall = stall
        self._resumable = resumable
        self.position = offset  # the next byte of the blob this stream yields
        self._host = host
        self._what = what
        self._secrets = tuple(secrets)
        self._chunk_size = chunk_size
        self.offset = offset
        self._skip = 0
        length = _int_header(resp, "Content-Length")
        if resp.status_code == 206:
            start, total = _content_range(resp.headers.get("Content-Range", ""))
            if start is not None and start != offset:
                resp.close()
                raise IntegrityError(f"{what}: registry answered from byte {start}, asked for {offset}")
            self.size = total if total is not None else (offset + length if length is not None else None)
        else:
            self._skip = offset  # Range ignored: the whole blob comes back
            self.size = length
        self._iter: Iterator[bytes] | None = None

    @property
    def host(self) -> str:
        """The registry or mirror these bytes come from."""
        return self._host

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iter is None:
            self._iter = self._resp.iter_content(self._chunk_size)
        while True:
            try:
                chunk = next(self._iter)
            except StopIteration:
                self.close()
                raise
            except requests.exceptions.RequestException as e:
                self.close()
                if rerr.timeout_phase(e):
                    raise self._stalled() from None
                raise rerr.from_transport_error(e, self._host, what=self._what, secrets=self._secrets) from None
            if self._skip:
                if len(chunk) <= self._skip:
                    self._skip -= len(chunk)
                    continue
                chunk = chunk[self._skip:]
                self._skip = 0
            if chunk:
                self.position += len(chunk)
                return chunk

    def _stalled(self) -> CtkError:
        of = f" of {limits.human(self.size)}" if self.size else ""
        limit = f" for {self._stall:g} s" if self._stall else ""
        resume = ("; the partial download is kept, and running the command again resumes from there"
                  if self._resumable else "")
        return rerr.make(rerr.RegistryTimeout,
                         f"{self._what}: stalled at {limits.human(self.position)}{of}{limit}{resume}",
                         secrets=self._secrets,
                         hint="a slow registry needs a longer stall limit: --registry-timeout CONNECT,RESPONSE,STALL")

    def read_all(self, kind: str = "document") -> bytes:
        """Everything that is left, under the cap of ``kind`` (DocumentTooLarge past it)."""
        with self:
            return limits.read_capped(self, kind, self._what)

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SizedBody:
    """An iterable request body with a length, so requests sends Content-Length and not chunked encoding.

    Raises IntegrityError (aborting the request) if the source yields more or fewer bytes than announced.
    """

    def __init__(self, chunks: Iterable[bytes], size: int, what: str) -> None:
        self._chunks = chunks
        self._size = size
        self._what = what
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.sent += len(chunk)
            if self.sent > self._size:
                raise IntegrityError(f"{self._what}: more than the declared {self._size} bytes")
            yield bytes(chunk)
        if self.sent != self._size:
            raise IntegrityError(f"{self._what}: only {self.sent} of the declared {self._size} bytes")


class RegistryClient:
    """A client for one registry host (``docker.io``, ``ghcr.io``, ``127.0.0.1:5000``)."""

    def __init__(self, host: str, *, insecure: bool = False, hosts_dirs: Sequence[str] = DEFAULT_HOSTS_DIRS,
                 credentials: Callable[[str], Credentials | None] | None = None, user_agent: str = "ctk/0.1",
                 timeout: float | Sequence[float] = DEFAULT_TIMEOUT, pool_size: int = POOL_SIZE,
                 settings: HostSettings | None = None) -> None:
        # ``settings``: already read (a mirror's, from its upstream's hosts.toml); else read for ``host``
        self.settings: HostSettings = settings or host_settings(host, insecure=insecure, hosts_dirs=hosts_dirs)
        self.host = self.settings.name
        self._credentials_fn = credentials
        self._creds: Credentials | None = None
        self._creds_loaded = False
        t = (float(timeout),) * 3 if isinstance(timeout, (int, float)) else tuple(float(x) for x in timeout)
        if len(t) == 2:
            t = (t[0], t[1], t[1])
        self.timeouts: tuple[float, float, float] = (t[0], t[1], t[2])
        self._timeout = (t[0], t[1])  # what requests takes: (connect, read until the answer's head)
        self._lock = threading.RLock()
        self._token_lock = threading.Lock()
        self._base: str | None = None
        self._challenge: tokens.Challenge | None = None
        self._tokens = tokens.TokenCache()
        self._bundle: str | None = None
        self._verify: bool | str = self._make_verify()
        self._cert = self.settings.client_cert

        s = requests.Session()
        retry = _Retry(total=2, connect=1, read=1, status=0, other=0, redirect=None,
                      allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=retry)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        s.headers["User-Agent"] = user_agent
        s.headers.update(dict(self.settings.headers))
        self._session = s

    # --- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._session.close()
        if self._bundle:
            _remove(self._bundle)
            self._bundle = None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r}, base={self._base!r})"

    def _make_verify(self) -> bool | str:
        st = self.settings
        if not st.verify:
            # the user asked for it (--insecure-registry, skip_verify): no warning on every request
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            return False
        if not st.ca_files:
            return True
        # the system CAs stay trusted (blob redirects go to public storage), plus the host's own CAs
        import certifi  # requests' own CA bundle

        with open(certifi.where(), "rb") as fh:
            parts = [fh.read()]
        for f in st.ca_files:
            try:
                with open(f, "rb") as fh:
                    parts.append(fh.read())
            except OSError as e:
                raise InvalidArgument(f"reading CA file {f}: {e.strerror or e}") from None
        fd, path = tempfile.mkstemp(prefix="ctk-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(b"\n".join(parts))
        self._bundle = path
        weakref.finalize(self, _remove, path)
        return path

    # --- plumbing ------------------------------------------------------------------------------
    def _kw(self) -> dict[str, Any]:
        return {"verify": self._verify, "cert": self._cert, "timeout": self._timeout}

    def _credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_loaded:
                self._creds = self._credentials_fn(self.host) if self._credentials_fn else None
                self._creds_loaded = True
            return self._creds

    def _secrets(self) -> tuple[str, ...]:
        creds = self._creds
        return (creds.secrets if creds else ()) + self._tokens.secrets()

    def _has_secret(self) -> bool:
        creds = self._credentials()
        return creds is not None and bool(creds.password or creds.identity_token)

    def _transport_error(self, e: BaseException, what: str) -> CtkError:
        return rerr.from_transport_error(e, self.settings.api_host, what=what, certs_dir=self.settings.certs_dir,
                                         insecure=self.settings.insecure, secrets=self._secrets(),
                                         timeouts=self.timeouts)

    def _endpoint(self, what: str = "") -> str:
        """``scheme://host`` that answers, found by pinging ``/v2/`` once."""
        if self._base is not None:
            return self._base
        with self._lock:
            if self._base is not None:
                return self._base
            st = self.settings
            last: BaseException | None = None
            for i, scheme in enumerate(st.schemes):
                url = f"{st.base_url(scheme)}{st.path}/"
                try:
                    resp = self._session.get(url, auth=_HeaderAuth(None), stream=True, **self._kw())
                except requests.exceptions.RequestException as e:
                    last = e
                    more = i + 1 < len(st.schemes)
                    if more and _may_fall_back(e):
                        log.debug("%s failed (%s); trying %s", url, e, st.schemes[i + 1])
                        continue
                    break
                with resp:
                    if resp.status_code == 401:
                        self._challenge = tokens.pick(tokens.parse_www_authenticate(
                            resp.headers.get("WWW-Authenticate", "")))
                self._base = st.base_url(scheme)
                log.debug("%s: using %s (challenge %s)", st.name, self._base,
                          self._challenge.scheme if self._challenge else None)
                return self._base
            assert last is not None
            raise self._transport_error(last, what or f"connecting to {st.name}")

    def _auth_header(self, scopes: Sequence[str], what: str) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        creds = self._credentials()
        if ch.scheme == "basic":
            return tokens.basic_header(creds) if creds is not None and (creds.username or creds.password) else None
        if ch.scheme != "bearer":
            return None
        key = tokens.cache_key(ch, scopes)
        tok = self._tokens.get(key)
        if tok is None:
            with self._token_lock:
                tok = self._tokens.get(key)
                if tok is None:
                    t = tokens.fetch_token(self._session, ch, scopes, creds, host=self.host,
                                           request_kw=self._kw(), what=what)
                    self._tokens.put(key, t.value, t.expires_in)
                    tok = t.value
        return f"Bearer {tok}"

    def _request(self, method: str, url: str, *, scopes: Sequence[str], what: str,
                 ok: Iterable[int] = (200,), not_found_code: str = "", headers: dict[str, str] | None = None,
                 params: Any = None, data: Any = None, allow_redirects: bool = True) -> requests.Response:
        """Send with auth; answer one 401 with fresh credentials; statuses not in ``ok`` raise.

        Every request is streamed: a body is read only by the caller, through :mod:`.bodies` and under the
        cap of what it is, so no answer is ever buffered whole just because the server kept sending.
        """
        base = self._endpoint(what)
        if not url.startswith(("http://", "https://")):
            st = self.settings
            url = base + (st.path + url[3:] if url.startswith("/v2/") else url)
            if st.namespace:  # a mirror: tell it which registry the repository belongs to
                params = [*(params.items() if isinstance(params, dict) else params or ()), ("ns", st.namespace)]
        ok = frozenset(ok)
        replayable = data is None or isinstance(data, (bytes, bytearray))
        scopes = list(scopes)
        for attempt in (0, 1):
            auth = self._auth_header(scopes, what)
            try:
                resp = self._session.request(method, url, headers=headers, params=params, data=data, stream=True,
                                             allow_redirects=allow_redirects, auth=_HeaderAuth(auth), **self._kw())
            except requests.exceptions.RequestException as e:
                raise self._transport_error(e, what) from None
            if resp.status_code == 401 and attempt == 0 and replayable:
                ch = tokens.pick(tokens.parse_www_authenticate(resp.headers.get("WWW-Authenticate", "")))
                retry = False
                if ch is not None and ch.scheme == "bearer":
                    if self._challenge is not None and self._challenge.scheme == "bearer":
                        self._tokens.invalidate(tokens.cache_key(self._challenge, scopes))
                    for s in ch.scopes:  # the server may name the scope it wants
                        if s not in scopes:
                            scopes.append(s)
                    retry = True
                elif ch is not None and ch.scheme == "basic":
                    retry = auth is None and self._credentials() is not None
                if ch is not None:
                    self._challenge = ch
                if retry:
                    resp.close()
                    continue
            break
        if resp.status_code in ok:
            return resp
        try:
            if resp.status_code == 401:
                raise self._unauthorized(resp, what)
            raise rerr.from_response(resp, what, host=self.host, secrets=self._secrets(),
                                     not_found_code=not_found_code)
        finally:
            resp.close()

    def _unauthorized(self, resp: requests.Response, what: str) -> CtkError:
        had = self._has_secret()
        ch = self._challenge
        if had and ch is not None and ch.scheme == "bearer":
            # the token server accepted the credentials, the registry still says no: a scope problem
            return rerr.make(rerr.RegistryUnauthenticated,
                             f"{what}: authentication required (the credentials for {self.host} give no access; "
                             "does the repository exist?)", code=rerr.UNAUTHORIZED, status=401,
                             secrets=self._secrets())
        return rerr.from_response(resp, what, host=self.host, had_credentials=had, secrets=self._secrets())

    def _ref(self, repo: str, reference: str) -> str:
        sep = "@" if ":" in reference else ":"
        return f"{self.host}/{repo}{sep}{reference}"

    # --- public API ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``scheme://host`` after the first contact (pings the registry if needed)."""
        return self._endpoint()

    def distrust(self, host: str) -> bool:
        """Stop using ``host`` for this client's requests; False: it is not a mirror, there is no other host."""
        return False

    def check_login(self) -> None:
        """Check that the registry answers and accepts our credentials (what ``login`` does).

        Bearer registries must issue a token for them; Basic ones must accept them on ``/v2/``.
        Raises Unauthenticated (never naming the password) or Unavailable.
        """
        what = f"logging in to {self.host}"
        self._endpoint(what)
        ch = self._challenge
        if ch is None:
            return
        creds = self._credentials()
        if ch.scheme == "bearer":
            tokens.fetch_token(self._session, ch, [], creds, host=self.host, request_kw=self._kw(), what=what)
            return
        if ch.scheme == "basic" and creds is None:
            raise rerr.make(rerr.RegistryUnauthenticated, f"{what}: authentication required", code=rerr.UNAUTHORIZED,
                            status=401, hint=f"log in first: ctk-pull login {self.host}")
        resp = self._request("GET", "/v2/", scopes=[], what=what)
        resp.close()

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
                size = _int_header(resp, "Content-Length")
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
        _set_read_timeout(resp, self.timeouts[2])
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
                body = _SizedBody(chunks, size, what)
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
        for piece in _rechunk(chunks, chunk_size):
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


# --- helpers -----------------------------------------------------------------------------------
def _may_fall_back(e: BaseException) -> bool:
    """Whether trying plain http after this https failure can help (not for DNS, timeouts, bad certs)."""
    if rerr.timeout_phase(e) or isinstance(e, requests.exceptions.TooManyRedirects):
        return False
    if rerr.is_dns_failure(e) or rerr.is_tls_verification_failure(e):
        return False
    return isinstance(e, (requests.exceptions.SSLError, requests.exceptions.ConnectionError))


def _int_header(resp: requests.Response, name: str) -> int | None:
    v = resp.headers.get(name)
    if v is None:
        return None
    try:
        n = int(v)
    except ValueError:
        return None
    return n if n >= 0 else None


def _media_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()


_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(start, total) of ``bytes start-end/total``; None for what is missing."""
    m = _CONTENT_RANGE_RE.match(value)
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def _upload_range_end(value: str) -> int | None:
    """Last byte the registry holds from an upload's ``Range: 0-N`` (``bytes=0-N`` too); -1 for none."""
    m = re.match(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$", value)
    if not m:
        return None
    return int(m.group(2))


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for c in chunks:
        buf += c
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
