"""Registry failures as ctk errors: HTTP responses by status and OCI error code, transport errors by cause.

Every error raised here is a normal ``CtkError`` subclass (``NotFound``, ``Unauthenticated`` …) that
also carries ``code`` (the OCI distribution error code such as ``MANIFEST_UNKNOWN``, or ``""``) and
``status`` (the HTTP status, 0 for transport failures). Messages are one line and never contain a
secret: callers pass the credentials and tokens in use, and any echo of them is masked.
"""
from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import (
    CtkError,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from ..limits import MAX_ERROR_BODY_SIZE
from . import bodies

if TYPE_CHECKING:
    import requests

# OCI distribution-spec error codes (plus the ones distribution and Docker Hub add)
BLOB_UNKNOWN = "BLOB_UNKNOWN"
BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
DIGEST_INVALID = "DIGEST_INVALID"
MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
MANIFEST_INVALID = "MANIFEST_INVALID"
MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
NAME_INVALID = "NAME_INVALID"
NAME_UNKNOWN = "NAME_UNKNOWN"
SIZE_INVALID = "SIZE_INVALID"
UNAUTHORIZED = "UNAUTHORIZED"
DENIED = "DENIED"
UNSUPPORTED = "UNSUPPORTED"
TOOMANYREQUESTS = "TOOMANYREQUESTS"

PLAIN_HTTP_HINT = "the registry speaks plain HTTP: use --insecure-registry"
_MAX_DETAIL = 200


class RegistryError(CtkError):
    """Base of every registry failure; also used as is for refusals with no better class (405 …).

    ``code`` is the OCI error code (``MANIFEST_UNKNOWN`` …) or ``""``; ``status`` the HTTP status, 0
    for transport failures. The subclasses are also the matching generic ctk errors, so callers
    catch ``NotFound`` or ``Unauthenticated`` without knowing about registries.
    """

    code: str = ""
    status: int = 0


class RegistryNotFound(RegistryError, NotFound):
    pass


class RegistryUnauthenticated(RegistryError, Unauthenticated):
    pass


class RegistryPermissionDenied(RegistryError, PermissionDenied):
    pass


class RegistryInvalidArgument(RegistryError, InvalidArgument):
    pass


class RegistryIntegrityError(RegistryError, IntegrityError):
    pass


class RegistryUnavailable(RegistryError, Unavailable):
    pass


class RegistryTimeout(RegistryError, Timeout):
    pass


def make(cls: type[RegistryError], message: str, *, code: str = "", status: int = 0,
         hint: str | None = None, secrets: Iterable[str] = ()) -> RegistryError:
    """``cls(message)`` with ``code``/``status`` set and any secret masked."""
    err = cls(redact(_one_line(message), secrets), hint=hint)
    err.code = code
    err.status = status
    return err


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 3:
            text = text.replace(s, "***")
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_error_body(resp: requests.Response) -> tuple[str, str]:
    """(code, message) of the first entry of an OCI ``{"errors": [...]}`` body, or ("", "")."""
    if resp.request is not None and resp.request.method == "HEAD":
        return "", ""
    try:
        doc = json.loads(bodies.read_prefix(resp, MAX_ERROR_BODY_SIZE))  # a longer body is not JSON we can use
    except (ValueError, UnicodeDecodeError):
        return "", ""
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errs, list) or not errs or not isinstance(errs[0], dict):
        return "", ""
    code = str(errs[0].get("code") or "").upper()
    message = str(errs[0].get("message") or "")
    detail = errs[0].get("detail")
    if isinstance(detail, str) and detail and detail not in message:
        message = f"{message}: {detail}" if message else detail
    return code, message[:_MAX_DETAIL]


_DEFAULT_CODE_BY_STATUS = {401: UNAUTHORIZED, 403: DENIED, 429: TOOMANYREQUESTS}


