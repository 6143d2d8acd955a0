"""The connection to one registry host, on one pooled ``requests.Session``.

On first use it pings the API root (``/v2/``) to settle the scheme (https, then http where :mod:`.hosts` allows
it) and learn the auth challenge; after that every request carries a Basic header or a cached Bearer token for
the scopes it needs, and a 401 is answered once with a fresh token. Safe to share between threads (a pull
downloads layers in parallel through one client). Only the connection lives here; the distribution API (manifests,
blobs, uploads, tags) is :class:`.client.RegistryClient`.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

import requests
import requests.adapters
import requests.auth
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from ..errors import CtkError, InvalidArgument
from . import errors as rerr
from . import tokens
from .hosts import DEFAULT_HOSTS_DIRS, HostSettings, host_settings

if TYPE_CHECKING:
    from types import TracebackType

    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

    from ..auth import Credentials

log = logging.getLogger(__name__)

# seconds: (connect, response = first byte of an answer, stall = no body byte for this long); the
# global option registry_timeout (--registry-timeout, $CTK_REGISTRY_TIMEOUT) sets them
DEFAULT_TIMEOUT = (10.0, 30.0, 60.0)
POOL_SIZE = 16  # keep-alive connections per host: room for 8+ parallel blob transfers


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

    def increment(self, method: str | None = None, url: str | None = None, response: BaseHTTPResponse | None = None,
                  error: Exception | None = None, _pool: ConnectionPool | None = None,
                  _stacktrace: TracebackType | None = None) -> Self:
        if isinstance(error, Urllib3Timeout) and not isinstance(error, NewConnectionError):
            # urllib3 types pool as never None, though its own increment passes the _pool it got, which may be
            raise MaxRetryError(_pool, url or "", error)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)



class RegistrySession:
    """The connection to one registry host: scheme, TLS, credentials and tokens (RegistryClient speaks the API)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host!r}, base={self._base!r})"

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


    # --- what every client does ----------------------------------------------------------------
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



def _may_fall_back(e: BaseException) -> bool:
    """Whether trying plain http after this https failure can help (not for DNS, timeouts, bad certs)."""
    if rerr.timeout_phase(e) or isinstance(e, requests.exceptions.TooManyRedirects):
        return False
    if rerr.is_dns_failure(e) or rerr.is_tls_verification_failure(e):
        return False
    return isinstance(e, (requests.exceptions.SSLError, requests.exceptions.ConnectionError))



def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
