"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens and their cache.

A registry answers 401 with ``Bearer realm="…",service="…",scope="…"`` (token auth, Docker Hub and
most clouds) or ``Basic realm="…"`` (htpasswd). For Bearer we GET the realm with ``service`` and one
``scope`` parameter per scope (``repository:library/busybox:pull``), sending the user's password as
Basic credentials when we have one; an ``identitytoken`` from ``docker login`` is an OAuth2 refresh
token and is POSTed as ``grant_type=refresh_token`` instead. Tokens are cached per
(realm, service, scopes) until shortly before they expire.
"""
from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import bodies
from . import errors as rerr

if TYPE_CHECKING:
    import requests

    from ..auth import Credentials

DEFAULT_EXPIRES_IN = 60  # seconds, when the token server does not say (distribution spec)
CLIENT_ID = "ctk"


@dataclass(frozen=True)
class Challenge:
    """One challenge of a 401's ``WWW-Authenticate`` header: the scheme and its parameters (realm, service, scope)."""

    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the server asked for (``scope`` may hold several, space separated)."""
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str:
        return self.params.get("error", "")


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_UNQUOTED_RE = re.compile(r"[^,\s]*")


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def parse_www_authenticate(header: str) -> list[Challenge]:
    """All challenges in one ``WWW-Authenticate`` value (RFC 7235); scheme and keys lower-cased.

    Handles quoted strings with commas and backslash escapes, unquoted values, token68 credentials
    (kept under the key ``""``) and several challenges in one header. Characters that fit nowhere
    are skipped rather than fatal: registries are not always careful.
    """
    s = header or ""
    n = len(s)
    out: list[Challenge] = []
    current: Challenge | None = None
    i = 0
    while i < n:
        if s[i] in " \t,":
            i += 1
            continue
        m = _TOKEN_RE.match(s, i)
        if not m:
            i += 1
            continue
        word = m.group(0)
        j = _skip_ws(s, m.end())
        if current is not None and j < n and s[j] == "=":
            value, i = _read_value(s, _skip_ws(s, j + 1))
            current.params[word.lower()] = value
            continue
        current = Challenge(word.lower(), {})  # a new challenge begins with its scheme
        out.append(current)
        i = j
        t68 = _TOKEN68_RE.match(s, i)
        if t68:
            after = _skip_ws(s, t68.end())
            if after >= n or s[after] == ",":
                current.params[""] = t68.group(0)
                i = after
    return out


def _read_value(s: str, i: int) -> tuple[str, int]:
    if i < len(s) and s[i] == '"':
        buf: list[str] = []
        i += 1
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                buf.append(s[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(buf), i + 1
            buf.append(c)
            i += 1
        return "".join(buf), i  # unterminated: take what is there
    m = _UNQUOTED_RE.match(s, i)
    assert m is not None  # matches the empty string at worst
    return m.group(0), m.end()


def pick(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge we answer: Bearer if offered (it carries scopes), else Basic, else None."""
    by_scheme = {c.scheme: c for c in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


def repository_scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


# --- the cache ---------------------------------------------------------------------------------
CacheKey = tuple[str, str, str]


def cache_key(challenge: Challenge, scopes: Iterable[str]) -> CacheKey:
    return challenge.realm, challenge.service, " ".join(sorted(set(scopes)))


class TokenCache:
    """Bearer tokens by (realm, service, scopes); an entry is dropped ``margin`` before it expires."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[CacheKey, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            token, expires_at = entry
            if self._clock() >= expires_at:
                del self._tokens[key]
                return None
            return token

    def put(self, key: CacheKey, token: str, expires_in: float) -> None:
        lifetime = max(float(expires_in), 1.0)
        margin = min(30.0, lifetime / 4)  # refresh early so a token never expires mid-request
        with self._lock:
            self._tokens[key] = (token, self._clock() + lifetime - margin)

    def invalidate(self, key: CacheKey) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def secrets(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(t for t, _ in self._tokens.values())


# --- fetching ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """A token server's answer: the bearer token, the seconds it is good for, and any OAuth2 refresh token."""

    value: str
    expires_in: float
    refresh_token: str = ""


def fetch_token(session: requests.Session, challenge: Challenge, scopes: Iterable[str],
                creds: Credentials | None, *, host: str, request_kw: dict[str, Any] | None = None,
                what: str = "") -> Token:
    """Ask the challenge's realm for a token good for ``scopes``.

    ``request_kw`` carries the transport settings (verify, cert, timeout, headers); ``what`` is the
    operation that needs the token, for messages. Errors never contain the password or tokens.
    """
    what = what or f"logging in to {host}"
    import requests

    realm = challenge.realm
    if not realm:
        raise rerr.make(rerr.RegistryUnauthenticated, f"{what}: the registry's Bearer challenge has no realm")
    scopes = sorted(set(scopes))
    kw = dict(request_kw or {})
    secrets = creds.secrets if creds else ()
    resp: requests.Response | None = None
    try:
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": CLIENT_ID, "access_type": "offline"}
            if challenge.service:
                form["service"] = challenge.service
            if scopes:
                form["scope"] = " ".join(scopes)
            resp = session.post(realm, data=form, stream=True, **kw)
            if resp.status_code in (404, 405):
                # token servers without OAuth2 POST support (as containerd falls back)
                resp.close()
                resp = None
        if resp is None:
            params: list[tuple[str, str]] = []
            if challenge.service:
                params.append(("service", challenge.service))
            params += [("scope", s) for s in scopes]
            if creds is not None and creds.username and not creds.identity_token:
                params.append(("account", creds.username))
            headers = dict(kw.pop("headers", {}) or {})
            if creds is not None and (creds.username or creds.password) and not creds.identity_token:
                headers["Authorization"] = basic_header(creds)
            resp = session.get(realm, params=params, headers=headers, stream=True, **kw)
    except requests.exceptions.RequestException as e:
        raise rerr.from_transport_error(e, _realm_host(realm), what=f"{what}: fetching a token",
                                        secrets=secrets, timeouts=_timeouts(kw)) from None
    with resp:
        if resp.status_code in (401, 403):
            had = creds is not None and bool(creds.password or creds.identity_token)
            raise rerr.from_response(resp, what, host=host, had_credentials=had, secrets=secrets) from None
        if resp.status_code >= 300:
            raise rerr.from_response(resp, f"{what}: fetching a token", host=host, secrets=secrets) from None
        try:  # streamed and capped: a token server that never stops sending costs one chunk, not all memory
            doc = bodies.read_json(resp, "token response", f"{what}: reading the token server's answer")
        except requests.exceptions.RequestException as e:
            raise rerr.from_transport_error(e, _realm_host(realm), what=f"{what}: fetching a token",
                                            secrets=secrets, timeouts=_timeouts(kw)) from None
    if not isinstance(doc, dict):
        raise rerr.make(rerr.RegistryUnauthenticated,
                        f"{what}: the token server's answer is not JSON")
    value = str(doc.get("token") or doc.get("access_token") or "")
    if not value:
        raise rerr.make(rerr.RegistryUnauthenticated, f"{what}: the token server's answer holds no token")
    try:
        expires_in = float(doc.get("expires_in") or DEFAULT_EXPIRES_IN)
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    return Token(value, max(expires_in, DEFAULT_EXPIRES_IN), str(doc.get("refresh_token") or ""))


def _timeouts(kw: dict[str, Any]) -> tuple[float, ...] | None:
    t = kw.get("timeout")
    return tuple(t) if isinstance(t, (tuple, list)) else (t, t) if isinstance(t, (int, float)) else None


def _realm_host(realm: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(realm).netloc or realm

