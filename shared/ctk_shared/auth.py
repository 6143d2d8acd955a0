"""Registry credentials from Docker's ``config.json``, shared with docker, nerdctl and skopeo.

The file is ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``); every function takes
``config_path`` so tests stay hermetic. Lookup order for a host, as docker/cli does it: a per-registry
``credHelpers`` entry, then the global ``credsStore``, then the inline ``auths`` entry. Helpers are
``docker-credential-<name>`` executables speaking JSON on stdin/stdout (``get``, ``store``, ``erase``).

Docker Hub is stored under ``https://index.docker.io/v1/`` whatever alias the user typed
(``docker.io``, ``index.docker.io``, ``registry-1.docker.io``). The file is rewritten atomically with
mode 0600; keys ctk does not know (``proxies``, ``currentContext`` …) are kept as they were.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CtkError, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
TOKEN_USERNAME = "<token>"  # what credential helpers return as username for an identity token
HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    """What a registry needs to authenticate us; secrets never show in ``repr``.

    ``identity_token`` (from ``identitytoken`` or a helper's ``<token>`` user) is an OAuth2 refresh
    token: the token fetcher trades it for access tokens instead of sending ``password``.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        return tuple(s for s in (self.password, self.identity_token) if s)


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file: ``path`` if given, else ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env) / "config.json"
    return Path.home() / ".docker" / "config.json"


def normalize_host(host: str) -> str:
    """``https://Reg.example:5000/v2/`` → ``reg.example:5000``; Docker Hub aliases → ``docker.io``."""
    h = host.strip()
    for prefix in ("https://", "http://"):
        if h.lower().startswith(prefix):
            h = h[len(prefix):]
            break
    h = h.split("/", 1)[0].lower()
    return "docker.io" if h in DOCKER_HUB_ALIASES else h


def config_key(host: str) -> str:
    """The key under which ``host`` is stored in ``auths`` and passed to helpers."""
    h = normalize_host(host)
    return DOCKER_HUB_KEY if h == "docker.io" else h


# --- the file ----------------------------------------------------------------------------------
def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The whole config document; ``{}`` when the file does not exist."""
    p = resolve_config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise Unavailable(f"reading {p}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{p} is not valid JSON: not UTF-8 text (byte {e.start})",
                              hint="fix or remove the file") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"{p} is not valid JSON: {e}", hint="fix or remove the file") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{p} is not a JSON object", hint="fix or remove the file")
    return doc


def save_config(doc: dict[str, Any], path: str | os.PathLike[str] | None = None) -> None:
    """Write ``doc`` with mode 0600, atomically (temp file, fsync, rename) when the config is a regular file;
    a symlinked config (dotfiles repos) is updated at its target, and one linked to a device such as
    /dev/null is written into, never replaced (``ctk_shared.outputs``)."""
    from .outputs import write_output

    p = resolve_config_path(path)
    Path(os.path.realpath(p)).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_output(str(p), (json.dumps(doc, indent="\t") + "\n").encode(), mode=0o600, allow_stdout=False)


def _auths(doc: dict[str, Any]) -> dict[str, Any]:
    auths = doc.get("auths")
    return auths if isinstance(auths, dict) else {}


def _find_auth_entry(doc: dict[str, Any], host: str) -> tuple[str, dict[str, Any]] | None:
    """Exact key first, then any key naming the same host (``https://host/v1/``, ``http://host``)."""
    auths = _auths(doc)
    key = config_key(host)
    if isinstance(auths.get(key), dict):
        return key, auths[key]
    want = normalize_host(host)
    for k, v in auths.items():
        if isinstance(v, dict) and normalize_host(k) == want:
            return k, v
    return None


def _decode_entry(key: str, entry: dict[str, Any], path: Path) -> Credentials | None:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    token = str(entry.get("identitytoken") or "")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"{path}: the auth entry for {key} is not valid base64") from None
        user, sep, pw = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"{path}: the auth entry for {key} is not base64 of user:password")
        username, password = user, pw
    if not (username or password or token):
        return None
    return Credentials(username, password, token)


# --- credential helpers ------------------------------------------------------------------------
def _helper_for(doc: dict[str, Any], host: str) -> str:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        key = config_key(host)
        want = normalize_host(host)
        for k, v in helpers.items():
            if v and (k == key or normalize_host(k) == want):
                return str(v)
    store = doc.get("credsStore")
    return str(store) if store else ""