def from_response(resp: requests.Response, what: str, *, host: str = "", had_credentials: bool = False,
                  secrets: Iterable[str] = (), not_found_code: str = "") -> RegistryError:
    """Turn a non-2xx registry answer into the ctk error a user can act on.

    ``what`` says what we were doing (``fetching manifest library/busybox:1.36``); ``not_found_code``
    names the code a body-less 404 (a HEAD) stands for.
    """
    status = resp.status_code
    code, message = parse_error_body(resp)
    code = code or _DEFAULT_CODE_BY_STATUS.get(status, "")
    if status == 404 and not code:
        code = not_found_code
    text = message or _DEFAULT_TEXT.get(code, "") or resp.reason or f"HTTP {status}"
    text = text[0].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text
    secrets = tuple(secrets)
    where = f" ({host})" if host and host not in what else ""

    def err(cls: type[RegistryError], detail: str, hint: str | None = None) -> RegistryError:
        return make(cls, f"{what}{where}: {detail}", code=code, status=status, hint=hint, secrets=secrets)

    if status == 401:
        if had_credentials:
            return err(RegistryUnauthenticated, "incorrect username or password",
                       f"check the credentials with `ctk-pull login {host}`" if host else None)
        return err(RegistryUnauthenticated, "authentication required",
                   f"log in first: ctk-pull login {host}" if host else None)
    if status == 403:
        return err(RegistryPermissionDenied, f"access denied ({text})")
    if status == 404:
        return err(RegistryNotFound, text)
    if status == 429:
        return err(RegistryUnavailable, "too many requests",
                   "the registry rate-limits this client; wait, or log in for a higher limit")
    if status in (400, 413, 416) or code in (MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN, NAME_INVALID,
                                             BLOB_UPLOAD_INVALID, BLOB_UPLOAD_UNKNOWN):
        if code in (DIGEST_INVALID, SIZE_INVALID):
            return err(RegistryIntegrityError, text)
        return err(RegistryInvalidArgument, text)
    if status >= 500:
        return err(RegistryUnavailable, f"registry error {status} ({text})")
    return err(RegistryError, f"{text} (HTTP {status})")


_DEFAULT_TEXT = {
    MANIFEST_UNKNOWN: "manifest unknown",
    BLOB_UNKNOWN: "blob unknown",
    NAME_UNKNOWN: "repository name not known to registry",
    UNSUPPORTED: "the operation is unsupported",
}


# --- transport failures ------------------------------------------------------------------------
def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests → urllib3 MaxRetryError → reason → OSError …)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen) or len(seen) > 20:
            continue
        seen.append(e)
        todo.extend(e.args)
        todo.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
    return seen


def is_plain_http_answer(exc: BaseException) -> bool:
    """True when a TLS handshake got an HTTP answer: the server does not speak TLS on that port."""
    text = " ".join(str(c) for c in _causes(exc)).lower()
    return any(s in text for s in ("wrong version number", "record layer failure", "http request",
                                   "unknown protocol", "packet length too long", "record_layer_failure"))


def is_tls_verification_failure(exc: BaseException) -> bool:
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in _causes(exc)):
        return True
    text = " ".join(str(c) for c in _causes(exc)).lower()
    return "certificate verify failed" in text or "hostname mismatch" in text


def is_dns_failure(exc: BaseException) -> bool:
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) or type(c).__name__ == "NameResolutionError" for c in causes):
        return True
    text = " ".join(str(c) for c in causes).lower()
    return any(s in text for s in ("name or service not known", "nodename nor servname",
                                   "temporary failure in name resolution", "no address associated"))


def is_connection_refused(exc: BaseException) -> bool:
    causes = _causes(exc)
    return (any(isinstance(c, ConnectionRefusedError) for c in causes)
            or "connection refused" in " ".join(str(c) for c in causes).lower())


def timeout_phase(exc: BaseException) -> str:
    """``connect`` or ``response`` when ``exc`` is (or wraps) a timeout, else ``""``.

    requests reports a read timeout that urllib3 gave up on as a plain ConnectionError, so the causes decide."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

    if is_connection_refused(exc):
        return ""
    causes = _causes(exc)
    # urllib3's NewConnectionError (refused, unreachable …) subclasses ConnectTimeoutError: it is no timeout
    if any(isinstance(c, requests.exceptions.ConnectTimeout)
           or (isinstance(c, ConnectTimeoutError) and not isinstance(c, NewConnectionError)) for c in causes):
        return "connect"
    if any(isinstance(c, (requests.exceptions.Timeout, ReadTimeoutError, TimeoutError, socket.timeout))
           for c in causes):
        return "response"
    return ""


def _redirect_url(exc: BaseException) -> str:
    """The URL that redirected once too often, without its query (signed URLs carry credentials there)."""
    resp = getattr(exc, "response", None)
    req = getattr(exc, "request", None)
    url = str(getattr(resp, "url", "") or getattr(req, "url", "") or "?")
    return url.split("?", 1)[0]


def from_transport_error(exc: BaseException, host: str, *, what: str = "", certs_dir: str = "",
                         insecure: bool = False, secrets: Iterable[str] = (),
                         timeouts: tuple[float, ...] | None = None) -> RegistryError:
    """A requests/urllib3/OSError failure talking to ``host`` as an Unavailable/Timeout with a hint.

    ``timeouts`` (connect, response …) are the limits in effect, so a timeout says which one ran out."""
    import requests

    # "resolving reg:5000/a:v1: connection refused"; the host is named once
    prefix = f"{what}: " if what else ""
    if not what or host not in what:
        prefix += f"{host}: "
    secrets = tuple(secrets)

    def err(cls: type[RegistryError], detail: str, hint: str | None = None) -> RegistryError:
        return make(cls, f"{prefix}{detail}", hint=hint, secrets=secrets)

    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, ssl.SSLError) for c in _causes(exc)):
        if is_plain_http_answer(exc):
            return err(RegistryUnavailable, "server gave HTTP response to HTTPS client", PLAIN_HTTP_HINT)
        if is_tls_verification_failure(exc):
            reason = _ssl_reason(exc) or "certificate verify failed"
            where = certs_dir or f"/etc/containerd/certs.d/{host}"
            return err(RegistryUnavailable, f"TLS certificate verification failed ({reason})",
                       f"put the registry's CA certificate in {where}/ca.crt, "
                       "or use --insecure-registry to skip verification")
        return err(RegistryUnavailable, f"TLS handshake failed ({_ssl_reason(exc) or exc})",
                   None if insecure else "if the registry has no valid TLS, use --insecure-registry")
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return err(RegistryUnavailable, f"redirect loop at {_redirect_url(exc)}",
                   "the registry (or a proxy in front of it) redirects in a circle; check its configuration")
    phase = timeout_phase(exc)
    if phase:
        connect, response = (timeouts or (0.0, 0.0))[:2]
        pre = f"{what}: " if what else ""
        if phase == "connect":
            detail = f"registry {host} did not accept the connection" + (f" in {connect:g} s" if connect else "")
        else:
            detail = f"registry {host} accepted the connection but sent no response" + (
                f" in {response:g} s" if response else "")
        return make(RegistryTimeout, pre + detail, secrets=secrets,
                    hint="is the registry up? a slow one needs a longer --registry-timeout "
                         "(CONNECT,RESPONSE,STALL seconds; $CTK_REGISTRY_TIMEOUT)")
    if is_dns_failure(exc):
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return err(RegistryUnavailable, f"unknown host (cannot resolve {bare})",
                   "check the registry name in the image reference, and DNS on this machine")
    if is_connection_refused(exc):
        return err(RegistryUnavailable, "connection refused", f"is a registry listening at {host}?")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return err(RegistryUnavailable, "connection broken mid-transfer")
    detail = _first_os_error(exc) or type(exc).__name__
    return err(RegistryUnavailable, f"cannot connect ({detail})")


def _ssl_reason(exc: BaseException) -> str:
    for c in _causes(exc):
        if isinstance(c, ssl.SSLCertVerificationError) and getattr(c, "verify_message", None):
            return str(c.verify_message)
    for c in _causes(exc):
        if isinstance(c, ssl.SSLError) and getattr(c, "reason", None):
            return str(c.reason).lower().replace("_", " ")
    return ""


def _first_os_error(exc: BaseException) -> str:
    for c in _causes(exc):
        if isinstance(c, OSError) and c.strerror:
            return c.strerror
    return ""