def _run_helper(helper: str, action: str, payload: str) -> subprocess.CompletedProcess[str]:
    exe = f"docker-credential-{helper}"
    try:
        return subprocess.run([exe, action], input=payload, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise Unavailable(f"credential helper {exe} not found in PATH",
                          hint=f"install {exe}, or remove credsStore/credHelpers from the docker config") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"credential helper {exe} did not answer within {HELPER_TIMEOUT:.0f}s") from None


def _helper_failure(helper: str, action: str, proc: subprocess.CompletedProcess[str]) -> CtkError:
    # helpers print their error on stdout; never echo what we sent them
    text = (proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()[0]
    return Unavailable(f"credential helper docker-credential-{helper} {action}: {text[:200]}")


def _not_found_text(text: str) -> bool:
    return "credentials not found" in text.lower()


def helper_get(helper: str, server: str) -> Credentials | None:
    proc = _run_helper(helper, "get", server)
    if proc.returncode != 0:
        if _not_found_text(proc.stdout + proc.stderr):
            return None
        raise _helper_failure(helper, "get", proc)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise Unavailable(f"credential helper docker-credential-{helper} get: output is not JSON") from None
    if not isinstance(out, dict):
        raise Unavailable(f"credential helper docker-credential-{helper} get: output is not a JSON object")
    username = str(out.get("Username") or "")
    secret = str(out.get("Secret") or "")
    if not (username or secret):
        return None
    if username == TOKEN_USERNAME:
        return Credentials("", "", secret)
    return Credentials(username, secret)


def helper_store(helper: str, server: str, username: str, secret: str) -> None:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    proc = _run_helper(helper, "store", payload)
    if proc.returncode != 0:
        raise _helper_failure(helper, "store", proc)


def helper_erase(helper: str, server: str) -> bool:
    """False when the helper had nothing stored for ``server``."""
    proc = _run_helper(helper, "erase", server)
    if proc.returncode != 0:
        if _not_found_text(proc.stdout + proc.stderr):
            return False
        raise _helper_failure(helper, "erase", proc)
    return True


# --- public API --------------------------------------------------------------------------------
def get_credentials(host: str, *, config_path: str | os.PathLike[str] | None = None) -> Credentials | None:
    """Credentials stored for ``host`` (a registry name as in a ref, e.g. ``docker.io``, ``reg:5000``).

    A helper that is configured but missing or broken is logged and skipped, so pulls of public
    images keep working; the inline ``auths`` entry is the fallback.
    """
    path = resolve_config_path(config_path)
    doc = load_config(path)
    helper = _helper_for(doc, host)
    if helper:
        try:
            creds = helper_get(helper, config_key(host))
        except Unavailable as e:
            log.warning("%s; trying %s", e, path)
        else:
            if creds is not None:
                return creds
    found = _find_auth_entry(doc, host)
    if found is None:
        return None
    return _decode_entry(found[0], found[1], path)


def store_credentials(host: str, username: str, secret: str, *,
                      config_path: str | os.PathLike[str] | None = None) -> None:
    """Save credentials for ``host`` in its helper if one is configured, else inline in ``auths``."""
    path = resolve_config_path(config_path)
    doc = load_config(path)
    key = config_key(host)
    helper = _helper_for(doc, host)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = doc["auths"] = {}
    old = _find_auth_entry(doc, host)
    if old is not None and old[0] != key:
        del auths[old[0]]  # one entry per host, under the canonical key
    if helper:
        helper_store(helper, key, username, secret)
        auths[key] = {}  # as docker does: the file lists the host, the helper holds the secret
    else:
        entry = dict(old[1]) if old is not None else {}
        for k in ("username", "password", "identitytoken", "auth"):
            entry.pop(k, None)
        entry["auth"] = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
        auths[key] = entry
    save_config(doc, path)


def erase_credentials(host: str, *, config_path: str | os.PathLike[str] | None = None) -> bool:
    """Forget the credentials for ``host``; False when none were stored (Docker: "Not logged in to …")."""
    path = resolve_config_path(config_path)
    doc = load_config(path)
    helper = _helper_for(doc, host)
    erased = False
    if helper:
        erased = helper_erase(helper, config_key(host))
    found = _find_auth_entry(doc, host)
    if found is not None:
        del doc["auths"][found[0]]
        save_config(doc, path)
        erased = True
    return erased
